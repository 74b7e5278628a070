#!/usr/bin/env bash
# Inventory benchmark on the local test cluster (numbers, not a pass/fail test). Refuses to run unless
# the local test cluster is up (end2end/cluster/up; NKVM_TEST_KUBECONFIG for one started from another
# checkout): it never touches another cluster.
# Creates 5,000 PVCs, 5,000 pods (bound to a Node object that no kubelet serves, so none runs) and 1,000 Deployments with
# their ReplicaSets (NKVM_BENCH_SCALE=N multiplies the fixture: 4 → 20,000 PVCs and pods), then
# measures in one run:
#   - `nkvm inventory --output json` cold (a new process: connect + scan + render), wall time, peak
#     RSS (/usr/bin/time) and the number of API requests the scan made;
#   - nkvm's engine scan in-process;
#   - the predecessor's method (list, then one GET per owner hop per pod) as the baseline.
# Usage: bench/inventory.sh [--keep]   (--keep leaves the fixture namespace for another run)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
NKVM_SCRIPT=bench-inventory
source scripts/lib.sh
# Only ever the local test cluster: refuses to run unless it is up (never the caller's kubeconfig).
use_test_cluster
require rust deb:bc deb:python3 deb:time:/usr/bin/time
cargo build --release -q -p nkvm-server --bin nkvm
cargo build --release -q -p nkvm-engine --example inventory_bench
drv="$CARGO_TARGET_DIR/release/examples/inventory_bench"
nkvm="$CARGO_TARGET_DIR/release/nkvm"
"$drv" setup
sleep 5
echo "--- runs (3 each, interleaved)"
for i in 1 2 3; do
  start=$(date +%s.%N)
  RUST_LOG=nkvm=info,nkvm_server=info /usr/bin/time -f '%M' -o /tmp/nkvm-bench-inv.rss \
    "$nkvm" inventory --output json >/tmp/nkvm-bench-inv.json 2>/tmp/nkvm-bench-inv.err
  end=$(date +%s.%N)
  reqs="$(grep -o 'api_requests=[0-9]*' /tmp/nkvm-bench-inv.err | tail -1 | cut -d= -f2)"
  rows="$(python3 -c 'import json;print(len(json.load(open("/tmp/nkvm-bench-inv.json"))))')"
  printf 'nkvm-cli pvcs=%s requests=%s seconds=%.3f peak_rss_mib=%d\n' "$rows" "${reqs:-?}" \
    "$(echo "$end - $start" | bc)" "$(($(tail -1 /tmp/nkvm-bench-inv.rss) / 1024))"
  "$drv" scan
  "$drv" baseline
done
[[ "${1:-}" == --keep ]] || "$drv" teardown
