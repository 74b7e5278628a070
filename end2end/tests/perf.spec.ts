// Timing of the inventory page with many rows (issue 5: "stays responsive with 5,000 rows").
// Not an assertion of speed: it prints the figures for docs/performance.md. Runs only when
// NKVM_E2E_PERF=1 and only in the `hydrated` project (filtering needs JavaScript).
import { expect, test } from '@playwright/test';

test('inventory render and filter timings', async ({ page, javaScriptEnabled }) => {
  test.skip(process.env.NKVM_E2E_PERF !== '1' || !javaScriptEnabled, 'set NKVM_E2E_PERF=1');
  const started = Date.now();
  await page.goto('/');
  const loaded = Date.now();
  await expect(page.locator('main[data-hydrated="true"]')).toHaveCount(1, { timeout: 60_000 });
  const hydrated = Date.now();
  const rows = await page.locator('table.inventory-table tbody tr').count();

  // Type a query that matches one row, then clear it; each time until the next painted frame.
  const timeFilter = (query: string) =>
    page.evaluate(async (text) => {
      const input = document.getElementById('pvc-filter') as HTMLInputElement;
      const t0 = performance.now();
      input.value = text;
      input.dispatchEvent(new Event('input', { bubbles: true }));
      await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
      return performance.now() - t0;
    }, query);
  const narrow = await timeFilter('zz-no-such-pvc');
  const widen = await timeFilter('');
  const perKey: number[] = [];
  for (const prefix of ['d', 'da', 'dat', 'data', 'data-', 'data-4']) {
    perKey.push(await timeFilter(prefix));
  }

  const figures = {
    rows,
    documentLoadMs: loaded - started,
    hydratedMs: hydrated - started,
    filterToNoneMs: Math.round(narrow),
    filterToAllMs: Math.round(widen),
    typingMedianMs: Math.round(perKey.sort((a, b) => a - b)[Math.floor(perKey.length / 2)]),
  };
  console.log(`inventory perf: ${JSON.stringify(figures)}`);
  test.info().annotations.push({ type: 'perf', description: JSON.stringify(figures) });
});
