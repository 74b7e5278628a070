#!/usr/bin/env bash
# Web UI benchmark on the local test cluster (numbers, not a speed assertion).
# Creates the inventory benchmark's fixture (5,000 PVCs with pods, Deployments, StatefulSets; see
# bench/inventory.sh), builds the release site (`scripts/build-web.sh --release`), and serves it twice
# with the same build, side by side: `--inventory-mode scan` (a scan per page load: the baseline) and
# `--inventory-mode live` (watches). For each mode it prints: the HTML size of `/` uncompressed and as
# transferred with gzip, brotli and zstd; end2end/tests/perf.spec.ts (Playwright project `perf`) three
# times in Debian's chromium (rows in the first render, document load, time to hydrated on the first
# and on a later visit, filter-to-none, filter-back-to-all with Chromium's script/style/layout
# counters, and median per-keystroke times; the spec checks that each filter
# step really changed the rows, and a failed run fails this script); the API server's LIST and WATCH
# requests of the inventory's kinds during those loads and in one idle minute (from its own
# metrics); the server's RSS before and after 10 concurrent loads; and how long a PVC created with
# kubectl takes to appear in what a page load reads. Also prints the wasm bundle's size (raw and
# gzip -9).
# Refuses to run unless the local test cluster is up (end2end/cluster/up; NKVM_TEST_KUBECONFIG for one
# started from another checkout): the fixture is 5,000 PVCs and never goes to another cluster.
# Usage: bench/web.sh [--keep]   (--keep leaves the fixture namespace for another run;
#        NKVM_BENCH_SCALE=4 for the 20,000-PVC fixture, see engine/examples/inventory_bench.rs)
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

# Requests of the inventory's six kinds the API server has served so far (LIST and WATCH), from its
# own metrics: the cluster's controllers watch these kinds too, but their watches are long-lived.
api_requests() {
  kubectl get --raw /metrics |
    awk '/^apiserver_request_total\{/ && /verb="(LIST|WATCH)"/ &&
      /resource="(persistentvolumeclaims|pods|replicasets|jobs|deployments|cronjobs)"/ { n += $NF }
      END { printf "%d\n", n }'
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
# The whole inventory as the hydrated page reads it (a same-origin POST, as the browser sends it).
inventory_json() {
  curl -fsS -X POST -H "Origin: $1" -H 'Content-Type: application/x-www-form-urlencoded' --data '' "$1/api/inventory"
}

# One mode (`scan`: a scan per page load, as before the live inventory; `live`: watches), with the same
# release build, fixture and browser.
bench_mode() {
  local mode="$1" url="http://127.0.0.1:$port" before after i start end bytes
  # Loopback only, so the benchmark may run without login (`--auth none`).
  LEPTOS_SITE_ROOT="$site" "$CARGO_TARGET_DIR/release/nkvm" --data-dir "$data_dir" serve \
    --listen "127.0.0.1:$port" --auth none --inventory-mode "$mode" >"/tmp/nkvm-bench-web-$mode.log" 2>&1 &
  server_pid=$!
  wait_http "$url/healthz" "$server_pid" "/tmp/nkvm-bench-web-$mode.log"
  printf '== mode %s ==\n' "$mode"
  before="$(api_requests)"
  for i in 1 2 3; do
    start=$(date +%s.%N)
    bytes="$(curl -fsS "$url/" | wc -c)"
    end=$(date +%s.%N)
    printf '%s: html run %s: %s bytes uncompressed in %.2f s (server render of /, curl)\n' "$mode" "$i" "$bytes" "$(echo "$end - $start" | bc)"
  done
  for encoding in gzip br zstd; do
    curl -fsS -H "Accept-Encoding: $encoding" -o /dev/null \
      -w "$mode: / transferred with $encoding: %{size_download} bytes in %{time_total} s\n" "$url/"
  done
  (
    cd end2end
    for i in 1 2 3; do
      out="$(NKVM_E2E_URL="$url" NKVM_E2E_PERF=1 npx playwright test --reporter=line 2>&1)" || {
        printf '%s\n' "$out" >&2
        die "perf.spec.ts failed in run $i of mode $mode (output above)"
      }
      grep -F 'inventory perf:' <<<"$out" | sed "s/^/$mode: /" || die "run $i printed no figures:"$'\n'"$out"
    done
  )
  after="$(api_requests)"
  printf '%s: API requests (LIST+WATCH of the six kinds) during 9 page loads and 3 browser runs: %d\n' "$mode" "$((after - before))"
  # Ten concurrent page loads: the server's memory.
  printf '%s: server RSS before 10 concurrent loads: %d MiB\n' "$mode" "$(($(rss_kib "$server_pid") / 1024))"
  # Waits for the ten loads only (a bare `wait` would wait for the server, started in the background
  # too, and never return).
  local loads=()
  for i in $(seq 10); do
    curl -fsS -o /dev/null "$url/" &
    loads+=($!)
  done
  wait "${loads[@]}"
  printf '%s: server RSS after: %d MiB, peak %d MiB\n' "$mode" "$(($(rss_kib "$server_pid") / 1024))" "$(($(hwm_kib "$server_pid") / 1024))"
  # Idle: one minute without any page load.
  before="$(api_requests)"
  sleep 60
  after="$(api_requests)"
  printf '%s: API requests (LIST+WATCH of the six kinds) in 60 s idle: %d\n' "$mode" "$((after - before))"
  # A PVC created with kubectl: how long until a page load (the server function) lists it.
  local name="live-probe-$mode-$RANDOM"
  start=$(date +%s.%N)
  k -n nkvm-bench create -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $name}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Mi}}}
YAML
  inventory_json "$url" >/dev/null || die "$mode: POST $url/api/inventory failed (above)"
  until inventory_json "$url" | grep -qF "\"$name\""; do
    (($(date +%s) - ${start%.*} < 60)) || die "$mode: the PVC $name was not in the inventory after 60 s"
    sleep 0.05
  done
  end=$(date +%s.%N)
  printf '%s: PVC created → in the inventory a page reads after %.2f s\n' "$mode" "$(echo "$end - $start" | bc)"
  k -n nkvm-bench delete pvc "$name" --wait=false >/dev/null
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

bench_mode scan
bench_mode live
