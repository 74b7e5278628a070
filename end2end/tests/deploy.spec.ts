// nkvm deployed in-cluster with deploy/overlays/test-cluster, reached through its Service: log in,
// the inventory and a verified backup under the pod's service account; a verified backup to the S3
// test server (the destinations file and credentials mounted from a Secret); a namespace outside
// the allowlist refused; then every RBAC rule of nkvm-read and nkvm-backup removed in turn, each breaking
// the feature docs/security.md says it serves, with a 403 that names the missing grant.
//
// Run by scripts/e2e-deploy.sh (project `deploy`, only when NKVM_E2E_DEPLOY=1). Environment:
//   NKVM_E2E_KUBECTL   kubectl with the admin kubeconfig (KUBECONFIG) of the test cluster
//   NKVM_E2E_PVC       the allowlisted PVC (namespace/name) whose namespace binds nkvm-backup
//   NKVM_E2E_OTHER_PVC a PVC in a namespace outside the allowlist
//   NKVM_E2E_DESTINATION the S3 destination's name in the deployed destinations file
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { expect, test, type Page } from '@playwright/test';
import { requireEnv } from './env';
import { login } from './login';

const kubectl = process.env.NKVM_E2E_KUBECTL ?? 'kubectl';
const target = process.env.NKVM_E2E_PVC ?? 'nkvm-deploy-e2e/data';
const other = process.env.NKVM_E2E_OTHER_PVC ?? 'nkvm-deploy-other/data';
const [namespace] = target.split('/');
const [otherNamespace] = other.split('/');
const destination = process.env.NKVM_E2E_DESTINATION;
const serviceAccount = 'system:serviceaccount:nkvm:nkvm';

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

function helperPods(): string[] {
  return k('get', 'pods', '-n', namespace, '-l', 'app.kubernetes.io/managed-by=nkvm', '-o', 'name')
    .split('\n')
    .filter(Boolean);
}

test.describe('in-cluster deployment', () => {
  test.describe.configure({ mode: 'serial' });
  test.beforeEach(async ({ page }) => login(page, 'operator'));

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

    // The archive, downloaded through the Service, hashes to what the server recorded.
    const link = run.locator('a', { hasText: 'archive' });
    const response = await page.request.get((await link.getAttribute('href'))!);
    expect(response.status()).toBe(200);
    const archive = await response.body();
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
    await page.goto(`/history?namespace=${namespace}&status=succeeded`);
    const row = page.getByTestId('history-table').locator(`tr[data-run="${await run.getAttribute('data-run')}"]`);
    await expect(row.getByTestId('destination')).toHaveText(destination!);
    await page.screenshot({ path: test.info().outputPath('deployed-offsite.png'), fullPage: true });
    // Streamed from S3 through the Service: hashes to what the server recorded.
    const archive = await page.request.get((await row.getByTestId('download-archive').getAttribute('href'))!);
    expect(archive.status()).toBe(200);
    const body = await archive.body();
    expect(createHash('sha256').update(body).digest('hex')).toBe(sha);
    const sidecar = await page.request.get((await row.getByTestId('download-sha256').getAttribute('href'))!);
    expect(await sidecar.text()).toMatch(new RegExp(`^${sha}  \\d{8}T\\d{6}\\.\\d{3}Z\\.tar\\.gz\\n$`));
    expect(helperPods()).toEqual([]);
  });

  test('a namespace outside the allowlist is refused', async ({ page, baseURL }) => {
    // The inventory never lists it, and its namespace is not offered as a filter.
    await page.goto(`/?ns=${otherNamespace}`);
    await expect(inventoryRow(page, target)).toHaveCount(0);
    await expect(inventoryRow(page, other)).toHaveCount(0);
    await expect(page.locator(`option[value="${otherNamespace}"]`)).toHaveCount(0);
    await expect(page.locator(`option[value="${namespace}"]`)).toHaveCount(1);
    const response = await page.request.post('/api/backups/start', {
      headers: { Origin: baseURL!, 'Content-Type': 'application/x-www-form-urlencoded' },
      data: `targets[0]=${encodeURIComponent(other)}`,
    });
    const body = await response.text();
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
      'watch pods': { status: 'failed', stage: 'failed at schedule', text: /watching the pod failed: HTTP 403 Forbidden: grant watch on pods in namespace/ },
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
