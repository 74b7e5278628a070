// nkvm deployed in-cluster (with kustomize, then with the Helm chart: scripts/e2e-deploy.sh runs this
// spec once per install), reached the way users reach it: through the Ingress, served by a real
// ingress controller (Traefik, end2end/ingress/up) over HTTPS with a certificate of a test CA that the
// browser trusts. Through the Ingress: TLS, Secure session cookies and HSTS; a backup of a large
// volume whose live progress arrives over the websocket, and its archive (larger than any proxy
// buffer) streamed as a browser download that hashes to the recorded sha256; the client address in
// the audit trail is the browser's (the controller is a trusted proxy; a forged X-Forwarded-For is
// ignored); a cross-origin request and a cross-origin websocket are refused. Then the checks are
// shown to notice a proxy that buffers downloads or drops websocket upgrades (a middleware put on
// the Ingress for a moment). Then, as before the Ingress: the inventory and a verified backup under
// the pod's service account; a verified backup to the S3 test server (the destinations file and
// credentials mounted from a Secret); a namespace outside the allowlist refused; every RBAC rule of
// nkvm-read and nkvm-backup removed in turn, each breaking the feature docs/security.md says it
// serves, with a 403 that names the missing grant.
//
// Run by scripts/e2e-deploy.sh (project `deploy`, only when NKVM_E2E_DEPLOY=1). Environment:
//   NKVM_E2E_KUBECTL   kubectl with the admin kubeconfig (KUBECONFIG) of the test cluster
//   NKVM_E2E_PVC       the allowlisted PVC (namespace/name) whose namespace binds nkvm-backup
//   NKVM_E2E_LARGE_PVC an allowlisted PVC with a large incompressible file (its archive is larger
//                      than any proxy buffer)
//   NKVM_E2E_OTHER_PVC a PVC in a namespace outside the allowlist
//   NKVM_E2E_DESTINATION the S3 destination's name in the deployed destinations file
//   NKVM_E2E_INGRESS_CA      the test CA's certificate (curl's --cacert; the browser trusts it too)
//   NKVM_E2E_INGRESS_RESOLVE curl's --resolve for the Ingress host (host:port:127.0.0.1)
//   NKVM_E2E_INGRESS_PROXY   the address nkvm sees the controller connect from (a trusted proxy)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { expect, test, type Page, type WebSocket } from '@playwright/test';
import { requireEnv } from './env';
import { login } from './login';

const kubectl = process.env.NKVM_E2E_KUBECTL ?? 'kubectl';
const target = process.env.NKVM_E2E_PVC ?? 'nkvm-deploy-e2e/data';
const other = process.env.NKVM_E2E_OTHER_PVC ?? 'nkvm-deploy-other/data';
const [namespace] = target.split('/');
const [otherNamespace] = other.split('/');
const destination = process.env.NKVM_E2E_DESTINATION;
const large = process.env.NKVM_E2E_LARGE_PVC ?? 'nkvm-deploy-e2e/large';
const serviceAccount = 'system:serviceaccount:nkvm:nkvm';
// The Ingress controller's middleware annotation (the broken middlewares come from
// end2end/ingress/up's file provider).
const middlewares = 'traefik.ingress.kubernetes.io/router.middlewares';
const MiB = 1024 * 1024;

