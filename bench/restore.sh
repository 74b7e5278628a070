#!/usr/bin/env bash
# Restore and verify benchmark on the local test cluster (numbers, not a pass/fail test). Refuses to
# run unless the local test cluster is up (end2end/cluster/up; NKVM_TEST_KUBECONFIG for one started
# from another checkout): it never touches another cluster.
#
# Uses the backup benchmark's fixture (bench/fixture.sh: a namespace with the PVC `data` holding
# 1.14 GiB of mixed content and the one-file PVC `tiny`), backs both up with nkvm into a temporary
# data directory, then measures in one run, side by side:
#   restore (every method writes the archive's files into a volume, or a directory, that was empty):
#     - nkvm:     `nkvm restore RUN_ID --to-pvc NAME --output json` (creates the PVC; wall time,
#                 peak RSS via /usr/bin/time -v);
#     - by hand:  a PVC + a pod mounting it (same helper image, an emptyDir at /tmp), `kubectl cp`
#                 of the archive into /tmp, `kubectl exec -- tar -xzpf /tmp/… --numeric-owner -C
#                 /data`, pod deleted (wall time of the whole thing);
#     - ceiling:  `pigz -dc ARCHIVE | tar -xpf - --numeric-owner -C DIR` on the host, into an empty
#                 directory under /tmp;
#   verify:
#     - nkvm:     `nkvm verify RUN_ID --output json` (wall time, peak RSS);
#     - ceiling:  `sha256sum ARCHIVE` then `pigz -dc ARCHIVE | tar -tf - >/dev/null` (as an operator
#                 types it), and the same in one pass (`tee >(sha256sum) | pigz -dc | tar -t`).
# Every restored copy is counted (files, bytes) against the source volume. RSS growth is the peak RSS
# of the big run minus that of the same command on the one-file backup.
# Prints a table and the goals; removes the namespace, the restored PVCs and the temp files.
#
# Usage: bench/restore.sh [--runs N] [--keep] [--reuse NAMESPACE]
#   --runs N     rounds of each method (default 1)
#   --keep       leave the fixture namespace in place (restored copies are always removed)
#   --reuse NS   measure on the fixture a previous `--keep` run left in NS (implies --keep)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs=1
keep=0
reuse=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --reuse) reuse="$2"; keep=1; shift 2 ;;
    *) echo "usage: $0 [--runs N] [--keep] [--reuse NS]" >&2; exit 2 ;;
  esac
done

NKVM_SCRIPT=bench-restore
source scripts/lib.sh
# Only ever the local test cluster: refuses to run unless it is up (never the caller's kubeconfig).
use_test_cluster
K="$NKVM_KUBECTL"
require rust deb:time:/usr/bin/time deb:pigz deb:bc deb:python3
source bench/fixture.sh
image=nkvm.local/helper:1

ns="${reuse:-nkvm-bench-restore-$$}"
work="$(mktemp -d /tmp/nkvm-bench-restore.XXXXXX)"
data="$work/nkvm-data"
cleanup() {
  if [[ $keep == 1 ]]; then
    # The restored copies go; the fixture stays.
    "$K" delete pod,pvc -n "$ns" -l nkvm-bench=restore --wait=false --ignore-not-found \
      >/dev/null 2>&1 || true
    "$K" delete pvc -n "$ns" --wait=false --ignore-not-found $(
      "$K" get pvc -n "$ns" -o name 2>/dev/null | grep -E '/(nkvm-r|tiny-r)-' | sed 's|.*/||'
    ) >/dev/null 2>&1 || true
  fi
  bench_drop_fixture "$ns" "$keep"
  rm -rf "$work"
}
trap cleanup EXIT
bench_nkvm "$work"

# --- fixture and its backups -----------------------------------------------------------------
bench_fixture "$ns" "$reuse"

