#!/usr/bin/env bash
# In-cluster deployment test on the running local test cluster, through a real Ingress controller:
#   1. builds the nkvm image without Docker (deploy/image/build.sh) and imports it into containerd;
#      builds (or reuses) the Helm client and starts the ingress controller (end2end/ingress/up:
#      Traefik on the node, HTTPS on 127.0.0.1:18443 for host nkvm.test, certificate of a test CA)
#      unless it already runs;
#   2. installs nkvm twice, one after the other (NKVM_DEPLOY_TOOLS, default "kustomize helm"):
#      `kubectl apply -k deploy/overlays/test-cluster` (the kustomize base + test settings), then
#      `helm install` of deploy/helm/nkvm with deploy/overlays/test-cluster/helm-values.yaml (the same
#      settings; scripts/check-helm.sh shows the objects are the same). Each time: the users Secret
#      (random passwords for this run; only hashes reach the cluster), the TLS Secret nkvm-tls from
#      the test CA, the destinations Secret, and fixture workloads in an allowlisted namespace (one
#      with a 64 MiB incompressible file) and in one outside the allowlist;
#   3. waits for the rollout and for the Ingress to answer over HTTPS, and runs the Playwright
#      `deploy` project against https://nkvm.test:18443 (Chromium maps the name to loopback and
#      trusts the test CA through its own NSS database; nothing ignores certificate errors): TLS,
#      Secure cookies, HSTS, live progress over the websocket, a large streamed download, the client
#      address in the audit trail, cross-origin refusals, the checks failing with a broken proxy
#      setting, then login, inventory, a backup under the service account, a backup to the S3 test
#      server (versitygw from end2end/servers/up, reached by the pod through the cluster's bridge
#      address 10.244.0.1:17443, where a socat forwarder relays to its loopback port), the
#      allowlist, and each RBAC rule removed in turn (end2end/tests/deploy.spec.ts);
#   4. removes everything it created, also when it fails (the pod's log is kept in
#      end2end/deploy-server-<kustomize|helm>.log), and stops the ingress controller if it started it.
# Needs the local test cluster running (end2end/cluster/up; or NKVM_TEST_KUBECONFIG naming one started
# from another checkout): it stops with an error otherwise and never uses another kubeconfig.
# Tools are checked and installed first (scripts/lib.sh); Go builds Traefik and Helm the first time
# (cached in $NKVM_CACHE_DIR by version). Needs socat; starts end2end/servers/up (and stops it at the
# end) unless NKVM_TEST_SERVERS_ENV names running servers. NKVM_E2E_JSON=FILE: one Playwright JSON
# report with the stats of all installs (scripts/test-all.sh counts from it).
set -euo pipefail
NKVM_SCRIPT=e2e-deploy
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$NKVM_REPO/scripts/e2e-lib.sh"
repo="$NKVM_REPO"
cd "$repo"
use_test_cluster
kubectl="$NKVM_KUBECTL"
overlay=deploy/overlays/test-cluster
chart=deploy/helm/nkvm
tools="${NKVM_DEPLOY_TOOLS:-kustomize helm}"
e2e_prepare_browser
require deb:python3 deb:binutils:readelf deb:ca-certificates:update-ca-certificates deb:socat \
  deb:curl deb:libnss3-tools:certutil root
# Go builds Traefik and Helm when they are not cached yet (end2end/ingress/build.sh; both need Go 1.25).
source "$repo/end2end/ingress/versions.env"
if [[ ! -x "$NKVM_CACHE_DIR/traefik-$TRAEFIK_VERSION/traefik" || ! -x "$NKVM_CACHE_DIR/helm-$HELM_VERSION/helm" ]]; then
  require go:1.25
fi

image_tar="$(deploy/image/build.sh)"
ctr --address /run/nkvm-cluster/containerd.sock -n k8s.io images import "$image_tar" >&2
nkvm="$CARGO_TARGET_DIR/image/nkvm"
helm="$(end2end/ingress/build.sh helm)"
h() { "$helm" --kubeconfig "$NKVM_TEST_KUBECONFIG" "$@"; }

# The ingress controller: kept running when it already was (then someone else stops it).
source "$repo/end2end/ingress/lib.sh"
ingress_started=0
if ! ingress_running; then
  ingress_started=1
  end2end/ingress/up >/dev/null
