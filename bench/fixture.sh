# The benchmarks' fixture on the local test cluster, sourced by bench/backup.sh and
# bench/destinations.sh: `bench_fixture NS REUSE` creates namespace NS with two claims (`data`,
# 4Gi, filled with bench/fixture.py's 1.14 GiB; `tiny`, one file) and a consumer pod each — or, with
# REUSE non-empty, takes them as a previous `--keep` run left them — and sets `src` and `tiny` (the
# volumes' host directories) and `src_bytes`, `src_files`. Needs `$K` (kubectl for the test cluster).

# bench_hostdir NS PVC: the host directory of a bound claim's hostPath volume.
bench_hostdir() {
  local pv
  pv="$("$K" get pvc -n "$1" "$2" -o jsonpath='{.spec.volumeName}')"
  "$K" get pv "$pv" -o jsonpath='{.spec.hostPath.path}'
}

bench_fixture() {
  local ns=$1 reuse=$2 pvc
  if [[ -z $reuse ]]; then
    echo "--- namespace $ns: PVCs and consumer pods" >&2
    "$K" create namespace "$ns" >/dev/null
    for pvc in data tiny; do
      "$K" apply -n "$ns" -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $pvc}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 4Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: app-$pvc}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: nkvm.local/workload:1
    imagePullPolicy: Never
    command: [sleep, "86400"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: $pvc}}]
YAML
    done
  fi
  "$K" wait -n "$ns" --for=condition=Ready pod/app-data pod/app-tiny --timeout=180s >/dev/null
  src="$(bench_hostdir "$ns" data)"
  tiny="$(bench_hostdir "$ns" tiny)"
  echo "tiny volume" >"$tiny/hello.txt"
  if [[ -z $reuse ]]; then
    echo "--- filling $src (deterministic, seed 42)" >&2
    python3 bench/fixture.py "$src"
  fi
  sync
  read -r src_bytes src_files < <(python3 bench/fixture.py --count "$src")
  echo "fixture: $src_bytes bytes in $src_files files" >&2
}
