#!/usr/bin/env bash
# In-cluster deployment test on the running local test cluster:
#   1. builds the nkvm image without Docker (deploy/image/build.sh) and imports it into containerd;
#   2. deploys deploy/overlays/test-cluster (the kustomize base + test settings) with kubectl -k,
#      the users Secret (random passwords for this run; only hashes reach the cluster), and fixture
#      workloads in an allowlisted namespace and in one outside the allowlist;
#   3. waits for the rollout and runs the Playwright `deploy` project against the Service's ClusterIP
#      (kube-proxy routes it): login, inventory, a backup under the service account, a backup to the
#      S3 test server (versitygw from end2end/servers/up, reached by the pod through the cluster's
#      bridge address 10.244.0.1:17443, where a socat forwarder relays to its loopback port; the
#      destinations file and the S3 credentials come from Secret nkvm-destinations), the
#      allowlist, and each RBAC rule removed in turn (end2end/tests/deploy.spec.ts);
#   4. removes everything it created, also when it fails (the pod's log is kept in
#      end2end/deploy-server.log).
# Needs the local test cluster running (end2end/cluster/up; or NKVM_TEST_KUBECONFIG naming one started
# from another checkout): it stops with an error otherwise and never uses another kubeconfig.
# Tools are checked and installed first (scripts/lib.sh). Needs socat; starts end2end/servers/up (and
# stops it at the end) unless NKVM_TEST_SERVERS_ENV names running servers.
set -euo pipefail
NKVM_SCRIPT=e2e-deploy
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$NKVM_REPO/scripts/e2e-lib.sh"
source "$NKVM_REPO/scripts/manifests.sh"
repo="$NKVM_REPO"
cd "$repo"
use_test_cluster
kubectl="$NKVM_KUBECTL"
overlay=deploy/overlays/test-cluster
e2e_prepare_browser
require deb:python3 deb:binutils:readelf deb:ca-certificates:update-ca-certificates

image_tar="$(deploy/image/build.sh)"
ctr --address /run/nkvm-cluster/containerd.sock -n k8s.io images import "$image_tar" >&2
nkvm="$CARGO_TARGET_DIR/image/nkvm"

# The S3 test server, reachable from pods on the bridge address (never on eth0).
servers_started=0
if [[ -z "${NKVM_TEST_SERVERS_ENV:-}" ]]; then
  servers_started=1
  eval "$(end2end/servers/up | tail -n 1)"
fi
# shellcheck disable=SC1090
source "$NKVM_TEST_SERVERS_ENV"
bridge_s3=10.244.0.1:17443
socat "TCP-LISTEN:${bridge_s3#*:},bind=${bridge_s3%:*},fork,reuseaddr" "TCP:${NKVM_TEST_S3_ENDPOINT#https://}" &
forwarder_pid=$!

remove_all() {
  "$kubectl" delete -k "$overlay" --ignore-not-found --wait=true --timeout=120s >/dev/null 2>&1 || true
}
cleanup() {
  "$kubectl" -n nkvm logs deploy/nkvm --tail=-1 >"$repo/end2end/deploy-server.log" 2>&1 || true
  remove_all
  kill "$forwarder_pid" 2>/dev/null || true
  [[ $servers_started == 1 ]] && end2end/servers/down || true
}
remove_all
trap cleanup EXIT

"$kubectl" apply -k "$overlay" >&2
new_passwords admin operator
"$kubectl" -n nkvm create secret generic nkvm-users \
  --from-file=users.yaml=<(users_file "$nkvm" admin operator) >&2
# The destinations file and what it references, from one Secret (deploy/components/destinations).
"$kubectl" -n nkvm create secret generic nkvm-destinations \
  --from-file=s3-access-key-id="$NKVM_TEST_S3_ACCESS_KEY_ID_FILE" \
  --from-file=s3-secret-access-key="$NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE" \
  --from-file=ca.pem="$NKVM_TEST_CA_FILE" \
  --from-file=destinations.yaml=<(cat <<YAML
destinations:
  - name: offsite
    type: s3
    endpoint: https://$bridge_s3
    bucket: $NKVM_TEST_S3_BUCKET
    prefix: deploy-e2e-$(date +%s)
    path_style: true
    access_key_id_file: /etc/nkvm-destinations/s3-access-key-id
    secret_access_key_file: /etc/nkvm-destinations/s3-secret-access-key
    ca_file: /etc/nkvm-destinations/ca.pem
    part_size: 8MiB
YAML
) >&2

app_script='mkdir -p /data/docs && echo hello > /data/docs/a.txt && dd if=/dev/urandom of=/data/blob bs=1M count=8 2>/dev/null; exec sleep 3600'
for ns in nkvm-deploy-e2e nkvm-deploy-other; do
  "$kubectl" -n "$ns" apply -f - >/dev/null <<YAML
$(claim data ReadWriteOnce)
$(deployment app "$app_script" data:/data)
YAML
done
"$kubectl" -n nkvm-deploy-e2e wait deployment/app --for=condition=Available --timeout=120s >/dev/null
"$kubectl" -n nkvm-deploy-other wait deployment/app --for=condition=Available --timeout=120s >/dev/null
if ! "$kubectl" -n nkvm rollout status deployment/nkvm --timeout=180s >&2; then
  "$kubectl" -n nkvm describe pods >&2 || true
  exit 1
fi
ip="$("$kubectl" -n nkvm get service nkvm -o jsonpath='{.spec.clusterIP}')"
url="http://$ip"
wait_http "$url/healthz"
log "nkvm answers at $url (Service nkvm/nkvm)"

status=0
(
  cd end2end
  NKVM_E2E_DEPLOY=1 NKVM_E2E_URL="$url" NKVM_E2E_KUBECTL="$kubectl" NKVM_E2E_DESTINATION=offsite \
    NKVM_E2E_PVC=nkvm-deploy-e2e/data NKVM_E2E_OTHER_PVC=nkvm-deploy-other/data \
    npx playwright test "$@"
) || status=1

# The pod's log must name no password, no S3 secret and no bearer token (service account tokens are
# JWTs).
pod_log="$("$kubectl" -n nkvm logs deploy/nkvm --tail=-1 2>&1)"
if grep -qF -e "$NKVM_E2E_ADMIN_PASSWORD" -e "$NKVM_E2E_OPERATOR_PASSWORD" -e 'eyJhbGci' \
  -e "$(cat "$NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE")" <<<"$pod_log"; then
  log "FAILED: the server's log contains a password or a token"
  status=1
else
  log "the server's log ($(wc -l <<<"$pod_log") lines) holds no password and no token"
fi
exit "$status"
