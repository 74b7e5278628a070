#!/usr/bin/env bash
# Backup throughput benchmark on the local test cluster (numbers, not a pass/fail test). Refuses to run
# unless the local test cluster is up (end2end/cluster/up; NKVM_TEST_KUBECONFIG for one started from
# another checkout): it never touches another cluster.
#
# Creates a namespace with a PVC and a consumer pod, fills the volume (through its hostPath
# directory) with 1.14 GiB (1.23 GB) of deterministic, mixed content (log-like text, random data, a
# database-like file set and ~30,000 small files), then measures in one run, interleaved, at gzip
# level 6:
#   - nkvm-server: `nkvm backup NS/PVC --compression server --output json` (nkvm compresses; wall
#                  time, peak RSS via /usr/bin/time -v);
#   - nkvm-source: the same with `--compression source` (the helper's pigz compresses, within its
#                  CPU limit of 1; nkvm checks and stores the gzip bytes);
#   - predecessor: helper pod (same image, emptyDir at /tmp) + `kubectl exec tar czf /tmp/...`
#                  + `kubectl cp` out + delete (wall time of the whole thing);
#   - ceiling:     `tar -cf - -C <hostPath> . | pigz -6` locally (and single-threaded `gzip -6`).
# For every run it also records the CPU seconds spent by nkvm (or the local tar/gzip),
# kube-apiserver, kubelet and containerd (the shims come and go with the pods, so they are not
# reported; neither is CPU spent inside the pods).
# Prints a table and the goals; cleans up the namespace and temp files.
#
# Usage: bench/backup.sh [--runs N] [--keep] [--reuse NAMESPACE]
#   --runs N     rounds of each method (default 2)
#   --keep       leave the namespace and fixture in place
#   --reuse NS   measure on the fixture a previous `--keep` run left in NS (implies --keep)
#   --explore    also measure two design alternatives (exec time only, pod start excluded), in a
#                pod with nkvm's default helper limits (1 CPU, 256 MiB):
#                  exec-raw:    `kubectl exec tar -cf -` to /dev/null (the exec transport alone);
#                  helper-pigz: `kubectl exec sh -c 'tar -cf - | pigz -6'` into a file, with the
#                               client checking it as it arrives (sha256 + `gzip -dc | tar -t`).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs=2
keep=0
reuse=""
explore=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --reuse) reuse="$2"; keep=1; shift 2 ;;
    --explore) explore=1; shift ;;
    *) echo "usage: $0 [--runs N] [--keep] [--reuse NS]" >&2; exit 2 ;;
  esac
done

NKVM_SCRIPT=bench-backup
source scripts/lib.sh
# Only ever the local test cluster: refuses to run unless it is up (never the caller's kubeconfig).
use_test_cluster
K="$NKVM_KUBECTL"
require rust deb:time:/usr/bin/time deb:pigz deb:bc deb:python3
source bench/fixture.sh
image=nkvm.local/helper:1
level=6

ns="${reuse:-nkvm-bench-backup-$$}"
work="$(mktemp -d /tmp/nkvm-bench-backup.XXXXXX)"
cleanup() {
  bench_drop_fixture "$ns" "$keep"
  rm -rf "$work"
}
trap cleanup EXIT
bench_nkvm "$work"

# --- fixture ---------------------------------------------------------------------------------
bench_fixture "$ns" "$reuse"

# --- measurement helpers ---------------------------------------------------------------------
# CPU seconds (utime+stime, plus reaped children for the shims) of the cluster components.
cpu_snapshot() {
  python3 - <<'PY'
import os
hz = os.sysconf("SC_CLK_TCK")
acc = {"apiserver": 0, "kubelet": 0, "containerd": 0, "shims": 0}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()
    own, children = int(f[11]) + int(f[12]), int(f[13]) + int(f[14])
    if comm == "kube-apiserver":
        acc["apiserver"] += own
    elif comm == "kubelet":
        acc["kubelet"] += own
    elif comm == "containerd":
        acc["containerd"] += own
    elif comm.startswith("containerd-shim"):
        acc["shims"] += own + children
print(" ".join(f"{acc[k] / hz:.2f}" for k in ("apiserver", "kubelet", "containerd", "shims")))
PY
}
results="$work/results.tsv"
: >"$results"
# record METHOD RUN SECONDS ARCHIVE_BYTES RSS_KB SELF_CPU CPU_BEFORE CPU_AFTER
record() {
  local method=$1 run=$2 secs=$3 abytes=$4 rss=$5 selfcpu=$6 before=$7 after=$8
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$method" "$run" "$secs" "$abytes" "$rss" "$selfcpu" \
    "$before" "$after" >>"$results"
  printf '  %-12s run %s: %7.2f s  %7.1f MB/s\n' "$method" "$run" "$secs" \
    "$(echo "$src_bytes / $secs / 1000000" | bc -l)" >&2
}

