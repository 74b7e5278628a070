// The inventory page, run in both projects (`hydrated` and `no-js`), and its keyboard shortcuts.
//
// Environment:
//   NKVM_E2E_PVC           `namespace/name` of a PVC that must be listed (tests needing it fail in strict runs, else skip: tests/env.ts)
//   NKVM_E2E_OWNER         optional `Kind/name` expected in that PVC's owner cell
//   NKVM_E2E_PVC2          `namespace/name` of a small PVC in the same namespace (the keyboard test
//                          backs it up)
//   NKVM_E2E_KUBECTL       kubectl with the test cluster's admin kubeconfig (the keyboard test
//                          creates a PVC to push a live update)
//   NKVM_E2E_EXPECT_ERROR  set to 1 when the server's cluster is unreachable on purpose: the page
//                          must then show the error instead of the table (and must not crash)
import { expect, test, type Page } from '@playwright/test';
import { kubectl, requireEnv } from './env';
import { login } from './login';

const pvc = process.env.NKVM_E2E_PVC;
const owner = process.env.NKVM_E2E_OWNER;
const expectError = process.env.NKVM_E2E_EXPECT_ERROR === '1';

function splitPair(value: string, what: string): [string, string] {
  const slash = value.indexOf('/');
  if (slash <= 0 || slash === value.length - 1) {
    throw new Error(`${what} must look like a/b, got ${JSON.stringify(value)}`);
  }
  return [value.slice(0, slash), value.slice(slash + 1)];
}

/** The data row of PVC `namespace/name`: its row header is the name, a cell is the namespace. */
function pvcRow(page: Page, namespace: string, name: string) {
  return page
    .getByRole('row')
    .filter({ has: page.getByRole('rowheader', { name, exact: true }) })
    .filter({ has: page.getByRole('cell', { name: namespace, exact: true }) });
}

/** Data rows currently shown (rows hidden by the filter are not in the accessibility tree). */
function visibleDataRows(page: Page) {
  return page.getByRole('table').getByRole('rowgroup').last().getByRole('row');
}

async function waitUntilInteractive(page: Page, javaScriptEnabled: boolean) {
  if (javaScriptEnabled) {
    await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1);
    // The hydrated page reads every row after the server's first screen.
    await expect(page.locator('table.inventory-table[data-rows="all"]')).toHaveCount(1);
  }
}

