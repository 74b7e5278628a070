// Timing of the inventory page with many rows (issue 5: "stays responsive with 5,000 rows").
// Not an assertion of speed: it prints the figures for docs/performance.md. It does check that every
// timed filter step really changed the rows (a filter that did nothing would time nothing).
// Runs only in the `perf` project (NKVM_E2E_PERF=1, JavaScript on), which bench/web.sh runs.
import { expect, test, type Page } from '@playwright/test';

/** The shown data rows (the page shows the first rows of what matches; a filter step hides the
 * row slots past the end of a shorter page instead of removing them). */
const rowsOf = (page: Page) => page.locator('table.inventory-table tbody tr:not([hidden])');

test('inventory render and filter timings', async ({ page }) => {
  const started = Date.now();
  await page.goto('/');
  const loaded = Date.now();
  await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1, { timeout: 60_000 });
  const hydrated = Date.now();
  // The server sends the first screen only; the hydrated page then reads every row to filter them.
  await expect(page.locator('table.inventory-table[data-rows="all"]')).toHaveCount(1, { timeout: 60_000 });
  const complete = Date.now();
  const rows = await rowsOf(page).count();
  expect(rows, 'the inventory shows rows to filter').toBeGreaterThan(0);
  const allCount = await page.getByTestId('pvc-count').textContent();
  // A PVC from the middle of the rendered rows: its name is typed key by key below.
  const target = (await rowsOf(page).nth(Math.floor(rows / 2)).getAttribute('data-pvc'))!;
  expect(target).toMatch(/^[^/]+\/.+$/);
  const name = target.split('/')[1];

  // Sets the filter's text and waits for the next painted frame; returns the milliseconds taken.
  const timeFilter = (query: string) =>
    page.evaluate(async (text) => {
      const input = document.getElementById('pvc-filter') as HTMLInputElement;
      const t0 = performance.now();
      input.value = text;
      input.dispatchEvent(new Event('input', { bubbles: true }));
      await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
      return performance.now() - t0;
    }, query);

  // Where a step's time goes: the renderer's own counters (seconds of script, style and layout).
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Performance.enable');
  const counters = async () => {
    const { metrics } = await cdp.send('Performance.getMetrics');
    const of = (name: string) => metrics.find((m) => m.name === name)?.value ?? 0;
    return { script: of('ScriptDuration'), style: of('RecalcStyleDuration'), layout: of('LayoutDuration') };
  };
  const split = async (step: () => Promise<number>) => {
    const before = await counters();
    const ms = await step();
    const after = await counters();
    const part = (key: 'script' | 'style' | 'layout') => Math.round((after[key] - before[key]) * 1000);
    return { ms, script: part('script'), style: part('style'), layout: part('layout') };
  };

  const narrow = await timeFilter('zz-no-such-pvc');
  await expect(rowsOf(page), 'a query nothing matches leaves no row').toHaveCount(0);
  await expect(page.getByText('No PVC matches the filter.')).toBeVisible();

  const widenSplit = await split(() => timeFilter(''));
  const widen = widenSplit.ms;
  await expect(rowsOf(page), 'clearing the filter brings every row back').toHaveCount(rows);
  await expect(page.getByTestId('pvc-count')).toHaveText(allCount!);

  const perKey: number[] = [];
  const typed = name.slice(0, 6);
  for (let length = 1; length <= typed.length; length++) {
    perKey.push(await timeFilter(typed.slice(0, length)));
  }
  // Every row still shown contains what was typed, and the count says the filter applied.
  const shown = await rowsOf(page).allTextContents();
  expect(shown.length).toBeGreaterThan(0);
  for (const text of shown) expect(text.toLowerCase()).toContain(typed.toLowerCase());
  // `namespace/name` narrows down to the target row itself.
  await timeFilter(target);
  await expect(page.locator(`table.inventory-table tbody tr[data-pvc="${target}"]`)).toHaveCount(1);
  if (rows > 1) await expect(page.getByTestId('pvc-count')).not.toHaveText(allCount!);

  // A later visit in the same browser (its HTTP cache holds the site files from the first one).
  const again = Date.now();
  await page.goto('/');
  await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1, { timeout: 60_000 });
  const againHydrated = Date.now();

  const figures = {
    rows,
    documentLoadMs: loaded - started,
    hydratedMs: hydrated - started,
    laterVisitHydratedMs: againHydrated - again,
    allRowsMs: complete - started,
    filterToNoneMs: Math.round(narrow),
    filterToAllMs: Math.round(widen),
    filterToAllScriptStyleLayoutMs: [widenSplit.script, widenSplit.style, widenSplit.layout],
    typingMedianMs: Math.round(perKey.sort((a, b) => a - b)[Math.floor(perKey.length / 2)]),
  };
  console.log(`inventory perf: ${JSON.stringify(figures)}`);
  test.info().annotations.push({ type: 'perf', description: JSON.stringify(figures) });
});