function k(...args: string[]): string {
  return execFileSync(kubectl, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

function rulesOf(role: string): Rule[] {
  return JSON.parse(k('get', 'clusterrole', role, '-o', 'json')).rules;
}

function setRules(role: string, rules: Rule[]) {
  k('patch', 'clusterrole', role, '--type=json', '-p', JSON.stringify([{ op: 'replace', path: '/rules', value: rules }]));
}

/** Waits until the apiserver's authorizer says `allowed` for the service account. */
async function waitCanI(rule: Rule, ns: string, allowed: boolean) {
  const group = rule.apiGroups[0] ? `.${rule.apiGroups[0]}` : '';
  const [resource, sub] = rule.resources[0].split('/');
  const args = ['auth', 'can-i', rule.verbs[0], `${resource}${group}`, '-n', ns, '--as', serviceAccount];
  if (sub) args.push('--subresource', sub);
  await expect
    .poll(
      () => {
        try {
          return k(...args).trim();
        } catch (err) {
          return String((err as { stdout?: string }).stdout ?? '').trim();
        }
      },
      { timeout: 30_000 },
    )
    .toBe(allowed ? 'yes' : 'no');
}

async function hydrated(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
}

function inventoryRow(page: Page, pvc: string) {
  return page.getByRole('table', { name: /PVCs with the workloads/ }).locator(`tr[data-pvc="${pvc}"]`);
}

function runRow(page: Page) {
  return page.getByTestId('runs-panel').locator(`tr[data-pvc="${target}"]`).first();
}

/** Starts a backup of `target` from the inventory page (to `to`, else the default destination);
 * returns its row once it has finished. */
async function backUp(page: Page, to?: string) {
  await hydrated(page, `/?ns=${namespace}`);
  const box = page.getByRole('checkbox', { name: `Select ${target}`, exact: true });
  await box.check();
  if (to) await page.getByLabel('Destination').selectOption(to);
  const before = await page.getByTestId('runs-panel').locator(`tr[data-pvc="${target}"]`).count();
  await page.getByTestId('backup-selected').click();
  await expect(page.getByTestId('runs-panel').locator(`tr[data-pvc="${target}"]`)).toHaveCount(before + 1);
  const row = runRow(page);
  await expect(row).toHaveAttribute('data-status', /succeeded|failed/, { timeout: 120_000 });
  return row;
}

/** Clicks a temporary `<a download>` to `href` in the page, as a user's click on a download link. */
async function clickDownloadLink(page: Page, href: string) {
  await page.evaluate((url) => {
    const link = document.createElement('a');
    link.href = url;
    link.download = '';
    document.body.append(link);
    link.click();
    link.remove();
  }, href);
}

/** Downloads `href` the way a user does (a link with `download`, clicked in the page) and returns
 * why it is not the archive it should be, or null: no download within `timeout`, a failed download,
 * or content whose sha256 differs from `sha`. */
async function downloadProblem(page: Page, href: string, sha: string, timeout = 60_000): Promise<string | null> {
  const started = page.waitForEvent('download', { timeout }).catch(() => null);
  await clickDownloadLink(page, href);
  const download = await started;
  if (!download) return `no download of ${href} started within ${timeout} ms`;
  const failure = await download.failure();
  if (failure) return `the download of ${href} failed: ${failure}`;
  const file = test.info().outputPath(`download-${Date.now()}-${download.suggestedFilename()}`);
  await download.saveAs(file);
  const digest = createHash('sha256').update(readFileSync(file)).digest('hex');
  if (digest !== sha) return `the download of ${href} (${statSync(file).size} bytes) hashes to ${digest}, not ${sha}`;
  return null;
}

/** A browser download of `href` (must succeed); returns the file's path. Chromium cancels a
 * download when a network interface comes or goes on the node (a helper pod removed right after its
 * run): a "canceled" download is tried again, twice. */
async function download(page: Page, href: string): Promise<string> {
  for (let attempt = 1; ; attempt++) {
    const started = page.waitForEvent('download');
    await clickDownloadLink(page, href);
    const file = await started;
    const failure = await file.failure();
    if (failure === 'canceled' && attempt < 3) continue;
    expect(failure).toBeNull();
    const path = test.info().outputPath(`${Date.now()}-${file.suggestedFilename()}`);
    await file.saveAs(path);
    return path;
  }
}

function sha256Of(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

interface RunMessage {
  run_id: string;
  namespace: string;
  pvc: string;
  status: string;
  bytes: number;
}

/** The run views of one message of the runs websocket (a snapshot or an update). server_fn sends
 * each item as a binary frame: a tag byte (0: a value, 1: an error), then its JSON. */
function runsIn(payload: string | Buffer): RunMessage[] {
  const bytes = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  if (bytes[0] !== 0) return [];
  try {
    const message = JSON.parse(bytes.subarray(1).toString('utf8'));
    if (message.Update) return [message.Update];
    if (Array.isArray(message.Snapshot)) return message.Snapshot;
  } catch {
    // not a message of ours
  }
  return [];
}

async function until(condition: () => boolean, timeout: number): Promise<boolean> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

/** Opens the inventory, waits for the runs websocket's first message, backs up `pvc` (from the page)
 * and follows it on the websocket: returns why live progress did not work, or null — no message on
 * the socket within `timeout`, no `running` update with bytes before the end, or no `succeeded`
 * update. On success, also the finished run's id (`run`). */
async function liveProgressProblem(
  page: Page,
  pvc: string,
  timeout = 20_000,
): Promise<{ problem: string | null; run?: string; progress?: number[] }> {
  const frames: RunMessage[][] = [];
  const sockets: WebSocket[] = [];
  const onSocket = (socket: WebSocket) => {
    if (!socket.url().includes('/api/backups/updates')) return;
    sockets.push(socket);
    socket.on('framereceived', (frame) => frames.push(runsIn(frame.payload)));
  };
  page.on('websocket', onSocket);
  try {
    await hydrated(page, `/?ns=${pvc.split('/')[0]}`);
    if (!(await until(() => frames.length > 0, timeout))) {
      return { problem: `no message on the runs websocket within ${timeout} ms (${sockets.length} socket(s) opened: ${sockets.map((s) => s.url()).join(', ')})` };
    }
    const known = new Set(frames.flat().map((r) => r.run_id));
    // Bounded: a page that never shows the row is a problem to report, not a hung check.
    const box = page.getByRole('checkbox', { name: `Select ${pvc}`, exact: true });
    try {
      await box.check({ timeout });
      await page.getByTestId('backup-selected').click({ timeout });
    } catch (err) {
      return { problem: `could not select ${pvc} and start its backup within ${timeout} ms: ${err}` };
    }
    const mine = () => frames.flat().filter((r) => `${r.namespace}/${r.pvc}` === pvc && !known.has(r.run_id));
    if (!(await until(() => mine().some((r) => r.status !== 'running' && r.status !== 'queued'), 180_000))) {
      return { problem: `the run of ${pvc} did not finish on the websocket within 180 s (${mine().length} updates)` };
    }
    const views = mine();
    const progress = views.filter((r) => r.status === 'running' && r.bytes > 0).map((r) => r.bytes);
    const last = views[views.length - 1];
    if (progress.length === 0) return { problem: `no running update with bytes arrived for ${pvc} before it ended (${views.map((r) => r.status).join(', ')})` };
    if (last.status !== 'succeeded') return { problem: `the run of ${pvc} ended ${last.status}` };
    return { problem: null, run: last.run_id, progress };
  } finally {
    page.off('websocket', onSocket);
  }
}

/** curl through the Ingress (its own TLS check against the test CA; never -k): `[status, body]`. */
function curl(path: string, ...args: string[]): [number, string] {
  const [ca, resolve] = [process.env.NKVM_E2E_INGRESS_CA!, process.env.NKVM_E2E_INGRESS_RESOLVE!];
  const out = execFileSync(
    'curl',
    ['-sS', '--http1.1', '--cacert', ca, '--resolve', resolve, '-w', '\n%{http_code}', '--max-time', '20', ...args, new URL(path, process.env.NKVM_E2E_URL).href],
    { encoding: 'utf8' },
  );
  const cut = out.lastIndexOf('\n');
  return [Number(out.slice(cut + 1)), out.slice(0, cut)];
}

/** The session cookie of the page's context, as a Cookie header. */
async function sessionCookie(page: Page): Promise<string> {
  const cookie = (await page.context().cookies()).find((c) => c.name === '__Host-nkvm_session');
  expect(cookie, 'the session cookie').toBeTruthy();
  return `Cookie: ${cookie!.name}=${cookie!.value}`;
}

/** Sets (or, with null, removes) the Ingress's middlewares; the controller applies it within seconds. */
function setIngressMiddlewares(value: string | null) {
  k('-n', 'nkvm', 'annotate', 'ingress', 'nkvm', '--overwrite', value ? `${middlewares}=${value}` : `${middlewares}-`);
}

/** Parses CSV (quoted fields with "" escapes). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(field);
      field = '';
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}

function helperPods(): string[] {
  return k('get', 'pods', '-n', namespace, '-l', 'app.kubernetes.io/managed-by=nkvm', '-o', 'name')
    .split('\n')
    .filter(Boolean);
}

test.describe('in-cluster deployment', () => {
  test.describe.configure({ mode: 'serial' });
  test.beforeEach(async ({ page }) => login(page, 'operator'));

  // The large volume's finished run (the broken-proxy test downloads its archive again).
  let largeRun: { href: string; sha: string } | undefined;

  test('through the Ingress over HTTPS: the test CA, Secure cookies, HSTS', async ({ page, baseURL }) => {
    requireEnv('NKVM_E2E_INGRESS_CA', 'NKVM_E2E_INGRESS_RESOLVE');
    expect(new URL(baseURL!).protocol).toBe('https:');
    const response = await page.goto('/');
    expect(response!.status()).toBe(200);
    // The browser checked the chain and the name (no certificate errors are ignored).
    const tls = await response!.securityDetails();
    expect(tls?.issuer).toBe('nkvm ingress test CA');
    expect(tls?.subjectName).toBe(new URL(baseURL!).hostname);
    expect(response!.headers()['strict-transport-security']).toMatch(/max-age=[1-9]\d*/);
    // Secure, so with the __Host- prefix (no Domain, Path=/).
    const session = (await page.context().cookies()).find((c) => c.name === '__Host-nkvm_session');
    expect(session).toMatchObject({ secure: true, httpOnly: true, sameSite: 'Strict', path: '/' });
    // curl, with its own check against the test CA, gets there too (the cross-origin test uses it).
    const [status] = curl('/healthz');
    expect(status).toBe(200);
  });

  test('a backup with live progress over the websocket; its large archive streams as a download', async ({ page }) => {
    requireEnv('NKVM_E2E_LARGE_PVC');
    test.setTimeout(300_000);
    const live = await liveProgressProblem(page, large);
    expect(live.problem).toBeNull();
    test.info().annotations.push({ type: 'progress', description: `${live.progress!.length} running updates with bytes: ${live.progress!.join(', ')}` });
    const row = page.getByTestId('runs-panel').locator(`tr[data-run="${live.run}"]`);
    await expect(row).toHaveAttribute('data-status', 'succeeded');
    const sha = (await row.locator('.sha256').textContent())!.trim();
    const href = (await row.locator('a', { hasText: 'archive' }).getAttribute('href'))!;
    await page.screenshot({ path: test.info().outputPath('large-backup.png'), fullPage: true });
    // Larger than any proxy buffer (ingress-nginx: 8 × 4 KiB in memory, then disk; Traefik: none).
    const path = await download(page, href);
    expect(statSync(path).size).toBeGreaterThan(48 * MiB);
    expect(sha256Of(path)).toBe(sha);
    largeRun = { href, sha };
  });

  test('the audit trail names the browser, not the proxy or a forged X-Forwarded-For', async ({ page }) => {
    requireEnv('NKVM_E2E_INGRESS_PROXY');
    await page.context().clearCookies();
    // Traefik trusts no client's forwarding headers: it replaces them with the peer it saw.
    await page.setExtraHTTPHeaders({ 'X-Forwarded-For': '203.0.113.9', 'X-Real-IP': '203.0.113.9' });
    await login(page, 'admin', '/audit');
    await page.setExtraHTTPHeaders({});
    const csv = parseCsv(readFileSync(await download(page, '/audit.csv'), 'utf8'));
    expect(csv[0]).toEqual(['id', 'at', 'actor', 'action', 'target', 'outcome', 'detail', 'source']);
    const logins = csv.slice(1).filter((r) => r[3] === 'login');
    expect(logins.map((r) => r[2])).toContain('admin');
    // Every login of this run came through the Ingress from the browser on 127.0.0.1.
    expect(new Set(logins.map((r) => r[7]))).toEqual(new Set(['127.0.0.1']));
    expect(csv.flat().join(',')).not.toContain('203.0.113.9');
    expect(logins.map((r) => r[7])).not.toContain(process.env.NKVM_E2E_INGRESS_PROXY);
  });

  test('a cross-origin request and a cross-origin websocket through the Ingress are refused', async ({ page, baseURL }) => {
    const cookie = await sessionCookie(page);
    const form = ['-H', 'Content-Type: application/x-www-form-urlencoded', '--data', `targets[0]=${encodeURIComponent(other)}`];
    const [refused, why] = curl('/api/backups/start', '-H', cookie, '-H', 'Origin: https://evil.example', ...form);
    expect(refused).toBe(403);
    expect(why).toContain('cross-origin request refused');
    // The same request from the app's own origin passes the check (the proxy keeps Host and Origin)
    // and reaches the allowlist.
    const [, allowed] = curl('/api/backups/start', '-H', cookie, '-H', `Origin: ${new URL(baseURL!).origin}`, ...form);
    expect(allowed).not.toContain('cross-origin');
    expect(allowed).toMatch(/allowlist/i);
    const upgrade = ['-H', 'Connection: Upgrade', '-H', 'Upgrade: websocket', '-H', 'Sec-WebSocket-Version: 13', '-H', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='];
    const [socket, socketWhy] = curl('/api/backups/updates', '-H', cookie, '-H', 'Origin: https://evil.example', ...upgrade);
    expect(socket).toBe(403);
    expect(socketWhy).toContain('cross-origin request refused');
  });

  test('the checks fail when the proxy buffers downloads or drops websocket upgrades', async ({ page }) => {
    test.setTimeout(480_000);
    expect(largeRun, 'the large backup test ran first').toBeTruthy();
    const { href, sha } = largeRun!;
    const seen: string[] = [];
    try {
      // A controller that spools responses and refuses those above 1 MiB.
      setIngressMiddlewares('e2e-broken-buffering@file');
      await page.goto('/healthz');
      await expect
        .poll(async () => {
          const problem = await downloadProblem(page, href, sha, 15_000);
          if (problem) seen.push(`buffering: ${problem}`);
          return problem;
        }, { timeout: 90_000, intervals: [2_000] })
        .not.toBeNull();
      // A controller not set up for websockets (Upgrade and Connection dropped).
      setIngressMiddlewares('e2e-broken-websocket@file');
      await expect
        .poll(async () => {
          const { problem } = await liveProgressProblem(page, large, 15_000);
          if (problem) seen.push(`websocket: ${problem}`);
          return problem;
        }, { timeout: 240_000, intervals: [2_000] })
        .not.toBeNull();
    } finally {
      setIngressMiddlewares(null);
    }
    for (const line of seen) test.info().annotations.push({ type: 'check failed as expected', description: line });
    console.log(seen.join('\n'));
    // Set up right again, both checks pass.
    await page.goto('/healthz');
    await expect.poll(() => downloadProblem(page, href, sha, 30_000), { timeout: 90_000, intervals: [2_000] }).toBeNull();
    expect((await liveProgressProblem(page, large)).problem).toBeNull();
  });

  test('inventory and a verified backup under the service account', async ({ page }) => {
    test.setTimeout(240_000);
    await hydrated(page, '/');
    await expect(page.getByTestId('cluster-source')).toHaveText('in-cluster');
    await expect(page.getByTestId('cluster-server')).toContainText('https://');
    const row = inventoryRow(page, target);
    await expect(row).toBeVisible();
    await expect(row).toContainText(/Deployment\s*app/);
    // Only the allowlisted namespace is listed.
    await expect(inventoryRow(page, other)).toHaveCount(0);
    await page.screenshot({ path: test.info().outputPath('deployed-inventory.png'), fullPage: true });

    const run = await backUp(page);
    await expect(run).toHaveAttribute('data-status', 'succeeded');
    const sha = (await run.locator('.sha256').textContent())!.trim();
    expect(sha).toMatch(/^[0-9a-f]{64}$/);
    await page.screenshot({ path: test.info().outputPath('deployed-backup.png'), fullPage: true });

    // The archive, downloaded through the Ingress, hashes to what the server recorded.
    const link = run.locator('a', { hasText: 'archive' });
    const archive = readFileSync(await download(page, (await link.getAttribute('href'))!));
    expect(createHash('sha256').update(archive).digest('hex')).toBe(sha);
    expect(archive.subarray(0, 2).toString('hex')).toBe('1f8b');
    expect(helperPods()).toEqual([]);
  });

  test('a verified backup to the S3 server, credentials from a Secret', async ({ page }) => {
    requireEnv('NKVM_E2E_DESTINATION');
    test.setTimeout(240_000);
    const run = await backUp(page, destination);
    await expect(run).toHaveAttribute('data-status', 'succeeded');
    const sha = (await run.locator('.sha256').textContent())!.trim();
    // Read from the runs panel before leaving the page that has it.
    const runId = await run.getAttribute('data-run');
    await page.goto(`/history?namespace=${namespace}&status=succeeded`);
    const row = page.getByTestId('history-table').locator(`tr[data-run="${runId}"]`);
    await expect(row.getByTestId('destination')).toHaveText(destination!);
    await page.screenshot({ path: test.info().outputPath('deployed-offsite.png'), fullPage: true });
    // Streamed from S3 through the Ingress: hashes to what the server recorded.
    expect(sha256Of(await download(page, (await row.getByTestId('download-archive').getAttribute('href'))!))).toBe(sha);
    const sidecar = readFileSync(await download(page, (await row.getByTestId('download-sha256').getAttribute('href'))!), 'utf8');
    expect(sidecar).toMatch(new RegExp(`^${sha}  \\d{8}T\\d{6}\\.\\d{3}Z\\.tar\\.gz\\n$`));
    expect(helperPods()).toEqual([]);
  });

  test('a namespace outside the allowlist is refused', async ({ page }) => {
    // The inventory never lists it, and its namespace is not offered as a filter.
    await page.goto(`/?ns=${otherNamespace}`);
    await expect(inventoryRow(page, target)).toHaveCount(0);
    await expect(inventoryRow(page, other)).toHaveCount(0);
    await expect(page.locator(`option[value="${otherNamespace}"]`)).toHaveCount(0);
    await expect(page.locator(`option[value="${namespace}"]`)).toHaveCount(1);
    // Straight from the page (the browser sets the Origin), past the form's choices.
    const body = await page.evaluate(async (target) => {
      const response = await fetch('/api/backups/start', {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `targets[0]=${encodeURIComponent(target)}`,
      });
      return response.text();
    }, other);
    expect(body).toContain(other);
    expect(body).toMatch(/allowlist/i);
    expect(k('get', 'pods', '-n', otherNamespace, '-l', 'app.kubernetes.io/managed-by=nkvm', '-o', 'name').trim()).toBe('');
  });

  test('every nkvm-read rule is needed by the inventory', async ({ page }) => {
    test.setTimeout(300_000);
    const original = rulesOf('nkvm-read');
    expect(original.length).toBe(6);
    try {
      for (const [index, rule] of original.entries()) {
        setRules('nkvm-read', original.filter((_, i) => i !== index));
        await waitCanI(rule, namespace, false);
        await page.goto(`/?ns=${namespace}`);
        const resource = rule.apiGroups[0] ? `${rule.resources[0]}.${rule.apiGroups[0]}` : rule.resources[0];
        const warning = page.locator('.warning', { hasText: namespace });
        await expect(warning, `without list ${resource}`).toContainText('403');
        await expect(warning).toContainText(`grant list on ${resource} in namespace ${namespace}`);
        await expect(inventoryRow(page, target)).toHaveCount(0);
        await page.screenshot({ path: test.info().outputPath(`without-list-${resource}.png`), fullPage: true });
        setRules('nkvm-read', original);
        await waitCanI(rule, namespace, true);
      }
    } finally {
      setRules('nkvm-read', original);
    }
    await page.goto(`/?ns=${namespace}`);
    await expect(inventoryRow(page, target)).toBeVisible();
  });

  test('every nkvm-backup rule is needed by a backup', async ({ page }) => {
    test.setTimeout(600_000);
    const original = rulesOf('nkvm-backup');
    // What breaks without each rule: the stage a backup fails at (or a warning when only the cleanup
    // is denied) and the grant its message names.
    const expected: Record<string, { status: string; stage: string; text: RegExp }> = {
      'get persistentvolumeclaims': { status: 'failed', stage: 'failed at preflight', text: /403 Forbidden: grant get on persistentvolumeclaims in namespace/ },
      'create pods': { status: 'failed', stage: 'failed at create', text: /403 Forbidden: grant create on pods in namespace/ },
      'get pods/exec': { status: 'failed', stage: 'failed at exec', text: /403 Forbidden: grant get and create on pods\/exec in namespace/ },
      'create pods/exec': { status: 'failed', stage: 'failed at exec', text: /403 Forbidden: grant get and create on pods\/exec in namespace/ },
      'delete pods': { status: 'succeeded', stage: 'done', text: /warning: deleting helper pod .*403 Forbidden: grant delete on pods in namespace/ },
    };
    expect(original.map((r) => `${r.verbs.join(',')} ${r.resources.join(',')}`).sort()).toEqual(Object.keys(expected).sort());
    try {
      for (const [index, rule] of original.entries()) {
        const key = `${rule.verbs[0]} ${rule.resources[0]}`;
        setRules('nkvm-backup', original.filter((_, i) => i !== index));
        await waitCanI(rule, namespace, false);
        const row = await backUp(page);
        await expect(row, `without ${key}`).toHaveAttribute('data-status', expected[key].status);
        await expect(row.locator('.stage')).toHaveText(expected[key].stage);
        await expect(row.locator('.message')).toContainText(expected[key].text);
        await page.screenshot({ path: test.info().outputPath(`without-${key.replace(/[ /]/g, '-')}.png`), fullPage: true });
        setRules('nkvm-backup', original);
        await waitCanI(rule, namespace, true);
      }
    } finally {
      setRules('nkvm-backup', original);
    }
    // The helper left behind while `delete` was denied is removed by the sweeper once it is allowed.
    await expect.poll(helperPods, { timeout: 180_000, intervals: [2_000] }).toEqual([]);
    const row = await backUp(page);
    await expect(row).toHaveAttribute('data-status', 'succeeded');
  });
});