test.describe('inventory page', () => {
  test.beforeEach(async ({ page }) => login(page, 'viewer'));

  test('renders the header with the active cluster', async ({ page }) => {
    const response = await page.goto('/');
    expect(response?.status()).toBe(200);
    await expect(page).toHaveTitle(/nkvm/);
    const cluster = page.getByRole('region', { name: 'Active cluster' });
    await expect(cluster).toBeVisible();
    await expect(cluster).toContainText('API server');
    await expect(cluster).toContainText('Context');
    await expect(cluster).toContainText('Credentials');
  });

  test('hydrates without errors', async ({ page, javaScriptEnabled }) => {
    test.skip(!javaScriptEnabled, 'hydration needs JavaScript');
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
    });
    await page.goto('/');
    await waitUntilInteractive(page, true);
    expect(problems).toEqual([]);
  });

  test('shows the table, or a readable error when the cluster is unreachable', async ({ page }) => {
    await page.goto('/');
    if (expectError) {
      const alert = page.getByRole('alert').filter({ hasText: 'The inventory could not be loaded' });
      await expect(alert).toBeVisible();
      await expect(page.getByRole('table')).toHaveCount(0);
    } else {
      const table = page.getByRole('table', { name: /PVCs with the workloads/ });
      await expect(table).toBeVisible();
      for (const column of ['Namespace', 'Name', 'Phase', 'Capacity', 'Storage class', 'Access modes', 'Owner', 'Consumers', 'Flags']) {
        await expect(table.getByRole('columnheader', { name: column, exact: true })).toBeVisible();
      }
    }
  });

  test('lists the PVC with its owner', async ({ page }) => {
    test.skip(expectError, 'the cluster is unreachable on purpose');
    requireEnv('NKVM_E2E_PVC');
    const [namespace, name] = splitPair(pvc!, 'NKVM_E2E_PVC');
    // `ns=`: on a big cluster the PVC may be past the rows displayed by default.
    await page.goto(`/?ns=${encodeURIComponent(namespace)}`);
    const row = pvcRow(page, namespace, name);
    await expect(row).toHaveCount(1);
    await expect(row).toBeVisible();
    // With PVCs listed, the "no PVCs" notes stay hidden and no template text leaks into the page.
    await expect(page.getByText('No PVCs in the namespaces this server may read.')).toBeHidden();
    await expect(page.getByText('No PVC matches the filter.')).toBeHidden();
    await expect(page.locator('main')).not.toContainText('.get()');
    // Cells around the row header (the name): selection, namespace, phase, capacity, storage class,
    // access modes, owner…
    const ownerCell = row.getByRole('cell').nth(6);
    if (owner) {
      const [kind, ownerName] = splitPair(owner, 'NKVM_E2E_OWNER');
      await expect(ownerCell).toContainText(kind);
      await expect(ownerCell).toContainText(ownerName);
    } else {
      await expect(ownerCell).not.toHaveText('');
    }
  });

  test('the coverage summary counts flagged PVCs and each link filters the table to them', async ({ page }) => {
    test.skip(expectError, 'the cluster is unreachable on purpose');
    requireEnv('NKVM_E2E_PVC');
    const [namespace] = splitPair(pvc!, 'NKVM_E2E_PVC');
    await page.goto(`/?ns=${encodeURIComponent(namespace)}`);
    const summary = page.getByRole('navigation', { name: 'Backup coverage' });
    await expect(summary).toBeVisible();
    // The fixture's namespace has PVCs that were never backed up (at least the one that fails).
    const never = summary.locator('a[data-flag="never-backed-up"]');
    await expect(never).toHaveCount(1);
    const counted = Number((await never.textContent())!.trim().split(' ')[0]);
    expect(counted).toBeGreaterThan(0);
    await never.click();
    await expect(page).toHaveURL(/[?&]q=never-backed-up/);
    expect(new URL(page.url()).searchParams.get('ns')).toBe(namespace);
    // The filtered page's own summary and rows come from one render (a backup finishing meanwhile
    // elsewhere in the suite cannot make them disagree).
    const after = Number((await summary.locator('a[data-flag="never-backed-up"]').textContent())!.trim().split(' ')[0]);
    const rows = visibleDataRows(page);
    await expect(rows).toHaveCount(after);
    for (const text of await rows.allTextContents()) expect(text).toContain('never-backed-up');
  });

  test('markup in a PVC annotation stays inert', async ({ page }) => {
    // scripts/e2e.sh annotates NKVM_E2E_PVC with an <img onerror> payload (label values cannot hold
    // markup: the apiserver refuses them). Whatever nkvm shows of the PVC, nothing may run.
    test.skip(expectError, 'the cluster is unreachable on purpose');
    requireEnv('NKVM_E2E_PVC', 'NKVM_E2E_PAYLOAD');
    const [namespace, name] = splitPair(pvc!, 'NKVM_E2E_PVC');
    const response = await page.goto(`/?ns=${encodeURIComponent(namespace)}`);
    await expect(pvcRow(page, namespace, name)).toHaveCount(1);
    expect(await response!.text()).not.toContain(process.env.NKVM_E2E_PAYLOAD!);
    await expect(page.locator('img[src="x"]')).toHaveCount(0);
    expect(await page.evaluate(() => (window as unknown as { __nkvmXss?: number }).__nkvmXss)).toBeUndefined();
  });

  test('the first load carries only the rows its view shows; hydrated, the page then reads them all', async ({
    page,
    javaScriptEnabled,
  }) => {
    test.skip(expectError, 'the cluster is unreachable on purpose');
    requireEnv('NKVM_E2E_PVC', 'NKVM_E2E_KUBECTL');
    const [namespace, name] = splitPair(pvc!, 'NKVM_E2E_PVC');
    // Every row the server sends carries its PVC's UID (in the rows' data the page hydrates from).
    const uid = kubectl(['-n', namespace, 'get', 'pvc', name, '-o', 'jsonpath={.metadata.uid}']).trim();
    expect(uid).toMatch(/^[0-9a-f-]{36}$/);
    const shown = await page.goto(`/?ns=${encodeURIComponent(namespace)}`);
    expect(await shown!.text(), 'a row of the view is sent').toContain(uid);
    // A view nothing matches: the server sends no row at all, but the menus and counts of the whole
    // inventory (the namespace is still offered, the count says how many PVCs there are).
    const none = await page.goto('/?q=zz-no-such-pvc-zz');
    const html = await none!.text();
    expect(html, 'a row outside the view is not sent').not.toContain(uid);
    await expect(page.locator('#pvc-namespace option', { hasText: namespace })).toHaveCount(1);
    await expect(page.getByTestId('pvc-count')).toHaveText(/^Showing 0 of \d+ PVCs?$/);
    const row = pvcRow(page, namespace, name);
    if (!javaScriptEnabled) {
      await expect(page.locator('table.inventory-table[data-rows="first-screen"]')).toHaveCount(1);
      return;
    }
    // Hydrated, the page reads the whole inventory and filters it itself: clearing the filter shows
    // the row the first load did not carry, without another page load.
    await waitUntilInteractive(page, true);
    await page.getByLabel('Filter').fill('');
    await expect(row).toBeVisible();
    expect(new URL(page.url()).searchParams.get('q')).toBeNull();
  });

  test('the filter hides rows that do not match', async ({ page, javaScriptEnabled }) => {
    test.skip(expectError, 'the cluster is unreachable on purpose');
    requireEnv('NKVM_E2E_PVC');
    const [namespace, name] = splitPair(pvc!, 'NKVM_E2E_PVC');
    await page.goto('/');
    await waitUntilInteractive(page, javaScriptEnabled);
    const filter = page.getByLabel('Filter');
    const row = pvcRow(page, namespace, name);

    const apply = async (text: string) => {
      await filter.fill(text);
      // Without JavaScript the form is submitted (GET /?q=…) and the server filters; hydrated, the
      // table filters as the user types.
      if (!javaScriptEnabled) {
        await filter.press('Enter');
        await page.waitForURL((url) => url.searchParams.get('q') === text);
      }
    };

    await apply('zz-no-such-pvc-zz');
    await expect(row).toBeHidden();
    await expect(visibleDataRows(page)).toHaveCount(0);
    await expect(page.getByText('No PVC matches the filter.')).toBeVisible();

    await apply(`${namespace}/${name}`);
    await expect(row).toBeVisible();
    await expect(page.getByText('No PVC matches the filter.')).toBeHidden();
    const shown = await visibleDataRows(page).count();
    expect(shown).toBeGreaterThanOrEqual(1);
    await expect(page.getByTestId('pvc-count')).toHaveText(/^(Showing \d+ of )?\d+ PVCs?$/);
  });

  // A filter step reuses the table's rows for other PVCs (it changes their cells instead of building
  // rows again): what a row shows, and its checkbox, must follow the PVC, not the row's position.
  test('a selection follows its PVC, not the row it was shown in, across filter steps', async ({
    page,
    javaScriptEnabled,
  }) => {
    test.skip(!javaScriptEnabled, 'selection needs JavaScript');
    test.skip(expectError, 'the cluster is unreachable on purpose');
    requireEnv('NKVM_E2E_PVC');
    requireEnv('NKVM_E2E_PVC2');
    const [namespace, name] = splitPair(pvc!, 'NKVM_E2E_PVC');
    const [namespace2, name2] = splitPair(process.env.NKVM_E2E_PVC2!, 'NKVM_E2E_PVC2');
    await page.goto('/');
    await waitUntilInteractive(page, javaScriptEnabled);
    const filter = page.getByLabel('Filter');
    const box = (ns: string, n: string) => page.getByRole('checkbox', { name: `Select ${ns}/${n}`, exact: true });
    const selectedButton = page.getByTestId('backup-selected');

    await filter.fill(`${namespace}/${name}`);
    await expect(pvcRow(page, namespace2, name2)).toBeHidden();
    await box(namespace, name).check();
    await expect(selectedButton).toHaveText('Back up selected (1)');

    // The other PVC now sits where the selected one was: shown with its own cells, not selected.
    await filter.fill(`${namespace2}/${name2}`);
    await expect(pvcRow(page, namespace2, name2)).toBeVisible();
    await expect(pvcRow(page, namespace, name)).toBeHidden();
    await expect(box(namespace2, name2)).not.toBeChecked();
    await expect(pvcRow(page, namespace2, name2)).toHaveAttribute('aria-selected', 'false');

    // Nothing matches: every row hidden; back to both: each with its own selection state.
    await filter.fill('zz-no-such-pvc-zz');
    await expect(visibleDataRows(page)).toHaveCount(0);
    await filter.fill(namespace);
    await expect(box(namespace, name)).toBeChecked();
    await expect(pvcRow(page, namespace, name)).toHaveAttribute('aria-selected', 'true');
    await expect(box(namespace2, name2)).not.toBeChecked();
    await expect(selectedButton).toHaveText('Back up selected (1)');
    // Hidden rows carry no PVC: every shown row names one, and no PVC is shown twice.
    const keys = await page.locator('table.inventory-table tbody tr[data-pvc]').evaluateAll((rows) =>
      rows.map((row) => row.getAttribute('data-pvc')!),
    );
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.length).toBe(await visibleDataRows(page).count());
  });
});

