// Pushed inventory updates: with the page open, a PVC created and deleted with kubectl appears and
// disappears without a reload, and the filter, sort order and selection survive each update. Runs
// in the hydrated project only (without JavaScript the page is a snapshot; reloading shows the
// change, as the inventory spec shows).
//
// Environment:
//   NKVM_E2E_PVC      `namespace/name` of a listed PVC (selected while the table updates)
//   NKVM_E2E_KUBECTL  kubectl with the test cluster's admin kubeconfig (KUBECONFIG)
import { expect, test, type Page } from '@playwright/test';
import { kubectl, requireEnv } from './env';
import { login } from './login';

function row(page: Page, namespace: string, name: string) {
  return page.locator(`table.inventory-table tbody tr[data-pvc="${namespace}/${name}"]`);
}

test.describe('live inventory', () => {
  test('a PVC created and deleted with the page open appears and disappears; filter, sort and selection stay', async ({
    page,
    javaScriptEnabled,
  }) => {
    test.skip(!javaScriptEnabled, 'pushed updates need JavaScript');
    const [pvc] = requireEnv('NKVM_E2E_PVC', 'NKVM_E2E_KUBECTL');
    const [namespace, selectedName] = pvc.split('/');
    const name = `live-${Date.now().toString(36)}`;
    await login(page, 'viewer', `/?q=${encodeURIComponent(namespace)}&sort=name&dir=desc`);
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    // The live socket is open once the backups panel says so.
    const selected = row(page, namespace, selectedName);
    await expect(selected).toHaveCount(1);
    await selected.getByRole('checkbox').check();
    await expect(row(page, namespace, name)).toHaveCount(0);

    const created = Date.now();
    kubectl(
      ['-n', namespace, 'apply', '-f', '-'],
      `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: ${name}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
`,
    );
    try {
      await expect(row(page, namespace, name)).toHaveCount(1, { timeout: 15_000 });
      console.log(`live: created PVC shown after ${Date.now() - created} ms`);
      // Same filter, same order (name descending), same selection, no reload.
      await expect(page.locator('#pvc-filter')).toHaveValue(namespace);
      expect(new URL(page.url()).searchParams.get('dir')).toBe('desc');
      const names = await page.locator('table.inventory-table tbody tr[data-pvc] th[scope="row"]').allTextContents();
      expect(names.length).toBeGreaterThan(1);
      expect([...names].sort().reverse()).toEqual(names);
      await expect(selected.getByRole('checkbox')).toBeChecked();
      expect(names.every((n) => n !== '')).toBe(true);
    } finally {
      kubectl(['-n', namespace, 'delete', 'pvc', name, '--wait=false']);
    }
    const deleted = Date.now();
    await expect(row(page, namespace, name)).toHaveCount(0, { timeout: 15_000 });
    console.log(`live: deleted PVC gone after ${Date.now() - deleted} ms`);
    await expect(selected.getByRole('checkbox')).toBeChecked();
  });
});
