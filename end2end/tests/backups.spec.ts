// The backup flow in a real browser against the real test cluster: select two PVCs, back them up,
// watch progress live (also from a second page), read both runs in the history with their sha256,
// download an archive and verify it with the system's sha256sum and tar; a failing backup shows its
// stage and what to do; a running backup can be cancelled. Plus the history page without JavaScript.
//
// Environment (set by scripts/e2e.sh):
//   NKVM_E2E_PVC        namespace/name of a PVC holding a few hundred MB (backups take seconds)
//   NKVM_E2E_PVC2       namespace/name of a small PVC in the same namespace
//   NKVM_E2E_FAIL_PVC   namespace/name of a ReadWriteOncePod PVC in use (its backup is refused)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect, test, type Page } from '@playwright/test';
import { requireEnv } from './env';
import { login } from './login';

const big = process.env.NKVM_E2E_PVC;
const small = process.env.NKVM_E2E_PVC2;
const failing = process.env.NKVM_E2E_FAIL_PVC;
const namespace = big?.split('/')[0];

function runRow(page: Page, target: string) {
  return page.getByTestId('runs-panel').locator(`tr[data-pvc="${target}"]`).first();
}

// A succeeded run in the history table (the runs panel above it has rows with the same attributes).
function historyRow(page: Page, target: string) {
  return page.getByTestId('history-table').locator(`tr[data-pvc="${target}"][data-status="succeeded"]`).first();
}

async function hydrated(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
}

async function select(page: Page, target: string) {
  const box = page.getByRole('checkbox', { name: `Select ${target}`, exact: true });
  await box.check();
  await expect(box).toBeChecked();
}

