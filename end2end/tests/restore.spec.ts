// Verification and restores in a real browser against the real test cluster: a backup verified
// from the history page (result recorded and shown); the big backup restored from its history row
// into a new PVC with live progress in the runs panel; the small one restored in place after its
// plan was shown and the PVC's name typed; a drill. A viewer is refused (by the server) and a
// cross-origin start is refused; the restore page renders without JavaScript.
//
// Runs after backups.spec.ts (the hydrated project made the backups of both PVCs).
// Environment (set by scripts/e2e.sh): NKVM_E2E_PVC (big, Deployment web), NKVM_E2E_PVC2 (small,
// Deployment db).
import { expect, test, type Page } from '@playwright/test';
import { login } from './login';

const big = process.env.NKVM_E2E_PVC;
const small = process.env.NKVM_E2E_PVC2;
const namespace = big?.split('/')[0];

async function hydrated(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
}

/** The newest succeeded history row of `target`. */
function backupRow(page: Page, target: string) {
  return page.getByTestId('history-table').locator(`tr[data-pvc="${target}"][data-status="succeeded"]`).first();
}

async function runIdOf(page: Page, target: string): Promise<string> {
  await page.goto(`/history?namespace=${namespace}&status=succeeded`);
  const id = await backupRow(page, target).getAttribute('data-run');
  expect(id).toBeTruthy();
  return id!;
}

function panelRow(page: Page, kind: string, target: string) {
  return page
    .getByTestId('runs-panel')
    .locator(`tr[data-kind="${kind}"][data-pvc="${target}"]`)
    .first();
}

test.describe('restores', () => {
  test.describe.configure({ mode: 'serial' });
  test.beforeEach(async ({ page }) => login(page, 'operator'));

  test('verify from the history page records who and when', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'verifying needs JavaScript');
    test.skip(!small, 'needs NKVM_E2E_PVC2');
    await hydrated(page, `/history?namespace=${namespace}&status=succeeded`);
    const row = backupRow(page, small!);
    await row.getByRole('button', { name: new RegExp(`^Verify the backup of ${small}`) }).click();
    await expect(row.getByRole('status')).toContainText('verified: the sha256 matches', { timeout: 60_000 });
    await page.screenshot({ path: test.info().outputPath('verified.png'), fullPage: true });
    await hydrated(page, `/history?namespace=${namespace}&status=succeeded`);
    const cell = backupRow(page, small!).getByTestId('verified');
    await expect(cell).toContainText('verified');
    await expect(cell).toContainText('by web:operator');
  });

  test('restore from the history page into a new PVC, with progress', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'starting a restore needs JavaScript');
    test.skip(!big, 'needs NKVM_E2E_PVC');
    test.setTimeout(300_000);
    await hydrated(page, `/history?namespace=${namespace}&status=succeeded`);
    await backupRow(page, big!).getByTestId('restore-link').click();
    await expect(page.getByRole('heading', { name: 'Restore a backup' })).toBeVisible();
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    await expect(page.getByTestId('restore-source')).toContainText(big!);
    const name = `web-copy-${Date.now() % 100000}`;
    await page.getByLabel('New PVC name').fill(name);
    await page.getByTestId('restore-new').click();
    await expect(page.getByRole('status').filter({ hasText: 'started' })).toBeVisible();
    const row = panelRow(page, 'restore', `${namespace}/${name}`);
    await expect(row.locator('.stage')).toHaveText('stream', { timeout: 120_000 });
    await expect(row.locator('.progress-text')).toContainText(/MiB/);
    await page.screenshot({ path: test.info().outputPath('restore-running.png'), fullPage: true });
    await expect(row).toHaveAttribute('data-status', 'succeeded', { timeout: 240_000 });
    await expect(row.locator('.message')).toContainText(`into the new PVC ${namespace}/${name}`);
    await expect(row.locator('.message')).toContainText('match the archive');
    await page.screenshot({ path: test.info().outputPath('restore-done.png'), fullPage: true });
  });

  test('restore in place after the plan and the typed PVC name', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'starting a restore needs JavaScript');
    test.skip(!small, 'needs NKVM_E2E_PVC2');
    test.setTimeout(300_000);
    const runId = await runIdOf(page, small!);
    await hydrated(page, `/restore/${runId}`);
    const pvc = small!.split('/')[1];
    await page.getByTestId('restore-show-plan').click();
    await expect(page.getByTestId('restore-plan')).toContainText('Deployment/db: 1 → 0 replicas, then back to 1');
    const go = page.getByTestId('restore-in-place');
    await expect(go).toBeDisabled();
    await page.getByLabel(`Type ${pvc} to confirm`).fill('wrong-name');
    await expect(go).toBeDisabled();
    await page.getByLabel(`Type ${pvc} to confirm`).fill(pvc);
    await expect(go).toBeEnabled();
    await page.screenshot({ path: test.info().outputPath('in-place-plan.png'), fullPage: true });
    await go.click();
    const row = panelRow(page, 'restore', small!);
    await expect(row).toHaveAttribute('data-status', 'succeeded', { timeout: 240_000 });
    await expect(row.locator('.message')).toContainText('(merged)');
    await expect(row.locator('.message')).toContainText('scaled Deployment/db back to 1');
    await page.screenshot({ path: test.info().outputPath('in-place-done.png'), fullPage: true });

    // A drill of the same PVC, from the same page.
    await page.getByRole('button', { name: `Run a restore drill of ${small}` }).click();
    const drill = page.getByTestId('runs-panel').locator('tr[data-kind="drill"]').first();
    await expect(drill).toHaveAttribute('data-status', 'succeeded', { timeout: 240_000 });
  });

  test('cross-origin restore starts are refused', async ({ page }) => {
    const response = await page.request.post('/api/restores/start', {
      headers: { Origin: 'http://evil.example' },
      form: { 'form[run_id]': 'x', 'form[to_pvc]': 'y' },
    });
    expect(response.status()).toBe(403);
    expect(await response.text()).toContain('cross-origin request refused');
  });
});

test.describe('restore page for a viewer', () => {
  test.beforeEach(async ({ page }) => login(page, 'viewer'));

  test('renders (also without JavaScript); starting and verifying are refused', async ({ page, javaScriptEnabled }) => {
    test.skip(!small, 'needs NKVM_E2E_PVC2');
    const runId = await runIdOf(page, small!);
    const response = await page.goto(`/restore/${runId}`);
    expect(response?.status()).toBe(200);
    await expect(page.getByRole('heading', { name: 'Restore a backup' })).toBeVisible();
    await expect(page.getByTestId('restore-source')).toContainText(small!);
    await expect(page.getByLabel('New PVC name')).toBeVisible();
    if (!javaScriptEnabled) return;
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    await page.getByTestId('restore-new').click();
    await expect(page.getByRole('alert').filter({ hasText: 'restoring needs the operator role' })).toBeVisible();
    await hydrated(page, `/history?namespace=${namespace}&status=succeeded`);
    const row = backupRow(page, small!);
    await row.getByRole('button', { name: new RegExp(`^Verify the backup of ${small}`) }).click();
    await expect(row.getByRole('alert')).toContainText('verifying a backup needs the operator role');
  });
});