fi
# shellcheck disable=SC1091
source "$INGRESS_STATE/env"
resolve="$NKVM_INGRESS_HOST:$NKVM_INGRESS_PORT:127.0.0.1"
# Chromium's NSS database (in a HOME of its own) trusts the test CA, and only in this run.
browser_home="$(mktemp -d)"
mkdir -p "$browser_home/.pki/nssdb"
certutil -d "sql:$browser_home/.pki/nssdb" -N --empty-password
certutil -d "sql:$browser_home/.pki/nssdb" -A -t C,, -n "nkvm ingress test CA" -i "$NKVM_INGRESS_CA"

# The S3 test server, reachable from pods on the bridge address (never on eth0).
servers_started=0
if [[ -z "${NKVM_TEST_SERVERS_ENV:-}" ]]; then
  servers_started=1
  eval "$(end2end/servers/up | tail -n 1)"
  [[ -n "${NKVM_TEST_SERVERS_ENV:-}" ]] ||
    die "the test servers could not be started (end2end/servers/up's error is above); or set NKVM_TEST_SERVERS_ENV to the env file of running ones"
fi
# shellcheck disable=SC1090
source "$NKVM_TEST_SERVERS_ENV"
bridge_s3=10.244.0.1:17443
socat "TCP-LISTEN:${bridge_s3#*:},bind=${bridge_s3%:*},fork,reuseaddr" "TCP:${NKVM_TEST_S3_ENDPOINT#https://}" &
forwarder_pid=$!

# Removes both kinds of install (idempotent): the Helm release, then whatever the overlay names
# (also the namespaces, and with them the Secrets and fixtures).
remove_all() {
  h uninstall nkvm --namespace nkvm --wait --timeout 120s >/dev/null 2>&1 || true
  "$kubectl" delete -k "$overlay" --ignore-not-found --wait=true --timeout=120s >/dev/null 2>&1 || true
}
reports="$(mktemp -d)"
current=""
save_log() {
  [[ -n "$current" ]] || return 0
  "$kubectl" -n nkvm logs deploy/nkvm --tail=-1 >"$repo/end2end/deploy-server-$current.log" 2>&1 || true
}
cleanup() {
  save_log
  remove_all
  kill "$forwarder_pid" 2>/dev/null || true
  [[ $servers_started == 1 ]] && "$repo/end2end/servers/down" || true
  ((ingress_started)) && end2end/ingress/down >/dev/null 2>&1 || true
  rm -rf "$browser_home" "$reports"
}
trap cleanup EXIT

# install TOOL: nkvm and its Secrets and fixtures, installed with kustomize or helm.
install() {
  case "$1" in
    kustomize) "$kubectl" apply -k "$overlay" >&2 || return 1 ;;
    helm)
      # Helm installs into an existing namespace: the base's (Pod Security labels), and the fixtures'.
      "$kubectl" apply -f deploy/base/namespace.yaml -f "$overlay/fixture-namespaces.yaml" >&2 || return 1
      h install nkvm "$chart" --namespace nkvm -f "$overlay/helm-values.yaml" >&2 || return 1
      ;;
    *) die "unknown install tool $1 (NKVM_DEPLOY_TOOLS: kustomize, helm)" ;;
  esac
  new_passwords admin operator
  "$kubectl" -n nkvm create secret generic nkvm-users \
    --from-file=users.yaml=<(users_file "$nkvm" admin operator) >&2 || return 1
  "$kubectl" -n nkvm create secret tls nkvm-tls --cert="$NKVM_INGRESS_TLS_CERT" --key="$NKVM_INGRESS_TLS_KEY" >&2 || return 1
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
    prefix: deploy-e2e-$1-$(date +%s)
    path_style: true
    access_key_id_file: /etc/nkvm-destinations/s3-access-key-id
    secret_access_key_file: /etc/nkvm-destinations/s3-secret-access-key
    ca_file: /etc/nkvm-destinations/ca.pem
    part_size: 8MiB
YAML
) >&2 || return 1

  local ns
  for ns in nkvm-deploy-e2e nkvm-deploy-other; do
    fixture "$ns" app data 8 || return 1
  done
  # Its archive is larger than any proxy buffer (random data does not compress).
  fixture nkvm-deploy-e2e large large 64 || return 1
  for ns in nkvm-deploy-e2e nkvm-deploy-other; do
    "$kubectl" -n "$ns" wait deployment --all --for=condition=Available --timeout=120s >/dev/null || return 1
  done
  if ! "$kubectl" -n nkvm rollout status deployment/nkvm --timeout=180s >&2; then
    "$kubectl" -n nkvm describe pods >&2 || true
    return 1
  fi
}

