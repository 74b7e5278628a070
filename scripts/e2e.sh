#!/usr/bin/env bash
# Browser end-to-end tests: builds the web app, creates a fixture workload on the running test cluster,
# starts `nkvm serve` against it, and runs the Playwright suite (Debian's chromium, hydrated and no-JS).
# Needs the local test cluster running (end2end/cluster/up; or NKVM_TEST_KUBECONFIG naming one started
# from another checkout): it stops with an error otherwise and never uses another kubeconfig.
# Tools are checked and installed first (scripts/lib.sh). Screenshots and traces:
# end2end/test-results/; HTML report: end2end/playwright-report/.
# The server gets a destinations file with `offsite` on the S3 test server (end2end/servers/up;
# started here, and stopped at the end, unless NKVM_TEST_SERVERS_ENV names running ones).
set -euo pipefail
NKVM_SCRIPT=e2e
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$NKVM_REPO/scripts/e2e-lib.sh"
source "$NKVM_REPO/scripts/manifests.sh"
repo="$NKVM_REPO"
cd "$repo"
use_test_cluster
kubectl="$NKVM_KUBECTL"
port="${NKVM_E2E_PORT:-3917}"
e2e_prepare_browser

scripts/build-web.sh

ns="e2e-$(date +%s)"
server_pid=""
servers_started=0
if [[ -z "${NKVM_TEST_SERVERS_ENV:-}" ]]; then
  servers_started=1
  eval "$(end2end/servers/up | tail -n 1)"
fi
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  [[ $servers_started == 1 ]] && "$NKVM_REPO/end2end/servers/down" || true
  [[ -n "${data_dir:-}" ]] && rm -rf "$data_dir"
  "$kubectl" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
"$kubectl" create namespace "$ns" >/dev/null
"$kubectl" -n "$ns" apply -f - >/dev/null <<YAML
$(claim web-data ReadWriteOnce)
$(claim db-data ReadWriteOnce)
$(claim locked ReadWriteOncePod)
$(deployment web 'exec sleep 3600' web-data:/data:data)
$(deployment db 'exec sleep 3600' db-data:/data:data locked:/locked)
YAML
"$kubectl" -n "$ns" wait deployment/web deployment/db --for=condition=Available --timeout=120s >/dev/null
# Enough data that a backup is still running while the browser looks at it (random: incompressible).
"$kubectl" -n "$ns" exec deploy/web -- sh -c \
  'dd if=/dev/urandom of=/data/random.bin bs=1M count=300 2>/dev/null && mkdir -p /data/docs && for i in 1 2 3 4 5; do echo "page $i" > /data/docs/p$i.txt; done'
"$kubectl" -n "$ns" exec deploy/db -- sh -c 'echo "id,name" > /data/table.csv && echo "1,ada" >> /data/table.csv'
# Markup in an annotation must stay inert wherever the PVC shows up (inventory.spec.ts).
payload='<img src=x onerror="window.__nkvmXss=3"><script>window.__nkvmXss=4</script>'
"$kubectl" -n "$ns" annotate pvc web-data "nkvm.test/note=$payload" >/dev/null

data_dir="$(mktemp -d)"
export NKVM_E2E_DATA_DIR="$data_dir"
nkvm="$CARGO_TARGET_DIR/debug/nkvm"
# One user per role, with random passwords for this run only.
new_passwords admin operator viewer
(umask 077; users_file "$nkvm" admin operator viewer >"$data_dir/users.yaml")
# A remote destination beside the default `local`: the S3 test server, under a prefix of this run.
# shellcheck disable=SC1090
source "$NKVM_TEST_SERVERS_ENV"
cat >"$data_dir/destinations.yaml" <<YAML
destinations:
  - {name: offsite, type: s3, endpoint: '$NKVM_TEST_S3_ENDPOINT', bucket: $NKVM_TEST_S3_BUCKET,
     prefix: '$ns', path_style: true, access_key_id_file: '$NKVM_TEST_S3_ACCESS_KEY_ID_FILE',
     secret_access_key_file: '$NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE', ca_file: '$NKVM_TEST_CA_FILE'}
YAML
"$nkvm" --data-dir "$data_dir" --helper-image nkvm.local/helper:1 \
  --destinations "$data_dir/destinations.yaml" \
  serve --listen "127.0.0.1:$port" --allow-pasted-kubeconfig --concurrency 2 \
  --users-file "$data_dir/users.yaml" \
  >"$repo/end2end/server.log" 2>&1 &
server_pid=$!
wait_http "http://127.0.0.1:$port/healthz" "$server_pid" "$repo/end2end/server.log"

cd end2end
NKVM_E2E_URL="http://127.0.0.1:$port" NKVM_E2E_PVC="$ns/web-data" NKVM_E2E_PAYLOAD="$payload" NKVM_E2E_OWNER="Deployment/web" \
  NKVM_E2E_PVC2="$ns/db-data" NKVM_E2E_FAIL_PVC="$ns/locked" NKVM_E2E_KUBECONFIG_FILE="$KUBECONFIG" \
  NKVM_E2E_DESTINATION=offsite NKVM_E2E_KUBECTL="$kubectl" \
  npx playwright test "$@"
