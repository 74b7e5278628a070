#!/usr/bin/env bash
# Web UI benchmark on the local test cluster (numbers, not a speed assertion).
# Creates the inventory benchmark's fixture (5,000 PVCs with pods, Deployments, StatefulSets; see
# bench/inventory.sh), builds the release site (`scripts/build-web.sh --release`), serves it, and
# runs end2end/tests/perf.spec.ts (Playwright project `perf`) three times in Debian's chromium, which
# prints: rows in the first render, document load, time to hydrated, filter-to-none,
# filter-back-to-all and median per-keystroke times. The spec checks that each filter step really
# changed the rows; when a run fails, this script fails. Also prints the wasm bundle's size (raw and
# gzip -9), and the HTML size of `/`.
# Refuses to run unless the local test cluster is up (end2end/cluster/up; NKVM_TEST_KUBECONFIG for one
# started from another checkout): the fixture is 5,000 PVCs and never goes to another cluster.
# Usage: bench/web.sh [--keep]   (--keep leaves the fixture namespace for another run)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
NKVM_SCRIPT=bench-web
source scripts/lib.sh
source scripts/e2e-lib.sh
keep=0
[[ "${1:-}" == --keep ]] && keep=1
use_test_cluster
require rust wasm-bindgen deb:bc deb:curl
e2e_prepare_browser
site="$CARGO_TARGET_DIR/site-release"
NKVM_SITE_DIR="$site" scripts/build-web.sh --release
cargo build --release -q -p nkvm-engine --example inventory_bench
drv="$CARGO_TARGET_DIR/release/examples/inventory_bench"
port="${NKVM_BENCH_PORT:-3918}"
data_dir="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$data_dir"
  ((keep)) || "$drv" teardown || true
}
trap cleanup EXIT
"$drv" setup
sleep 5

wasm="$site/pkg/nkvm_bg.wasm"
printf 'wasm: %s bytes raw, %s bytes gzip -9\n' "$(stat -c %s "$wasm")" "$(gzip -9 -c "$wasm" | wc -c)"
# Loopback only, so the benchmark may run without login (`--auth none`).
LEPTOS_SITE_ROOT="$site" "$CARGO_TARGET_DIR/release/nkvm" --data-dir "$data_dir" serve \
  --listen "127.0.0.1:$port" --auth none >/tmp/nkvm-bench-web.log 2>&1 &
server_pid=$!
wait_http "http://127.0.0.1:$port/healthz" "$server_pid" /tmp/nkvm-bench-web.log
for i in 1 2 3; do
  start=$(date +%s.%N)
  bytes="$(curl -fsS "http://127.0.0.1:$port/" | wc -c)"
  end=$(date +%s.%N)
  printf 'html run %s: %s bytes in %.2f s (server render of /, curl)\n' "$i" "$bytes" "$(echo "$end - $start" | bc)"
done
cd end2end
for i in 1 2 3; do
  out="$(NKVM_E2E_URL="http://127.0.0.1:$port" NKVM_E2E_PERF=1 npx playwright test --reporter=line 2>&1)" || {
    printf '%s\n' "$out" >&2
    die "perf.spec.ts failed in run $i (output above)"
  }
  grep -F 'inventory perf:' <<<"$out" || die "run $i printed no figures:"$'\n'"$out"
done