# backup PVC: prints the run id of a fresh nkvm backup of NS/PVC into $data.
backup() {
  "$nkvm" --data-dir "$data" --helper-image "$image" backup "$ns/$1" --output json \
    >"$work/backup-$1.json" 2>"$work/backup-$1.err" || { cat "$work/backup-$1.err" >&2; exit 1; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; assert r["status"]=="succeeded", r; print(r["run_id"])' \
    "$work/backup-$1.json"
}
echo "--- backing up $ns/data and $ns/tiny with nkvm" >&2
run_data="$(backup data)"
run_tiny="$(backup tiny)"
archive="$(find "$data/artifacts/$ns/data" -name '*.tar.gz' | head -n 1)"
archive_bytes="$(stat -c %s "$archive")"
echo "archive: $archive ($archive_bytes bytes), run $run_data" >&2

# --- measurement helpers ---------------------------------------------------------------------
results="$work/results.tsv"
: >"$results"
# record METHOD RUN SECONDS RSS_KB SELF_CPU NOTE
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$results"
  printf '  %-16s run %s: %7.2f s  %7.1f MB/s of files\n' "$1" "$2" "$3" \
    "$(echo "$src_bytes / $3 / 1000000" | bc -l)" >&2
}

# check_copy DIR WHAT: the restored copy holds what the source volume holds (files, bytes).
check_copy() {
  local got
  got="$(python3 bench/fixture.py --count "$1")"
  if [[ "$got" != "$src_bytes $src_files" ]]; then
    echo "error: $2 restored \"$got\" (bytes files), the source has \"$src_bytes $src_files\"" >&2
    exit 1
  fi
}

# delete_pvc NAME: deletes a restored claim and waits until it (and its hostPath directory) is gone.
delete_pvc() {
  "$K" delete pvc -n "$ns" "$1" --ignore-not-found --wait=true --timeout=120s >/dev/null
}

# nkvm_restore NAME RUN_ID OUT: `nkvm restore` into the new PVC NAME under /usr/bin/time -v.
nkvm_restore() {
  timev "$3.time" -- "$nkvm" --data-dir "$data" --helper-image "$image" \
    restore "$2" --to-pvc "$1" --output json >"$3.json" 2>"$3.err"
  python3 - "$3.json" <<'PY' || { cat "$3.err" >&2; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r.get("status") == "succeeded", r
PY
}

run_nkvm_restore() {
  local run=$1 pvc="nkvm-r-$1" start end
  start=$(now)
  nkvm_restore "$pvc" "$run_data" "$work/restore-$run"
  end=$(now)
  record restore-nkvm "$run" "$(echo "$end - $start" | bc)" \
    "$(tv_field "$work/restore-$run.time" 'Maximum resident')" "$(tv_cpu "$work/restore-$run.time")" \
    "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["message"])' "$work/restore-$run.json")"
  check_copy "$(bench_hostdir "$ns" "$pvc")" "nkvm restore"
  delete_pvc "$pvc"
}

run_by_hand() {
  local run=$1 pod="hand-$1" pvc="hand-r-$1" start end t1 t2 t3
  start=$(now)
  "$K" apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: $pvc, labels: {nkvm-bench: restore}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 4Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: $pod, labels: {nkvm-bench: restore}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: restore
    image: $image
    imagePullPolicy: Never
    command: [sleep, "3600"]
    volumeMounts:
    - {name: data, mountPath: /data}
    - {name: tmp, mountPath: /tmp}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: $pvc}}
  - {name: tmp, emptyDir: {}}
