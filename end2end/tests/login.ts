// Logging in through the login form, as one of the users scripts/e2e.sh creates (admin, operator,
// viewer; passwords in NKVM_E2E_<ROLE>_PASSWORD).
import { expect, type Page } from '@playwright/test';

export type Role = 'admin' | 'operator' | 'viewer';

export function password(role: Role): string {
  const value = process.env[`NKVM_E2E_${role.toUpperCase()}_PASSWORD`];
  if (!value) throw new Error(`NKVM_E2E_${role.toUpperCase()}_PASSWORD is not set (run scripts/e2e.sh)`);
  return value;
}

/** Logs in as `role` and lands on `path` (default `/`). */
export async function login(page: Page, role: Role, path = '/') {
  for (let attempt = 1; ; attempt++) {
    try {
      await loginOnce(page, role, path);
      return;
    } catch (err) {
      // Chromium cancels its requests when a network interface comes or goes, and every pod
      // started or removed on the test node adds or removes one (seen in the deployment suite:
      // "ERR_NETWORK_CHANGED" instead of the page). Only that is retried, twice.
      const pageText = await page.content().catch(() => '');
      const changed = `${err}`.includes('ERR_NETWORK_CHANGED') || pageText.includes('ERR_NETWORK_CHANGED');
      if (!changed || attempt >= 3) throw err;
    }
  }
}

async function loginOnce(page: Page, role: Role, path: string) {
  await page.goto(`/login?next=${encodeURIComponent(path)}`);
  await page.getByLabel('User name').fill(role);
  await page.getByLabel('Password').fill(password(role));
  await page.getByRole('button', { name: 'Log in' }).click();
  // Bounded (a navigation has no timeout of its own): a login cut by ERR_NETWORK_CHANGED stays on
  // Chromium's error page, and must fail in time to be tried again.
  await page.waitForURL((url) => url.pathname === path.split('?')[0], { timeout: 30_000 });
  await expect(page.getByTestId('user-name')).toHaveText(role);
}
