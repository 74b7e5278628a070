# The benchmarks' fixture on the local test cluster and what the benchmarks share, sourced by
# bench/backup.sh, bench/restore.sh and bench/destinations.sh after scripts/lib.sh:
#   - `bench_fixture NS REUSE` creates namespace NS with two claims (`data`, 4Gi, filled with
#     bench/fixture.py's 1.14 GiB; `tiny`, one file) and a consumer pod each — or, with REUSE
#     non-empty, takes them as a previous `--keep` run left them — and sets `src` and `tiny` (the
#     volumes' host directories) and `src_bytes`, `src_files`; `bench_drop_fixture NS KEEP` removes
#     it again (or, KEEP=1, says how to reuse it);
#   - `bench_kind_fixture NS` (after `bench_fixture`) adds one claim per kind of data in
#     `bench_kinds` (named after the kind, 1Gi, a consumer pod each) holding a copy (`cp -a`) of
#     that kind's subdirectory of `data` only (copied unless already there, e.g. from a previous
#     `--keep` run) and sets `kind_dir[KIND]`, `kind_bytes[KIND]`, `kind_files[KIND]`;
#   - `bench_warm DIR` reads every file under DIR once (page cache);
#   - `bench_nkvm WORK` builds the release nkvm and sets `nkvm` to a copy in WORK;
#   - timing: `now`, `timev OUT -- CMD...` (/usr/bin/time -v), `tv_field OUT FIELD`, `tv_cpu OUT`.
# Needs `$K` (kubectl for the test cluster).
# shellcheck shell=bash

# The kinds of data bench/fixture.py writes, one subdirectory each: log-like text, random bytes,
# database-like pages, ~30,000 small files.
bench_kinds=(logs blobs db small)

# bench_hostdir NS PVC: the host directory of a bound claim's hostPath volume.
bench_hostdir() {
  local pv
  pv="$("$K" get pvc -n "$1" "$2" -o jsonpath='{.spec.volumeName}')"
  "$K" get pv "$pv" -o jsonpath='{.spec.hostPath.path}'
}

# bench_claim NS PVC SIZE: a ReadWriteOnce claim and its consumer pod `app-PVC` (not waited for).
bench_claim() {
  "$K" apply -n "$1" -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $2}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: $3}}
---
apiVersion: v1
kind: Pod
metadata: {name: app-$2}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: nkvm.local/workload:1
    imagePullPolicy: Never
    command: [sleep, "86400"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: $2}}]
YAML
}

bench_fixture() {
  local ns=$1 reuse=$2 pvc
  if [[ -z $reuse ]]; then
    echo "--- namespace $ns: PVCs and consumer pods" >&2
    "$K" create namespace "$ns" >/dev/null
    for pvc in data tiny; do
      bench_claim "$ns" "$pvc" 4Gi
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

bench_kind_fixture() {
  local ns=$1 kind
  declare -gA kind_dir=() kind_bytes=() kind_files=()
  for kind in "${bench_kinds[@]}"; do
    [[ -d $src/$kind ]] || die "the fixture under $src has no $kind/ (bench/fixture.py changed?)"
    "$K" get pvc -n "$ns" "$kind" >/dev/null 2>&1 || bench_claim "$ns" "$kind" 1Gi
  done
  for kind in "${bench_kinds[@]}"; do
    "$K" wait -n "$ns" --for=condition=Ready "pod/app-$kind" --timeout=180s >/dev/null
    kind_dir[$kind]="$(bench_hostdir "$ns" "$kind")"
  done
  for kind in "${bench_kinds[@]}"; do
    [[ -d ${kind_dir[$kind]}/$kind ]] && continue
    echo "--- copying $kind/ to ${kind_dir[$kind]}" >&2
    # Into a temporary name first: an interrupted copy is not taken for a finished one.
    rm -rf "${kind_dir[$kind]}/.$kind.partial"
    cp -a "$src/$kind" "${kind_dir[$kind]}/.$kind.partial"
    mv "${kind_dir[$kind]}/.$kind.partial" "${kind_dir[$kind]}/$kind"
  done
  sync
  for kind in "${bench_kinds[@]}"; do
    read -r "kind_bytes[$kind]" "kind_files[$kind]" < <(python3 bench/fixture.py --count "${kind_dir[$kind]}")
    echo "kind $kind: ${kind_bytes[$kind]} bytes in ${kind_files[$kind]} files" >&2
  done
}

# bench_warm DIR: reads every file under DIR into the page cache (through a pipe: GNU tar skips
# reading file data when its output is /dev/null); a failing tar fails the caller (pipefail).
bench_warm() {
  tar -cf - -C "$1" . | cat >/dev/null
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
  # shellcheck disable=SC2034 # for the caller
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
