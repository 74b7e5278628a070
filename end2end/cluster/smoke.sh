#!/usr/bin/env bash
# Smoke test of the local test cluster: proves it can run what nkvm's tests need.
#  - the node is Ready;
#  - a Deployment whose pod mounts a PVC reaches Running and its PVC is Bound;
#  - ReadWriteOnce, ReadWriteMany and ReadWriteOncePod claims all bind when a pod uses them;
#  - a file the pod wrote is read back through the apiserver's exec endpoint;
#  - a Job created from a CronJob and a StatefulSet with a volumeClaimTemplate carry owner references.
# Prints "N passed, M failed" and exits non-zero on any failure.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$REPO_ROOT/scripts/manifests.sh"
set +e
BIN="$("$CLUSTER_DIR/build-binaries.sh")" || die "cluster binaries missing; run end2end/cluster/up"
export KUBECONFIG="$STATE/kubeconfig"
k() { "$BIN/kubectl" "$@"; }
NS="smoke-$(date +%s)-$RANDOM"
passed=0
failed=0
check() {
  local what="$1"
  shift
  if "$@"; then
    echo "ok   - $what"
    passed=$((passed + 1))
  else
    echo "FAIL - $what"
    failed=$((failed + 1))
  fi
}
cleanup() { k delete namespace "$NS" --wait=false >/dev/null 2>&1; }
trap cleanup EXIT

check "node $NODE_NAME is Ready" node_ready
k create namespace "$NS" >/dev/null || die "cannot create namespace $NS"

k -n "$NS" apply -f - >/dev/null <<EOF
$(claim data-rwo ReadWriteOnce)
$(claim data-rwx ReadWriteMany)
$(claim data-rwop ReadWriteOncePod)
$(deployment writer 'echo hello-from-pod > /rwo/hello.txt && touch /rwx/x /rwop/y && exec sleep 3600' \
  data-rwo:/rwo:rwo data-rwx:/rwx:rwx data-rwop:/rwop:rwop)
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
          - {name: main, image: nkvm.local/workload:1, imagePullPolicy: Never, command: ["true"]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: nkvm.local/workload:1
        imagePullPolicy: Never
        command: ["sleep", "3600"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
EOF

check "Deployment writer becomes Available" k -n "$NS" wait deployment/writer --for=condition=Available --timeout=120s
for pvc in data-rwo data-rwx data-rwop; do
  check "PVC $pvc is Bound" k -n "$NS" wait "pvc/$pvc" --for=jsonpath='{.status.phase}'=Bound --timeout=60s
done
pod="$(k -n "$NS" get pods -l app=writer -o jsonpath='{.items[0].metadata.name}')"
read_back() { [[ "$(k -n "$NS" exec "$pod" -- cat /rwo/hello.txt)" == "hello-from-pod" ]]; }
check "file written by the pod is read back through exec" read_back

k -n "$NS" create job manual-run --from=cronjob/nightly >/dev/null
job_owned_by_cronjob() {
  [[ "$(k -n "$NS" get job manual-run -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" == "CronJob/nightly" ]]
}
check "Job created from the CronJob is owned by it" job_owned_by_cronjob
job_pod_owned_by_job() {
  k -n "$NS" wait job/manual-run --for=condition=Complete --timeout=90s >/dev/null &&
    [[ "$(k -n "$NS" get pods -l job-name=manual-run -o jsonpath='{.items[0].metadata.ownerReferences[0].kind}')" == "Job" ]]
}
check "the Job ran to completion and its pod is owned by the Job" job_pod_owned_by_job

check "StatefulSet db has a ready replica" k -n "$NS" wait statefulset/db --for=jsonpath='{.status.readyReplicas}'=1 --timeout=120s
sts_pod_owned() {
  [[ "$(k -n "$NS" get pod db-0 -o jsonpath='{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}')" == "StatefulSet/db" ]]
}
check "pod db-0 is owned by StatefulSet db" sts_pod_owned
check "the volumeClaimTemplate's PVC data-db-0 is Bound" k -n "$NS" wait pvc/data-db-0 --for=jsonpath='{.status.phase}'=Bound --timeout=60s
rs_owned_by_deploy() {
  [[ "$(k -n "$NS" get rs -l app=writer -o jsonpath='{.items[0].metadata.ownerReferences[0].kind}')" == "Deployment" ]]
}
check "the writer ReplicaSet is owned by its Deployment" rs_owned_by_deploy

echo "$passed passed, $failed failed"
((failed == 0))
