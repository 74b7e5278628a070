// Schedules in a real browser against the real test cluster: an admin creates a schedule, sees its
// next run (on the schedule's own clock, shown in UTC), pauses and resumes it, deletes it; a viewer
// reads the page without the forms; a schedule of every minute starts a run that the history shows
// as started by the schedule. Works with and without JavaScript (plain forms).
//
// Environment (set by scripts/e2e.sh):
//   NKVM_E2E_PVC2   namespace/name of a small PVC (backups take a second)
import { expect, test } from '@playwright/test';
import { requireEnv } from './env';
import { login } from './login';

test.describe('schedules', () => {
  test.describe.configure({ mode: 'serial' });

  test('create, see the next run, pause, resume, delete', async ({ page }, info) => {
    const [small] = requireEnv('NKVM_E2E_PVC2');
    const name = `e2e-${info.project.name}`;
    await login(page, 'admin', '/schedules');
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('Cron (minute hour day month weekday)').fill('30 3 * * *');
    await page.getByLabel('Time zone').fill('Europe/Berlin');
    await page.getByLabel('PVCs (NS/PVC, space-separated)').fill(small);
    await page.getByLabel('Keep last').fill('3');
    await page.getByRole('button', { name: 'Create schedule' }).click();
    const row = page.locator(`tr[data-schedule="${name}"]`);
    await expect(row).toBeVisible();
    // 03:30 in Berlin is 01:30 or 02:30 UTC, depending on daylight saving time.
    await expect(row.getByTestId('next-run')).toHaveText(/^\d{4}-\d{2}-\d{2} 0[12]:30/);
    await expect(row).toContainText('last 3');
    await expect(row).toContainText(small);
    await page.screenshot({ path: `test-results/schedule-created-${info.project.name}.png`, fullPage: true });

    await row.getByRole('button', { name: 'Pause' }).click();
    await expect(row).toHaveAttribute('data-paused', 'true');
    await expect(row.getByTestId('next-run')).toHaveText(/^paused/);
    await row.getByRole('button', { name: 'Resume' }).click();
    await expect(row).toHaveAttribute('data-paused', 'false');
    await expect(row.getByTestId('next-run')).toHaveText(/^\d{4}-\d{2}-\d{2}/);

    // A refused definition says why.
    await page.getByLabel('Name', { exact: true }).fill(`${name}-bad`);
    await page.getByLabel('Cron (minute hour day month weekday)').fill('every night');
    await page.getByLabel('PVCs (NS/PVC, space-separated)').fill(small);
    await page.getByRole('button', { name: 'Create schedule' }).click();
    await expect(page.getByRole('alert')).toContainText('invalid cron expression');

    await page.goto('/schedules');
    await page.locator(`tr[data-schedule="${name}"]`).getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator(`tr[data-schedule="${name}"]`)).toHaveCount(0);
  });

  test('viewers read schedules but cannot change them', async ({ page }) => {
    await login(page, 'viewer', '/schedules');
    await expect(page.getByRole('heading', { name: 'Schedules', exact: true })).toBeVisible();
    await expect(page.getByRole('button', { name: 'Create schedule' })).toHaveCount(0);
    await expect(page.getByRole('heading', { name: 'Retention preview' })).toBeVisible();
  });

  test('a scheduled run appears in the history', async ({ page }, info) => {
    const [small] = requireEnv('NKVM_E2E_PVC2');
    test.skip(info.project.name !== 'hydrated', 'one real minute of waiting is enough');
    test.setTimeout(240_000);
    const name = 'e2e-every-minute';
    await login(page, 'admin', '/schedules');
    await page.getByLabel('Name', { exact: true }).fill(name);
    await page.getByLabel('Cron (minute hour day month weekday)').fill('* * * * *');
    await page.getByLabel('PVCs (NS/PVC, space-separated)').fill(small);
    await page.getByRole('button', { name: 'Create schedule' }).click();
    await expect(page.locator(`tr[data-schedule="${name}"]`)).toBeVisible();

    const [namespace, pvc] = small.split('/');
    const run = page
      .locator(`tr[data-pvc="${small}"]`)
      .filter({ has: page.getByTestId('started-by').getByText(`schedule:${name}`, { exact: true }) })
      .first();
    await expect(async () => {
      await page.goto(`/history?namespace=${namespace}&pvc=${pvc}`);
      await expect(run).toHaveAttribute('data-status', 'succeeded', { timeout: 1_000 });
    }).toPass({ timeout: 180_000, intervals: [5_000] });
    await page.screenshot({ path: 'test-results/scheduled-run-in-history.png', fullPage: true });

    await page.goto('/schedules');
    await page.locator(`tr[data-schedule="${name}"]`).getByRole('button', { name: 'Delete' }).click();
    await expect(page.locator(`tr[data-schedule="${name}"]`)).toHaveCount(0);
  });
});