test.describe('backups', () => {
  test.describe.configure({ mode: 'serial' });
  test.beforeEach(async ({ page }) => login(page, 'operator'));

  test('two PVCs: start, watch live from two pages, history, verified download', async ({
    page,
    context,
    javaScriptEnabled,
  }) => {
    test.skip(!javaScriptEnabled, 'starting backups needs JavaScript');
    requireEnv('NKVM_E2E_PVC', 'NKVM_E2E_PVC2');
    test.setTimeout(300_000);
    await hydrated(page, `/?ns=${namespace}`);
    await select(page, big!);
    await select(page, small!);
    const start = page.getByTestId('backup-selected');
    await expect(start).toHaveText('Back up selected (2)');
    await start.click();
    await expect(start).toHaveText('Back up selected (0)');

    // Progress while it runs: the big volume streams for a while, with bytes and a rate.
    const bigRow = runRow(page, big!);
    await expect(bigRow).toHaveAttribute('data-status', /queued|running/);
    await expect(bigRow.locator('.stage')).toHaveText('stream', { timeout: 90_000 });
    await expect(bigRow.locator('.progress-text')).toContainText(/MiB/);
    await page.screenshot({ path: test.info().outputPath('backup-running.png'), fullPage: true });

    // A second page attaches to the same run (it belongs to the server, not to the first socket).
    const second = await context.newPage();
    await hydrated(second, '/');
    await expect(runRow(second, big!)).toHaveAttribute('data-status', 'running');
    await second.screenshot({ path: test.info().outputPath('second-page.png'), fullPage: true });
    await second.close();

    for (const target of [big!, small!]) {
      await expect(runRow(page, target)).toHaveAttribute('data-status', 'succeeded', { timeout: 240_000 });
    }
    await expect(runRow(page, small!).locator('.sha256')).toHaveText(/^[0-9a-f]{64}$/);

    // History: both runs, succeeded, each with its sha256.
    await hydrated(page, `/history?namespace=${namespace}`);
    const sums = new Map<string, string>();
    for (const target of [big!, small!]) {
      const row = historyRow(page, target);
      await expect(row).toBeVisible();
      const sum = (await row.getByTestId('sha256').textContent())!.trim();
      expect(sum).toMatch(/^[0-9a-f]{64}$/);
      sums.set(target, sum);
    }
    await page.screenshot({ path: test.info().outputPath('history.png'), fullPage: true });

    // Download the small archive and its checksum file through the server; check them with the
    // system's tools.
    const row = historyRow(page, small!);
    const [archive] = await Promise.all([
      page.waitForEvent('download'),
      row.getByTestId('download-archive').click(),
    ]);
    const archivePath = test.info().outputPath(archive.suggestedFilename());
    await archive.saveAs(archivePath);
    expect(archive.suggestedFilename()).toMatch(/^\d{8}T\d{6}\.\d{3}Z\.tar\.gz$/);
    const digest = createHash('sha256').update(readFileSync(archivePath)).digest('hex');
    expect(digest).toBe(sums.get(small!));
    const [sidecar] = await Promise.all([
      page.waitForEvent('download'),
      row.getByTestId('download-sha256').click(),
    ]);
    const sidecarPath = test.info().outputPath(sidecar.suggestedFilename());
    await sidecar.saveAs(sidecarPath);
    const check = execFileSync('sha256sum', ['-c', sidecar.suggestedFilename()], {
      cwd: test.info().outputDir,
      encoding: 'utf8',
    });
    expect(check).toContain(': OK');
    const listing = execFileSync('tar', ['-tzf', archivePath], { encoding: 'utf8' });
    expect(listing).toContain('./table.csv');
  });

  test('a refused backup shows the stage and what to do', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'starting backups needs JavaScript');
    requireEnv('NKVM_E2E_FAIL_PVC');
    await hydrated(page, `/?ns=${namespace}`);
    await select(page, failing!);
    await page.getByTestId('backup-selected').click();
    const row = runRow(page, failing!);
    await expect(row).toHaveAttribute('data-status', 'failed', { timeout: 60_000 });
    await expect(row.locator('.stage')).toHaveText('failed at preflight');
    await expect(row.locator('.message')).toContainText('ReadWriteOncePod');
    await page.screenshot({ path: test.info().outputPath('refused.png'), fullPage: true });
  });

  test('a running backup can be cancelled', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'cancelling needs JavaScript');
    requireEnv('NKVM_E2E_PVC');
    test.setTimeout(180_000);
    await hydrated(page, `/?ns=${namespace}`);
    await select(page, big!);
    await page.getByTestId('backup-selected').click();
    const row = page.getByTestId('runs-panel').locator(`tr[data-pvc="${big}"][data-status="running"]`);
    await expect(row.locator('.stage')).toHaveText('stream', { timeout: 90_000 });
    await row.getByRole('button', { name: `Cancel the backup of ${big}` }).click();
    const done = runRow(page, big!);
    await expect(done).toHaveAttribute('data-status', 'cancelled', { timeout: 60_000 });
    await expect(done.locator('.message')).toContainText(/cancel/i);
    await page.screenshot({ path: test.info().outputPath('cancelled.png'), fullPage: true });
  });
});

test.describe('history page', () => {
  test.beforeEach(async ({ page }) => login(page, 'viewer'));
  test('renders and filters on the server', async ({ page }) => {
    requireEnv('NKVM_E2E_PVC');
    const response = await page.goto('/history');
    expect(response?.status()).toBe(200);
    await expect(page.getByRole('heading', { name: 'Backup history' })).toBeVisible();
    await page.getByLabel('Namespace').fill('zz-no-such-namespace');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.waitForURL(/namespace=zz-no-such-namespace/);
    await expect(page.getByTestId('history-empty')).toHaveText('No backup run matches.');
    await page.goto(`/history?namespace=${namespace}&status=succeeded`);
    // The hydrated project ran the backups before; both projects then see rows.
    const history = page.getByTestId('history-table');
    await expect(history.locator('tr[data-status="succeeded"]').first()).toBeVisible();
    await expect(history.locator('tr[data-status="failed"]')).toHaveCount(0);
  });
});