run_nkvm() { # run_nkvm RUN MODE (server | source)
  local run=$1 mode=$2 before after start end
  local data="$work/nkvm-data-$run"
  before="$(cpu_snapshot)"; start=$(now)
  timev "$work/time-nkvm-$run" -- "$nkvm" --data-dir "$data" --helper-image "$image" \
    backup "$ns/data" --gzip-level "$level" --compression "$mode" --output json \
    >"$work/nkvm-$run.json" 2>"$work/nkvm-$run.err"
  end=$(now); after="$(cpu_snapshot)"
  python3 - "$work/nkvm-$run.json" <<'PY' || { cat "$work/nkvm-$run.err" >&2; exit 1; }
import json, sys
r = json.load(open(sys.argv[1]))
r = r[0] if isinstance(r, list) else r
assert r.get("status") == "succeeded", r
assert not r.get("warnings"), r  # e.g. a fallback from source to server compression
PY
  local abytes
  abytes="$(stat -c %s "$(find "$data/artifacts" -name '*.tar.gz' | head -n 1)")"
  local u s
  u="$(tv_field "$work/time-nkvm-$run" 'User time')"; s="$(tv_field "$work/time-nkvm-$run" 'System time')"
  record "nkvm-$mode" "$run" "$(echo "$end - $start" | bc)" "$abytes" \
    "$(tv_field "$work/time-nkvm-$run" 'Maximum resident')" "$(echo "$u + $s" | bc)" "$before" "$after"
  rm -rf "$data"
}

run_predecessor() {
  local run=$1 pod="prev-$1" before after start end
  before="$(cpu_snapshot)"; start=$(now)
  "$K" apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $pod}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: helper
    image: $image
    imagePullPolicy: Never
    command: [sleep, "3600"]
    volumeMounts:
    - {name: data, mountPath: /data, readOnly: true}
    - {name: tmp, mountPath: /tmp}
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: data}}
  - {name: tmp, emptyDir: {}}
EOF
  "$K" wait -n "$ns" --for=condition=Ready "pod/$pod" --timeout=180s >/dev/null
  local t1 t2 t3
  t1=$(now)
  "$K" exec -n "$ns" "$pod" -- tar czf /tmp/backup.tar.gz -C /data .
  t2=$(now)
  "$K" cp -n "$ns" "$pod:/tmp/backup.tar.gz" "$work/prev-$run.tar.gz" >/dev/null 2>&1
  t3=$(now)
  "$K" delete pod -n "$ns" "$pod" --wait=false >/dev/null
  end=$(now); after="$(cpu_snapshot)"
  printf '  predecessor  run %s phases: pod start %.1f s, tar czf %.1f s, kubectl cp %.1f s\n' "$run" \
    "$(echo "$t1 - $start" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" >&2
  record predecessor "$run" "$(echo "$end - $start" | bc)" "$(stat -c %s "$work/prev-$run.tar.gz")" \
    - - "$before" "$after"
  rm -f "$work/prev-$run.tar.gz"
}

run_local() { # run_local NAME RUN COMPRESSOR...
  local name=$1 run=$2; shift 2
  local before after start end
  before="$(cpu_snapshot)"; start=$(now)
  timev "$work/time-$name-$run" -- bash -c 'set -o pipefail; tar -cf - -C "$1" . | "${@:3}" >"$2"' _ \
    "$src" "$work/local.tar.gz" "$@"
  end=$(now); after="$(cpu_snapshot)"
  local u s
  u="$(tv_field "$work/time-$name-$run" 'User time')"; s="$(tv_field "$work/time-$name-$run" 'System time')"
  record "$name" "$run" "$(echo "$end - $start" | bc)" "$(stat -c %s "$work/local.tar.gz")" - \
    "$(echo "$u + $s" | bc)" "$before" "$after"
  rm -f "$work/local.tar.gz"
}

start_explore_pod() {
  "$K" apply -n "$ns" -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: explore}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: helper
    image: $image
    imagePullPolicy: Never
    command: [sleep, "3600"]
    resources: {limits: {cpu: "1", memory: 256Mi}, requests: {cpu: 100m, memory: 64Mi}}
    volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: data}}]
EOF
  "$K" wait -n "$ns" --for=condition=Ready pod/explore --timeout=180s >/dev/null
}

run_exec() { # run_exec NAME RUN SHELL-PIPELINE-IN-POD CLIENT-PIPELINE
  local name=$1 run=$2 before after start end
  before="$(cpu_snapshot)"; start=$(now)
  # A failed check is reported, not fatal: `kubectl exec` may drop the last bytes in flight when
  # the command exits (see docs/backup.md), which nkvm's wrapped tar avoids.
  timev "$work/time-$name-$run" -- bash -c 'set -o pipefail
    "$1" exec -n "$2" explore -- sh -c "$3" | eval "$4"' _ "$K" "$ns" "$3" "$4" \
    || echo "  $name run $run: the stream or its check failed (times still recorded)" >&2
  end=$(now); after="$(cpu_snapshot)"
  local u s ab=0
  u="$(tv_field "$work/time-$name-$run" 'User time')"; s="$(tv_field "$work/time-$name-$run" 'System time')"
  [[ -f "$work/explore.tar.gz" ]] && ab="$(stat -c %s "$work/explore.tar.gz")"
  record "$name" "$run" "$(echo "$end - $start" | bc)" "$ab" - "$(echo "$u + $s" | bc)" "$before" "$after"
  rm -f "$work/explore.tar.gz"
}

