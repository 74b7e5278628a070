// A backup to a non-default destination from the UI, against the real test cluster and the real S3
// test server (versitygw): pick `offsite` beside "Back up selected", watch the run succeed, find
// the run in the history with its destination, download the archive and its checksum through the
// server (streamed from S3) and verify them with the system's sha256sum and tar.
//
// Environment (set by scripts/e2e.sh, which gives the server a destinations file with `offsite`):
//   NKVM_E2E_PVC2         namespace/name of a small PVC
//   NKVM_E2E_DESTINATION  the remote destination's name (`offsite`)
import { execFileSync } from 'node:child_process';
import { expect, test } from '@playwright/test';
import { requireEnv } from './env';
import { login } from './login';

const small = process.env.NKVM_E2E_PVC2;
const destination = process.env.NKVM_E2E_DESTINATION;
const namespace = small?.split('/')[0];

test.describe('destinations', () => {
  test.beforeEach(async ({ page }) => login(page, 'operator'));

  test('back up to a non-default destination, then download and verify', async ({
    page,
    javaScriptEnabled,
  }) => {
    test.skip(!javaScriptEnabled, 'starting backups needs JavaScript');
    requireEnv('NKVM_E2E_PVC2', 'NKVM_E2E_DESTINATION');
    test.setTimeout(180_000);
    await page.goto(`/?ns=${namespace}`);
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);

    // The picker lists names only; the server's default is preselected.
    const picker = page.getByLabel('Destination');
    await expect(picker).toHaveValue('local');
    await expect(picker.locator('option')).toHaveText(['local (default)', destination!]);
    await picker.selectOption(destination!);

    const box = page.getByRole('checkbox', { name: `Select ${small}`, exact: true });
    await box.check();
    await page.getByTestId('backup-selected').click();
    // The new run (earlier runs of the same PVC may be listed too): queued or running first.
    const started = page
      .getByTestId('runs-panel')
      .locator(`tr[data-pvc="${small}"]:is([data-status="queued"], [data-status="running"])`)
      .first();
    await expect(started).toBeVisible();
    const runId = await started.getAttribute('data-run');
    const run = page.getByTestId('runs-panel').locator(`tr[data-run="${runId}"]`);
    await expect(run).toHaveAttribute('data-status', 'succeeded', { timeout: 120_000 });
    await page.screenshot({ path: test.info().outputPath('offsite-done.png'), fullPage: true });

    // History: the newest run of the PVC went to the destination.
    await page.goto(`/history?namespace=${namespace}&pvc=${small!.split('/')[1]}&status=succeeded`);
    const row = page.getByTestId('history-table').locator(`tr[data-run="${runId}"]`);
    await expect(row.getByTestId('destination')).toHaveText(destination!);
    const sum = (await row.getByTestId('sha256').textContent())!.trim();

    const [archive] = await Promise.all([
      page.waitForEvent('download'),
      row.getByTestId('download-archive').click(),
    ]);
    const archivePath = test.info().outputPath(archive.suggestedFilename());
    await archive.saveAs(archivePath);
    const [sidecar] = await Promise.all([
      page.waitForEvent('download'),
      row.getByTestId('download-sha256').click(),
    ]);
    await sidecar.saveAs(test.info().outputPath(sidecar.suggestedFilename()));
    const check = execFileSync('sha256sum', ['-c', sidecar.suggestedFilename()], {
      cwd: test.info().outputDir,
      encoding: 'utf8',
    });
    expect(check).toContain(': OK');
    expect(execFileSync('sha256sum', [archivePath], { encoding: 'utf8' })).toContain(sum);
    const listing = execFileSync('tar', ['-tzf', archivePath], { encoding: 'utf8' });
    expect(listing).toContain('./table.csv');
  });

  test('an unknown destination is refused with a clear message', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'server functions are called from the hydrated page');
    requireEnv('NKVM_E2E_PVC2');
    await page.goto('/');
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    const response = await page.request.post('/api/backups/start', {
      form: { 'targets[0]': small!, destination: 'nowhere' },
      headers: { Origin: new URL(page.url()).origin },
    });
    expect(response.ok()).toBe(false);
    const body = await response.text();
    expect(body).toContain('no destination named');
    expect(body).toContain('nowhere');
  });
});