# fixture NAMESPACE DEPLOYMENT PVC MIB: a Deployment whose PVC holds a small file and MIB MiB of
# random data; Ready once the data is written.
fixture() {
  "$kubectl" -n "$1" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $3}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: $2}
spec:
  replicas: 1
  selector: {matchLabels: {app: $2}}
  template:
    metadata: {labels: {app: $2}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: nkvm.local/workload:1
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /data/docs && echo hello > /data/docs/a.txt && dd if=/dev/urandom of=/data/blob bs=1M count=$4 2>/dev/null && touch /tmp/ready; exec sleep 3600"]
        readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
        volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, persistentVolumeClaim: {claimName: $3}}]
YAML
}

# round TOOL: install with TOOL, test through the Ingress, check the log, remove. Non-zero on failure.
round() {
  local tool="$1" status=0
  shift
  current="$tool"
  log "--- installing with $tool"
  remove_all
  install "$tool" || return 1
  # Through the Ingress (Traefik picks up the Ingress and its TLS Secret within seconds).
  local answered=0
  for _ in $(seq 1 120); do
    if curl -fsS --cacert "$NKVM_INGRESS_CA" --resolve "$resolve" "$NKVM_INGRESS_URL/healthz" >/dev/null 2>&1; then
      answered=1
      break
    fi
    sleep 0.5
  done
  ((answered)) || { log "$NKVM_INGRESS_URL does not answer through the Ingress (log: $INGRESS_STATE/traefik.log)"; return 1; }
  log "nkvm ($tool) answers at $NKVM_INGRESS_URL through Traefik"
  (
    cd end2end
    NKVM_E2E_DEPLOY=1 NKVM_E2E_URL="$NKVM_INGRESS_URL" NKVM_E2E_KUBECTL="$kubectl" NKVM_E2E_DESTINATION=offsite \
      NKVM_E2E_PVC=nkvm-deploy-e2e/data NKVM_E2E_OTHER_PVC=nkvm-deploy-other/data \
      NKVM_E2E_LARGE_PVC=nkvm-deploy-e2e/large \
      NKVM_E2E_HOST_RULES="MAP $NKVM_INGRESS_HOST 127.0.0.1" NKVM_E2E_BROWSER_HOME="$browser_home" \
      NKVM_E2E_INGRESS_CA="$NKVM_INGRESS_CA" NKVM_E2E_INGRESS_RESOLVE="$resolve" \
      NKVM_E2E_INGRESS_PROXY=10.244.0.1 NKVM_E2E_JSON="$reports/$tool.json" \
      npx playwright test --output "test-results/deploy-$tool" "$@"
  ) || status=1

  # The pod's log must name no password, no S3 secret and no bearer token (service account tokens
  # are JWTs).
  local pod_log
  pod_log="$("$kubectl" -n nkvm logs deploy/nkvm --tail=-1 2>&1)"
  if grep -qF -e "$NKVM_E2E_ADMIN_PASSWORD" -e "$NKVM_E2E_OPERATOR_PASSWORD" -e 'eyJhbGci' \
    -e "$(cat "$NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE")" <<<"$pod_log"; then
    log "FAILED ($tool): the server's log contains a password or a token"
    status=1
  else
    log "the server's log ($tool, $(wc -l <<<"$pod_log") lines) holds no password and no token"
  fi
  save_log
  remove_all
  current=""
  return "$status"
}

status=0
for tool in $tools; do
  round "$tool" "$@" || { status=1; log "FAILED: the suite with $tool"; }
done
# One report for scripts/test-all.sh: the stats of every install added up.
if [[ -n "${NKVM_E2E_JSON:-}" ]]; then
  python3 - "$NKVM_E2E_JSON" "$reports"/*.json <<'PY' || status=1
import json, sys
total = {"expected": 0, "unexpected": 0, "skipped": 0, "flaky": 0}
for path in sys.argv[2:]:
    stats = json.load(open(path))["stats"]
    for key in total:
        total[key] += stats.get(key, 0)
json.dump({"stats": total}, open(sys.argv[1], "w"))
PY
fi
exit "$status"