EOF
  "$K" wait -n "$ns" --for=condition=Ready "pod/$pod" --timeout=180s >/dev/null
  t1=$(now)
  "$K" cp -n "$ns" "$archive" "$pod:/tmp/backup.tar.gz" >/dev/null 2>&1
  t2=$(now)
  "$K" exec -n "$ns" "$pod" -- tar -xzpf /tmp/backup.tar.gz --numeric-owner -C /data
  t3=$(now)
  "$K" delete pod -n "$ns" "$pod" --wait=false >/dev/null
  end=$(now)
  record restore-by-hand "$run" "$(echo "$end - $start" | bc)" - - \
    "$(printf 'PVC + pod start %.1f s, kubectl cp %.1f s, tar -xzpf %.1f s' \
      "$(echo "$t1 - $start" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)")"
  "$K" wait -n "$ns" --for=delete "pod/$pod" --timeout=120s >/dev/null 2>&1 || true
  check_copy "$(bench_hostdir "$ns" "$pvc")" "the by-hand restore"
  delete_pvc "$pvc"
}

run_ceiling_restore() {
  local run=$1 dir start end
  # $work is on the same disk as the cluster's volumes here (checked and said in docs/performance.md).
  dir="$work/ceiling-$run"
  mkdir "$dir"
  start=$(now)
  timev "$work/ceiling-$run.time" -- bash -c 'set -o pipefail; pigz -dc "$1" | tar -xpf - --numeric-owner -C "$2"' \
    _ "$archive" "$dir"
  end=$(now)
  record restore-ceiling "$run" "$(echo "$end - $start" | bc)" - "$(tv_cpu "$work/ceiling-$run.time")" \
    "pigz -dc | tar -x"
  check_copy "$dir" "pigz -dc | tar -x"
  rm -rf "$dir"
}

run_nkvm_verify() {
  local run=$1 start end
  start=$(now)
  timev "$work/verify-$run.time" -- "$nkvm" --data-dir "$data" verify "$run_data" --output json \
    >"$work/verify-$run.json" 2>"$work/verify-$run.err"
  end=$(now)
  python3 - "$work/verify-$run.json" <<'PY' || { cat "$work/verify-$run.err" >&2; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))[0]
assert r.get("status") == "verified", r
PY
  record verify-nkvm "$run" "$(echo "$end - $start" | bc)" \
    "$(tv_field "$work/verify-$run.time" 'Maximum resident')" "$(tv_cpu "$work/verify-$run.time")" "verified"
}

run_ceiling_verify() {
  local run=$1 start mid end
  start=$(now)
  timev "$work/vceil-$run.time" -- bash -c 'set -o pipefail; sha256sum "$1" >/dev/null' _ "$archive"
  mid=$(now)
  timev "$work/vceil2-$run.time" -- bash -c 'set -o pipefail; pigz -dc "$1" | tar -tf - >/dev/null' _ "$archive"
  end=$(now)
  record verify-ceiling "$run" "$(echo "$end - $start" | bc)" - \
    "$(echo "$(tv_cpu "$work/vceil-$run.time") + $(tv_cpu "$work/vceil2-$run.time")" | bc)" \
    "$(printf 'sha256sum %.1f s, pigz -dc | tar -t %.1f s' "$(echo "$mid - $start" | bc)" "$(echo "$end - $mid" | bc)")"
  start=$(now)
  timev "$work/vone-$run.time" -- bash -c 'set -o pipefail
    pigz -dc <(tee >(sha256sum >/dev/null) <"$1") | tar -tf - >/dev/null' _ "$archive"
  end=$(now)
  record verify-one-pass "$run" "$(echo "$end - $start" | bc)" - "$(tv_cpu "$work/vone-$run.time")" \
    "tee >(sha256sum) | pigz -dc | tar -t"
}

# --- RSS baselines: the same commands on the one-file backup ----------------------------------
timev "$work/tiny-verify.time" -- "$nkvm" --data-dir "$data" verify "$run_tiny" --output json \
  >/dev/null 2>"$work/tiny-verify.err" || { cat "$work/tiny-verify.err" >&2; exit 1; }
rss_tiny_verify="$(tv_field "$work/tiny-verify.time" 'Maximum resident')"
nkvm_restore tiny-r-1 "$run_tiny" "$work/tiny-restore"
rss_tiny_restore="$(tv_field "$work/tiny-restore.time" 'Maximum resident')"
delete_pvc tiny-r-1

