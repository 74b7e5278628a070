#!/usr/bin/env bash
# Web UI benchmark on the local test cluster (numbers, not a pass/fail test).
# Creates the inventory benchmark's fixture (5,000 PVCs with pods, Deployments, StatefulSets; see
# bench/inventory.sh), builds the release site (`scripts/build-web.sh --release`), serves it, and
# runs end2end/tests/perf.spec.ts in Debian's chromium, which prints: rows in the first render,
# document load, time to hydrated, filter-to-none, filter-back-to-all and median per-keystroke
# times. Also prints the wasm bundle's size (raw and gzip -9), and the HTML size of `/`.
# Usage: bench/web.sh [--keep]   (--keep leaves the fixture namespace for another run)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export NKVM_CACHE_DIR="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NKVM_CACHE_DIR/cargo-target}"
# The local test cluster (never the caller's KUBECONFIG: the fixture is 5,000 PVCs). Set
# NKVM_BENCH_KUBECONFIG to the kubeconfig of a test cluster started from another checkout.
if [[ -n "${NKVM_BENCH_KUBECONFIG:-}" ]]; then
  export KUBECONFIG="$NKVM_BENCH_KUBECONFIG"
else
  eval "$(end2end/cluster/up | tail -n 1)"
fi
eval "$(scripts/install-tools.sh | tail -n 1)"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
(cd end2end && npm ci --no-audit --no-fund --loglevel=error)
scripts/build-web.sh --release
cargo build --release -q -p nkvm-engine --example inventory_bench
drv="$CARGO_TARGET_DIR/release/examples/inventory_bench"
port="${NKVM_BENCH_PORT:-3918}"
data_dir="$(mktemp -d)"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
  rm -rf "$data_dir"
  [[ "${1:-}" == --keep ]] || "$drv" teardown || true
}
trap 'cleanup "$@"' EXIT
"$drv" setup
sleep 5

wasm="$CARGO_TARGET_DIR/site/pkg/nkvm_bg.wasm"
printf 'wasm: %s bytes raw, %s bytes gzip -9\n' "$(stat -c %s "$wasm")" "$(gzip -9 -c "$wasm" | wc -c)"
# Loopback only, so the benchmark may run without login (`--auth none`).
"$CARGO_TARGET_DIR/release/nkvm" --data-dir "$data_dir" serve --listen "127.0.0.1:$port" --auth none \
  >/tmp/nkvm-bench-web.log 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
  sleep 0.5
done
for i in 1 2 3; do
  start=$(date +%s.%N)
  bytes="$(curl -fsS "http://127.0.0.1:$port/" | wc -c)"
  end=$(date +%s.%N)
  printf 'html run %s: %s bytes in %.2f s (server render of /, curl)\n' "$i" "$bytes" "$(echo "$end - $start" | bc)"
done
cd end2end
for i in 1 2 3; do
  NKVM_E2E_URL="http://127.0.0.1:$port" NKVM_E2E_PERF=1 \
    npx playwright test tests/perf.spec.ts --project hydrated --reporter=line 2>&1 | grep 'inventory perf' || true
done
