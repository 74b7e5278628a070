// Login, roles and refusals, in both projects: nothing but the health check and the login page is
// reachable anonymously; roles are enforced by the server whatever the page shows; cross-origin
// state changes are refused; logins, refusals and exports land in the audit trail.
import { expect, test } from '@playwright/test';
import { login, password } from './login';

const big = process.env.NKVM_E2E_PVC;

test.describe('authentication', () => {
  test('anonymous requests are refused everywhere but /healthz and /login', async ({ page, baseURL }) => {
    const health = await page.request.get('/healthz');
    expect(health.status()).toBe(200);
    for (const path of ['/', '/history', '/connect', '/audit']) {
      await page.goto(path);
      await expect(page).toHaveURL(/\/login\?next=/);
      await expect(page.getByRole('heading', { name: 'Log in to nkvm' })).toBeVisible();
    }
    const origin = { Origin: baseURL! };
    for (const endpoint of ['inventory', 'history', 'backups/start', 'backups/runs', 'connect/paste', 'audit', 'whoami']) {
      const response = await page.request.post(`/api/${endpoint}`, { headers: origin, form: {} });
      expect(response.status(), endpoint).toBe(401);
    }
    for (const path of ['/download/1/archive', '/audit.csv']) {
      const response = await page.request.get(path, { maxRedirects: 0 });
      expect(response.status(), path).toBe(401);
    }
  });

  test('a wrong password is refused without saying which part was wrong', async ({ page }) => {
    await page.goto('/login');
    await page.getByLabel('User name').fill('operator');
    await page.getByLabel('Password').fill(`${password('operator')}-wrong`);
    await page.getByRole('button', { name: 'Log in' }).click();
    await expect(page.getByRole('alert')).toHaveText('Wrong user name or password.');
    await expect(page).toHaveURL(/\/login\?error=invalid/);
  });

  test('a viewer cannot start backups, download, or read the audit trail', async ({ page, javaScriptEnabled }) => {
    await login(page, 'viewer', '/');
    await expect(page.getByTestId('user-role')).toHaveText('viewer');
    if (javaScriptEnabled && big) {
      await page.goto(`/?ns=${big.split('/')[0]}`);
      await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
      await page.getByRole('checkbox', { name: `Select ${big}`, exact: true }).check();
      await page.getByTestId('backup-selected').click();
      await expect(page.getByRole('alert').filter({ hasText: 'starting backups needs the operator role' })).toBeVisible();
    }
    const download = await page.request.get('/download/1/archive');
    expect(download.status()).toBe(403);
    await page.goto('/audit');
    await expect(page.getByRole('alert').filter({ hasText: 'the audit trail needs the admin role' })).toBeVisible();
  });

  test('cross-origin state changes are refused even with a session', async ({ page }) => {
    await login(page, 'admin', '/');
    const response = await page.request.post('/api/backups/start', {
      headers: { Origin: 'http://evil.example' },
      form: { 'targets[0]': 'default/x' },
    });
    expect(response.status()).toBe(403);
    expect(await response.text()).toContain('cross-origin request refused');
  });

  test('an admin reads and exports the audit trail; logout ends the session', async ({ page }) => {
    await login(page, 'admin', '/audit');
    const logins = page.locator('tr[data-action="login"][data-actor="admin"]');
    await expect(logins.first()).toBeVisible();
    await expect(page.locator('tr[data-action="login_failed"]').first()).toBeVisible();
    const csv = await page.request.get('/audit.csv');
    expect(csv.status()).toBe(200);
    const text = await csv.text();
    expect(text.split(/\r?\n/)[0]).toBe('id,at,actor,action,target,outcome,detail,source');
    expect(text).toContain(',admin,login,');
    expect(text).not.toContain(password('admin'));
    await page.screenshot({ path: test.info().outputPath('audit.png'), fullPage: true });

    await page.getByRole('button', { name: 'Log out' }).click();
    await expect(page).toHaveURL(/\/login$/);
    await page.goto('/history');
    await expect(page).toHaveURL(/\/login\?next=/);
  });
});
