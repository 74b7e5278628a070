// OIDC login against a real OpenID provider (zitadel/oidc's example provider, started by
// scripts/e2e-oidc.sh with its demo users): the login page's button, the provider's own login
// form, the role nkvm maps the user to, the refusal of a user without a role, a tampered state,
// and logout. Runs only with NKVM_E2E_OIDC=1 (projects oidc-hydrated and oidc-no-js).
import { expect, test, type Page } from '@playwright/test';

const issuerHost = process.env.NKVM_E2E_OIDC_ISSUER_HOST ?? '';
const mappedUser = process.env.NKVM_E2E_OIDC_USER ?? 'test-user@localhost';
const unmappedUser = process.env.NKVM_E2E_OIDC_UNMAPPED_USER ?? 'test-user2';
const idpPassword = process.env.NKVM_E2E_OIDC_PASSWORD ?? 'verysecure';

/** From an anonymous `/` to the provider's login form, then signs in there as `user`. */
async function signInAtProvider(page: Page, user: string) {
  expect(issuerHost, 'NKVM_E2E_OIDC_ISSUER_HOST (set by scripts/e2e-oidc.sh)').not.toBe('');
  await page.goto('/');
  await expect(page).toHaveURL(/\/login\?next=%2F$/);
  await expect(page.getByRole('heading', { name: 'Log in to nkvm' })).toBeVisible();
  await expect(page.getByLabel('Password')).toHaveCount(0);
  await page.getByRole('link', { name: `Sign in with ${issuerHost}` }).click();
  // The provider's own page, on its own origin.
  await expect(page).toHaveURL((url) => url.host === issuerHost && url.pathname.startsWith('/login'));
  await page.getByLabel('Username:').fill(user);
  await page.getByLabel('Password:').fill(idpPassword);
  await page.getByRole('button', { name: 'Login' }).click();
}

test.describe('OIDC login', () => {
  test('a mapped user signs in at the provider, gets the role, and logs out', async ({ page, baseURL }) => {
    await signInAtProvider(page, mappedUser);
    await page.waitForURL((url) => url.origin === new URL(baseURL!).origin && url.pathname === '/');
    await expect(page.getByTestId('user-name')).toHaveText(mappedUser);
    await expect(page.getByTestId('user-role')).toHaveText('operator');
    // The session works for server calls too (the header's whoami already did one).
    await page.goto('/history');
    await expect(page.getByTestId('user-name')).toHaveText(mappedUser);

    await page.getByRole('button', { name: 'Log out' }).click();
    await expect(page).toHaveURL(/\/login$/);
    await page.goto('/');
    await expect(page).toHaveURL(/\/login\?next=/);
  });

  test('a user without a role is refused with a clear message', async ({ page }) => {
    await signInAtProvider(page, unmappedUser);
    await expect(page.getByTestId('login-error')).toHaveText(
      `You are signed in as ${unmappedUser} at the identity provider, but nkvm grants ${unmappedUser} ` +
        `no role. Ask an admin to add ${unmappedUser} to nkvm's users file (or you to a group that has a role).`,
    );
    await page.goto('/');
    await expect(page).toHaveURL(/\/login\?next=/);
  });

  test('a tampered state is refused', async ({ page }) => {
    // Catch the provider's redirect back to nkvm before nkvm sees it: the browser does not route
    // redirects, so the login form's POST is fetched here and its redirects followed by hand.
    let callback = '';
    await page.route(
      (url) => url.host === issuerHost && url.pathname.startsWith('/login/'),
      async (route) => {
        let response = await route.fetch({ maxRedirects: 0 });
        let location = response.headers()['location'] ?? '';
        for (let hop = 0; hop < 5 && location && !location.includes('/auth/oidc/callback?'); hop++) {
          response = await page.request.get(new URL(location, route.request().url()).toString(), {
            maxRedirects: 0,
          });
          location = response.headers()['location'] ?? '';
        }
        callback = location;
        await route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback intercepted' });
      },
    );
    await signInAtProvider(page, mappedUser);
    await expect.poll(() => callback).toContain('/auth/oidc/callback?');
    await page.unrouteAll();
    const url = new URL(callback);
    const state = url.searchParams.get('state') ?? '';
    expect(state).toMatch(/^[0-9a-f]{64}$/);
    expect(url.searchParams.get('code')).toBeTruthy();
    url.searchParams.set('state', (state[0] === '0' ? '1' : '0') + state.slice(1));
    await page.goto(url.toString());
    await expect(page.getByTestId('login-error')).toContainText('unknown or already used login attempt');
    await page.goto('/');
    await expect(page).toHaveURL(/\/login\?next=/);
  });
});
