# The benchmarks' fixture on the local test cluster and what the benchmarks share, sourced by
# bench/backup.sh, bench/restore.sh and bench/destinations.sh after scripts/lib.sh:
#   - `bench_fixture NS REUSE` creates namespace NS with two claims (`data`, 4Gi, filled with
#     bench/fixture.py's 1.14 GiB; `tiny`, one file) and a consumer pod each — or, with REUSE
#     non-empty, takes them as a previous `--keep` run left them — and sets `src` and `tiny` (the
#     volumes' host directories) and `src_bytes`, `src_files`; `bench_drop_fixture NS KEEP` removes
#     it again (or, KEEP=1, says how to reuse it);
#   - `bench_nkvm WORK` builds the release nkvm and sets `nkvm` to a copy in WORK;
#   - timing: `now`, `timev OUT -- CMD...` (/usr/bin/time -v), `tv_field OUT FIELD`, `tv_cpu OUT`.
# Needs `$K` (kubectl for the test cluster).

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

# bench_drop_fixture NS KEEP: deletes namespace NS (its hostPath directories go with their PVs,
# reclaim policy Delete), or with KEEP=1 keeps it and says how to measure on it again.
bench_drop_fixture() {
  if [[ $2 == 0 ]]; then
    "$K" delete namespace "$1" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  else
    echo "kept namespace $1 (rerun with --reuse $1)" >&2
  fi
}

# bench_nkvm WORK: builds the release nkvm and sets `nkvm` to a copy in WORK (the shared target
# directory's binary may be rebuilt by another checkout meanwhile).
bench_nkvm() {
  echo "--- building nkvm (release)" >&2
  cargo build --release -q -p nkvm-server --bin nkvm
  cp "$CARGO_TARGET_DIR/release/nkvm" "$1/nkvm"
  nkvm="$1/nkvm"
}

now() { date +%s.%N; }
# timev OUT -- COMMAND...: runs COMMAND under /usr/bin/time -v, its report in the file OUT.
timev() {
  local out=$1
  shift 2
  /usr/bin/time -v -o "$out" "$@"
}
# tv_field OUT FIELD: a value of a /usr/bin/time -v report (e.g. 'Maximum resident').
tv_field() { grep -F "$2" "$1" | awk -F': ' '{print $2}' | tail -n 1; }
# tv_cpu OUT: the CPU seconds (user + system) of a /usr/bin/time -v report.
tv_cpu() { echo "$(tv_field "$1" 'User time') + $(tv_field "$1" 'System time')" | bc; }