# Warm the page cache so that every method reads the archive from memory alike.
cat "$archive" >/dev/null

echo "--- runs ($runs of each, interleaved)" >&2
uptime >&2
for ((i = 1; i <= runs; i++)); do
  run_nkvm_restore "$i"
  run_by_hand "$i"
  run_ceiling_restore "$i"
  run_nkvm_verify "$i"
  run_ceiling_verify "$i"
done
uptime >&2

# --- report ----------------------------------------------------------------------------------
python3 - "$results" "$src_bytes" "$src_files" "$archive_bytes" "$rss_tiny_restore" \
  "$rss_tiny_verify" "$(nproc)" <<'PY'
import statistics, sys
path, src_bytes, src_files, archive_bytes, rss_tr, rss_tv, cores = sys.argv[1:]
src_bytes, src_files, archive_bytes = int(src_bytes), int(src_files), int(archive_bytes)
rss_tr, rss_tv = int(rss_tr), int(rss_tv)
rows = {}
for line in open(path):
    m, run, secs, rss, cpu, note = line.rstrip("\n").split("\t")
    rows.setdefault(m, []).append(dict(secs=float(secs), rss=rss, cpu=cpu, note=note))
med = {m: statistics.median(r["secs"] for r in rs) for m, rs in rows.items()}
print(f"source: {src_bytes / 2**30:.2f} GiB ({src_bytes} bytes) in {src_files} files; archive "
      f"{archive_bytes / 2**20:.1f} MiB; {cores} cores")
print()
print("| method | run | seconds | MB/s of files | own CPU s | peak RSS MiB | note |")
print("|---|---|---|---|---|---|---|")
order = ("restore-nkvm", "restore-by-hand", "restore-ceiling", "verify-nkvm", "verify-ceiling",
         "verify-one-pass")
for m in order:
    for i, r in enumerate(rows.get(m, []), 1):
        rss = f"{int(r['rss']) / 1024:.1f}" if r["rss"] != "-" else "-"
        cpu = r["cpu"] if r["cpu"] != "-" else "(in the pod)"
        print(f"| {m} | {i} | {r['secs']:.2f} | {src_bytes / r['secs'] / 1e6:.1f} | {cpu} | {rss} "
              f"| {r['note']} |")
print()
rn, rh, rc = med["restore-nkvm"], med["restore-by-hand"], med["restore-ceiling"]
vn, vc, v1 = med["verify-nkvm"], med["verify-ceiling"], med["verify-one-pass"]
ok = lambda good: "MET" if good else "MISSED"
print(f"restore vs by hand:          {rh / rn:.2f}x  (goal >= 2x)    {ok(rh / rn >= 2)}")
print(f"restore vs ceiling:          {rc / rn:.2f}x  (goal >= 0.7x)  {ok(rc / rn >= 0.7)}")
print(f"verify vs ceiling:           {vc / vn:.2f}x  (goal >= 0.8x)  {ok(vc / vn >= 0.8)}")
print(f"verify vs one-pass ceiling:  {v1 / vn:.2f}x")
peak_r = max(int(r["rss"]) for r in rows["restore-nkvm"])
peak_v = max(int(r["rss"]) for r in rows["verify-nkvm"])
gr, gv = (peak_r - rss_tr) / 1024, (peak_v - rss_tv) / 1024
print(f"restore peak RSS {peak_r / 1024:.1f} MiB, one-file restore {rss_tr / 1024:.1f} MiB: growth "
      f"{gr:.1f} MiB  (goal <= 64 MiB) {ok(gr <= 64)}")
print(f"verify peak RSS {peak_v / 1024:.1f} MiB, one-file verify {rss_tv / 1024:.1f} MiB: growth "
      f"{gv:.1f} MiB  (goal <= 64 MiB) {ok(gv <= 64)}")
PY
