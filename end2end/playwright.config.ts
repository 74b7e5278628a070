// Playwright configuration for nkvm's end-to-end tests.
//
// Drives Debian's chromium (never `playwright install`): CHROMIUM_PATH overrides /usr/bin/chromium.
// The app under test must already be running: NKVM_E2E_URL (default http://127.0.0.1:3000).
// Every spec runs twice: `hydrated` (JavaScript on, the wasm app hydrates) and `no-js` (JavaScript
// off: the server-rendered HTML alone). Screenshots and traces are kept in test-results/.
// The `deploy` project (tests/deploy.spec.ts, nkvm running in the cluster) exists only with
// NKVM_E2E_DEPLOY=1: scripts/e2e-deploy.sh sets it. The `oidc-*` projects (tests/oidc.spec.ts, nkvm
// with --auth oidc and a real OpenID provider) exist only with NKVM_E2E_OIDC=1: scripts/e2e-oidc.sh
// sets it.
import { defineConfig } from '@playwright/test';

const baseURL = process.env.NKVM_E2E_URL ?? 'http://127.0.0.1:3000';
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export default defineConfig({
  testDir: './tests',
  outputDir: 'test-results',
  timeout: 120_000,
  expect: { timeout: 15_000 },
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  reporter: [['list'], ['html', { open: 'never', outputFolder: 'playwright-report' }]],
  use: {
    baseURL,
    browserName: 'chromium',
    headless: true,
    screenshot: 'on',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  projects: process.env.NKVM_E2E_DEPLOY
    ? [{ name: 'deploy', testMatch: /deploy\.spec\.ts/, use: { javaScriptEnabled: true } }]
    : process.env.NKVM_E2E_OIDC
      ? [
          { name: 'oidc-hydrated', testMatch: /oidc\.spec\.ts/, use: { javaScriptEnabled: true } },
          { name: 'oidc-no-js', testMatch: /oidc\.spec\.ts/, use: { javaScriptEnabled: false } },
        ]
      : [
          { name: 'hydrated', testIgnore: /(deploy|oidc)\.spec\.ts/, use: { javaScriptEnabled: true } },
          { name: 'no-js', testIgnore: /(deploy|oidc)\.spec\.ts/, use: { javaScriptEnabled: false } },
        ],
});
