// Playwright configuration for nkvm's end-to-end tests.
//
// Drives Debian's chromium (never `playwright install`): CHROMIUM_PATH overrides /usr/bin/chromium.
// The app under test must already be running: NKVM_E2E_URL (default http://127.0.0.1:3000).
// Every spec runs twice: `hydrated` (JavaScript on, the wasm app hydrates) and `no-js` (JavaScript
// off: the server-rendered HTML alone). Screenshots and traces are kept in test-results/.
// The `deploy` project (tests/deploy.spec.ts, nkvm running in the cluster) exists only with
// NKVM_E2E_DEPLOY=1: scripts/e2e-deploy.sh sets it, with NKVM_E2E_HOST_RULES (Chromium's
// --host-resolver-rules: the Ingress host maps to loopback) and NKVM_E2E_BROWSER_HOME (a HOME whose
// NSS database trusts the Ingress's test CA). The `oidc-*` projects (tests/oidc.spec.ts, nkvm
// with --auth oidc and a real OpenID provider) exist only with NKVM_E2E_OIDC=1: scripts/e2e-oidc.sh
// sets it. The `perf` project (tests/perf.spec.ts, JavaScript on) exists only with NKVM_E2E_PERF=1:
// bench/web.sh sets it.
// Strict runs (CI, or NKVM_E2E_STRICT=1 as scripts/test-all.sh sets): `test.only` fails the run, and
// a spec whose environment is missing fails instead of skipping (tests/env.ts).
// NKVM_E2E_JSON=FILE also writes the JSON report there (scripts/test-all.sh counts tests from it).
import { defineConfig, type Project, type ReporterDescription } from '@playwright/test';

const baseURL = process.env.NKVM_E2E_URL ?? 'http://127.0.0.1:3000';
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const strict = !!(process.env.CI || process.env.NKVM_E2E_STRICT);
const chromiumArgs = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const reporter: ReporterDescription[] = [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]];
if (process.env.NKVM_E2E_JSON) reporter.push(['json', { outputFile: process.env.NKVM_E2E_JSON }]);

/** The projects of this run: one suite's, chosen by the script that runs it, else the default pair. */
function projects(): Project[] {
  if (process.env.NKVM_E2E_DEPLOY) {
    const args = [...chromiumArgs];
    if (process.env.NKVM_E2E_HOST_RULES) args.push(`--host-resolver-rules=${process.env.NKVM_E2E_HOST_RULES}`);
    const env = process.env.NKVM_E2E_BROWSER_HOME ? { ...process.env, HOME: process.env.NKVM_E2E_BROWSER_HOME } : undefined;
    return [
      {
        name: 'deploy',
        testMatch: /deploy\.spec\.ts/,
        // One retry (of the serial group; the report marks it flaky): on the test cluster's node every
        // pod start or stop adds or removes a veth with an IPv6 link-local address, and Chromium
        // aborts navigations in flight with ERR_NETWORK_CHANGED when addresses change. A real
        // failure fails both attempts.
        retries: 1,
        use: { javaScriptEnabled: true, launchOptions: { executablePath, args, env } },
      },
    ];
  }
  if (process.env.NKVM_E2E_PERF) {
    return [{ name: 'perf', testMatch: /perf\.spec\.ts/, use: { javaScriptEnabled: true } }];
  }
  if (process.env.NKVM_E2E_OIDC) {
    return [
      { name: 'oidc-hydrated', testMatch: /oidc\.spec\.ts/, use: { javaScriptEnabled: true } },
      { name: 'oidc-no-js', testMatch: /oidc\.spec\.ts/, use: { javaScriptEnabled: false } },
    ];
  }
  const own = /(deploy|oidc|perf)\.spec\.ts/;
  return [
    { name: 'hydrated', testIgnore: own, use: { javaScriptEnabled: true } },
    { name: 'no-js', testIgnore: own, use: { javaScriptEnabled: false } },
  ];
}

export default defineConfig({
  testDir: './tests',
  outputDir: 'test-results',
  timeout: 120_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: strict,
  retries: 0,
  reporter,
  use: {
    baseURL,
    browserName: 'chromium',
    headless: true,
    screenshot: 'on',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath,
      args: chromiumArgs,
    },
  },
  projects: projects(),
});