// The keyboard shortcuts (docs/web.md, "Keyboard"), driven with the keyboard only. An operator:
// `b` really starts a backup (of NKVM_E2E_PVC2, the small PVC), and its success pushes an
// inventory update that renders the table again.
test.describe('inventory keyboard', () => {
  test.beforeEach(async ({ page }) => login(page, 'operator'));

  test('/ filters, Esc, arrows, Space selects, b backs up; b typed in the filter starts nothing; the current row survives a live update', async ({
    page,
    javaScriptEnabled,
  }) => {
    test.skip(!javaScriptEnabled, 'the shortcuts need JavaScript');
    test.skip(expectError, 'the cluster is unreachable on purpose');
    const [big, small] = requireEnv('NKVM_E2E_PVC', 'NKVM_E2E_PVC2', 'NKVM_E2E_KUBECTL');
    const [namespace] = splitPair(big, 'NKVM_E2E_PVC');
    test.setTimeout(240_000);
    let starts = 0;
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/api/backups/start') starts += 1;
    });
    await page.goto('/');
    await waitUntilInteractive(page, true);
    await expect(page.getByTestId('keyboard-hint')).toBeVisible();
    const filter = page.locator('#pvc-filter');
    const button = page.getByTestId('backup-selected');
    const rowOf = (key: string) => page.locator(`table.inventory-table tbody tr[data-pvc="${key}"]`);
    const currentRows = page.locator('table.inventory-table tbody tr[aria-current="true"]');

    // `/` focuses the filter; what is typed there filters; Esc leaves it with the filter kept.
    await page.keyboard.press('/');
    await expect(filter).toBeFocused();
    await page.keyboard.type(namespace);
    await page.waitForURL((url) => url.searchParams.get('q') === namespace);
    await page.keyboard.press('Escape');
    await expect(filter).not.toBeFocused();
    await expect(filter).toHaveValue(namespace);
    await expect(rowOf(small)).toBeVisible();
    const keys = await page.locator('table.inventory-table tbody tr[data-pvc]').evaluateAll((rows) =>
      rows.map((row) => row.getAttribute('data-pvc')!),
    );
    expect(keys.length).toBeGreaterThanOrEqual(2);
    expect(keys).toContain(big);

    // Arrows, Home and End move the current row (focused, marked aria-current, the one tab stop).
    await expect(currentRows).toHaveCount(0);
    const expectCurrent = async (key: string) => {
      await expect(rowOf(key)).toHaveAttribute('aria-current', 'true');
      await expect(currentRows).toHaveCount(1);
      await expect(rowOf(key)).toBeFocused();
      await expect(rowOf(key)).toHaveAttribute('tabindex', '0');
      await expect(rowOf(key)).toHaveClass(/\bcurrent\b/);
    };
    await page.keyboard.press('ArrowDown');
    await expectCurrent(keys[0]);
    await page.keyboard.press('ArrowDown');
    await expectCurrent(keys[1]);
    await page.keyboard.press('ArrowUp');
    await expectCurrent(keys[0]);
    await page.keyboard.press('ArrowUp');
    await expectCurrent(keys[0]);
    await page.keyboard.press('End');
    await expectCurrent(keys[keys.length - 1]);
    await page.keyboard.press('ArrowDown');
    await expectCurrent(keys[keys.length - 1]);
    await page.keyboard.press('Home');
    await expectCurrent(keys[0]);
    for (let i = 0; i < keys.indexOf(small); i += 1) await page.keyboard.press('ArrowDown');
    await expectCurrent(small);

    // Space selects the current row (the same selection as its checkbox), and unselects it.
    const smallBox = page.getByRole('checkbox', { name: `Select ${small}`, exact: true });
    await page.keyboard.press(' ');
    await expect(smallBox).toBeChecked();
    await expect(button).toHaveText('Back up selected (1)');
    await page.getByTestId('keyboard-hint').locator('summary').click();
    await page.screenshot({ path: test.info().outputPath('keyboard-current-row.png'), fullPage: true });
    await rowOf(small).focus();
    await page.keyboard.press(' ');
    await expect(smallBox).not.toBeChecked();
    await page.keyboard.press(' ');
    await expect(smallBox).toBeChecked();

    // `b` (and a space) typed in the filter are text, not shortcuts.
    await page.keyboard.press('/');
    await expect(filter).toBeFocused();
    await page.keyboard.type(' b');
    await page.waitForURL((url) => url.searchParams.get('q') === `${namespace} b`);
    await page.keyboard.press('Backspace');
    await page.keyboard.press('Backspace');
    await page.waitForURL((url) => url.searchParams.get('q') === namespace);
    // Esc goes back to the current row.
    await page.keyboard.press('Escape');
    await expectCurrent(small);
    await expect(smallBox).toBeChecked();
    await expect(button).toHaveText('Back up selected (1)');
    expect(starts).toBe(0);

    // `b` backs up the selection, as the button does: one start, the run shows up in the panel.
    const runs = page.getByTestId('runs-panel').locator(`tr[data-pvc="${small}"]`);
    const runsBefore = await runs.count();
    await page.keyboard.press('b');
    await expect(runs).toHaveCount(runsBefore + 1);
    await expect(button).toHaveText('Back up selected (0)');
    expect(starts).toBe(1);

    // Another current row, selected, with the focus. A PVC created with kubectl sorts first (so
    // every row moves down one place) and the live update renders the table again: the same PVC
    // stays current, focused and selected.
    const other = keys.find((key) => key !== small)!;
    await page.keyboard.press('Home');
    for (let i = 0; i < keys.indexOf(other); i += 1) await page.keyboard.press('ArrowDown');
    await expectCurrent(other);
    await page.keyboard.press(' ');
    await expect(button).toHaveText('Back up selected (1)');
    await rowOf(other).evaluate((row) => row.setAttribute('data-e2e-before-update', ''));
    const added = `${namespace}/aaa-keys-${Date.now().toString(36)}`;
    kubectl(
      ['-n', namespace, 'apply', '-f', '-'],
      `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: ${splitPair(added, 'PVC')[1]}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
`,
    );
    try {
      await expect(rowOf(added)).toHaveCount(1, { timeout: 15_000 });
      await expect(page.locator('tr[data-e2e-before-update]')).toHaveCount(0);
      const after = await page.locator('table.inventory-table tbody tr[data-pvc]').evaluateAll((rows) =>
        rows.map((row) => row.getAttribute('data-pvc')!),
      );
      expect(after.indexOf(other)).toBe(keys.indexOf(other) + 1);
      await expectCurrent(other);
      await expect(page.getByRole('checkbox', { name: `Select ${other}`, exact: true })).toBeChecked();
      await expect(button).toHaveText('Back up selected (1)');
      await expect(filter).toHaveValue(namespace);
      // The hint opened above stays open.
      await expect(page.getByTestId('keyboard-hint')).toHaveAttribute('open', '');
      // The keys go on from there.
      await page.keyboard.press('ArrowUp');
      await expectCurrent(after[after.indexOf(other) - 1]);

      // A live update while typing in the filter box keeps the focus there.
      await page.keyboard.press('/');
      await expect(filter).toBeFocused();
      kubectl(['-n', namespace, 'delete', 'pvc', splitPair(added, 'PVC')[1], '--wait=false']);
      await expect(rowOf(added)).toHaveCount(0, { timeout: 15_000 });
      await expect(filter).toBeFocused();
      await page.keyboard.type(' data');
      await page.waitForURL((url) => url.searchParams.get('q') === `${namespace} data`);
    } finally {
      kubectl(['-n', namespace, 'delete', 'pvc', splitPair(added, 'PVC')[1], '--wait=false', '--ignore-not-found']);
    }
    // The backup `b` started succeeds (its freshness is one more live update).
    await expect(runs.first()).toHaveAttribute('data-status', 'succeeded', { timeout: 180_000 });
    expect(starts).toBe(1);
  });

  test('without JavaScript there is no shortcut hint and no current row', async ({ page, javaScriptEnabled }) => {
    test.skip(javaScriptEnabled, 'checks the server-rendered page alone');
    test.skip(expectError, 'the cluster is unreachable on purpose');
    await page.goto('/');
    await expect(page.getByRole('table', { name: /PVCs with the workloads/ })).toBeVisible();
    // The hint is in the page, hidden: the keys would do nothing without JavaScript.
    const hint = page.getByTestId('keyboard-hint');
    await expect(hint).toHaveCount(1);
    await expect(hint).toBeHidden();
    await expect(page.locator('table.inventory-table tbody tr[aria-current], table.inventory-table tbody tr[tabindex]')).toHaveCount(0);
  });
});