# --- RSS baselines ---------------------------------------------------------------------------
timev "$work/time-help" -- "$nkvm" --help >/dev/null
rss_help="$(tv_field "$work/time-help" 'Maximum resident')"
timev "$work/time-tiny" -- "$nkvm" --data-dir "$work/tiny-data" --helper-image "$image" \
  backup "$ns/tiny" --gzip-level "$level" --compression server --output json >/dev/null 2>"$work/tiny.err" \
  || { cat "$work/tiny.err" >&2; exit 1; }
rss_tiny="$(tv_field "$work/time-tiny" 'Maximum resident')"
rm -rf "$work/tiny-data"

# Warm the page cache so that every method reads the volume from memory alike (through a pipe:
# GNU tar skips reading file data when its output is /dev/null).
tar -cf - -C "$src" . | cat >/dev/null

echo "--- runs ($runs of each, interleaved)" >&2
for ((i = 1; i <= runs; i++)); do
  run_nkvm "$i" server
  run_nkvm "$i" source
  run_predecessor "$i"
  run_local pigz "$i" pigz "-$level"
  run_local gzip "$i" gzip "-$level"
  if [[ $explore == 1 ]]; then
    [[ $i == 1 ]] && start_explore_pod
    run_exec exec-raw "$i" 'tar -cf - -C /data .' 'cat >/dev/null'
    run_exec helper-pigz "$i" "tar -cf - -C /data . | pigz -$level" \
      "tee \"$work/explore.tar.gz\" | tee >(sha256sum >/dev/null) | gzip -dc | tar -tf - >/dev/null"
  fi
done
[[ $explore == 1 ]] && "$K" delete pod -n "$ns" explore --wait=false >/dev/null

# --- report ----------------------------------------------------------------------------------
python3 - "$results" "$src_bytes" "$src_files" "$rss_help" "$rss_tiny" "$(nproc)" <<'PY'
import statistics, sys
path, src_bytes, src_files, rss_help, rss_tiny, cores = sys.argv[1:]
src_bytes, src_files, rss_help, rss_tiny = int(src_bytes), int(src_files), int(rss_help), int(rss_tiny)
rows = {}
for line in open(path):
    m, run, secs, ab, rss, selfcpu, before, after = line.rstrip("\n").split("\t")
    d = [float(a) - float(b) for a, b in zip(after.split(), before.split())]
    rows.setdefault(m, []).append(dict(secs=float(secs), ab=int(ab), rss=rss, self=selfcpu, d=d))
med = {m: statistics.median(r["secs"] for r in rs) for m, rs in rows.items()}
mbs = lambda s: src_bytes / s / 1e6
print(f"source: {src_bytes / 2**30:.2f} GiB ({src_bytes} bytes) in {src_files} files; gzip level 6; "
      f"{cores} cores")
print()
print("| method | run | seconds | MB/s | archive MiB | own CPU s | apiserver CPU s | kubelet CPU s "
      "| containerd CPU s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in ("nkvm-server", "nkvm-source", "predecessor", "pigz", "gzip", "exec-raw", "helper-pigz"):
    for i, r in enumerate(rows.get(m, []), 1):
        rss = f"{int(r['rss']) / 1024:.1f}" if r["rss"] != "-" else "-"
        own = r["self"] if r["self"] != "-" else "(in pod)"
        print(f"| {m} | {i} | {r['secs']:.2f} | {mbs(r['secs']):.1f} | {r['ab'] / 2**20:.1f} | {own} "
              f"| {r['d'][0]:.1f} | {r['d'][1]:.1f} | {r['d'][2]:.1f} | {rss} |")
print()
p, c = med["predecessor"], med["pigz"]
rss_base = rss_tiny
print(f"median seconds: nkvm-server {med['nkvm-server']:.2f}, nkvm-source {med['nkvm-source']:.2f}, "
      f"predecessor {p:.2f}, tar|pigz {c:.2f}, tar|gzip {med['gzip']:.2f}")
for mode in ("nkvm-server", "nkvm-source"):
    n = med[mode]
    rss_peak = max(int(r["rss"]) for r in rows[mode])
    growth = (rss_peak - rss_base) / 1024
    print(f"{mode}: {p / n:.2f}x the predecessor (goal >= 2.5x) {'MET' if p / n >= 2.5 else 'MISSED'}; "
          f"{c / n:.2f}x tar|pigz (goal >= 0.9x) {'MET' if c / n >= 0.9 else 'MISSED'}; "
          f"{med['gzip'] / n:.2f}x tar|gzip; peak RSS {rss_peak / 1024:.1f} MiB, growth vs tiny backup "
          f"{growth:.1f} MiB (goal <= 64 MiB) {'MET' if growth <= 64 else 'MISSED'}")
print(f"idle `nkvm --help` {rss_help / 1024:.1f} MiB, tiny backup {rss_tiny / 1024:.1f} MiB")
print(f"nkvm-source/nkvm-server seconds: {med['nkvm-source'] / med['nkvm-server']:.2f}")
PY
