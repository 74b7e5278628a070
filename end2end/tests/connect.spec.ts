// The connect page: the session's connection, the server's contexts, and a pasted kubeconfig (held
// by this browser session only; refused when it would run a command; names from it rendered as text).
//
// Environment: NKVM_E2E_KUBECONFIG_FILE, a kubeconfig whose credentials are embedded (set by
// scripts/e2e.sh to the test cluster's).
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';
import { requireEnv } from './env';
import { login } from './login';

const kubeconfigFile = process.env.NKVM_E2E_KUBECONFIG_FILE;

test.describe('connect page', () => {
  test.beforeEach(async ({ page }) => login(page, 'admin'));

  test('shows the active connection and the contexts', async ({ page }) => {
    const response = await page.goto('/connect');
    expect(response?.status()).toBe(200);
    const active = page.getByTestId('active-connection');
    await expect(active).toContainText('kubeconfig');
    await expect(page.getByRole('heading', { name: 'Contexts of the server’s kubeconfig' })).toBeVisible();
    await expect(page.getByRole('button', { name: 'In use' })).toHaveCount(1);
  });

  test('a pasted kubeconfig is refused when it would run a command', async ({ page, javaScriptEnabled }) => {
    await page.goto('/connect');
    if (javaScriptEnabled) {
      await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    }
    const evil = [
      'apiVersion: v1',
      'kind: Config',
      'clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]',
      'contexts: [{name: x, context: {cluster: c, user: u}}]',
      'current-context: x',
      'users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: ["-c", "touch /tmp/pwned"]}}}]',
    ].join('\n');
    await page.getByLabel('Kubeconfig (YAML)').fill(evil);
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    if (javaScriptEnabled) {
      await expect(page.getByRole('alert')).toContainText('exec');
    } else {
      // Without JavaScript the form posts and the server answers with the error.
      await expect(page.locator('body')).toContainText('exec');
    }
    await expect(page.locator('body')).not.toContainText('/tmp/pwned');
  });

  test('a pasted kubeconfig becomes this session’s connection, then back', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'hydrated only');
    requireEnv('NKVM_E2E_KUBECONFIG_FILE');
    await page.goto('/connect');
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    await page.getByLabel('Kubeconfig (YAML)').fill(readFileSync(kubeconfigFile!, 'utf8'));
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await page.waitForURL((url) => url.pathname === '/');
    await expect(page.getByTestId('cluster-source')).toHaveText('pasted');
    await expect(page.getByRole('table', { name: /PVCs with the workloads/ })).toBeVisible();
    await page.goto('/connect');
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    await page.getByRole('button', { name: 'Back to the server’s own connection' }).click();
    await page.waitForURL((url) => url.pathname === '/');
    await expect(page.getByTestId('cluster-source')).toHaveText('kubeconfig');
  });
  test('names from a pasted kubeconfig are shown as text, never run', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'hydrated only');
    requireEnv('NKVM_E2E_KUBECONFIG_FILE');
    const payload = '<img src=x onerror="window.__nkvmXss=1"><script>window.__nkvmXss=2</script>';
    const text = readFileSync(kubeconfigFile!, 'utf8')
      .replace(/^(contexts:\n- name: )nkvm-test$/m, `$1'${payload}'`)
      .replace(/^current-context: nkvm-test$/m, `current-context: '${payload}'`);
    expect(text.split(payload).length).toBe(3);
    await page.goto('/connect');
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    await page.getByLabel('Kubeconfig (YAML)').fill(text);
    await page.getByRole('button', { name: 'Connect', exact: true }).click();
    await page.waitForURL((url) => url.pathname === '/');
    for (const render of ['hydrated', 'server-rendered']) {
      if (render === 'server-rendered') await page.reload();
      await expect(page.getByTestId('cluster-source'), render).toHaveText('pasted');
      await expect(page.getByTestId('cluster-context'), render).toHaveText(payload);
      await expect(page.locator('img[src="x"]'), render).toHaveCount(0);
      expect(await page.evaluate(() => (window as unknown as { __nkvmXss?: number }).__nkvmXss), render).toBeUndefined();
    }
    await page.screenshot({ path: test.info().outputPath('context-name-payload.png'), fullPage: true });
    await page.goto('/connect');
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    await page.getByRole('button', { name: 'Back to the server’s own connection' }).click();
    await page.waitForURL((url) => url.pathname === '/');
    await expect(page.getByTestId('cluster-source')).toHaveText('kubeconfig');
  });
});
