#!/usr/bin/env bash
# Backup throughput benchmark on the local test cluster (numbers, not a pass/fail test). Refuses to run
# unless the local test cluster is up (end2end/cluster/up; NKVM_TEST_KUBECONFIG for one started from
# another checkout): it never touches another cluster.
#
# Creates a namespace with a PVC `data` and a consumer pod, fills the volume (through its hostPath
# directory) with 1.14 GiB (1.23 GB) of deterministic, mixed content (bench/fixture.py: log-like
# text, random data, a database-like file set and ~30,000 small files, one subdirectory each), and
# (unless --no-kinds) four more PVCs `logs`, `blobs`, `db`, `small`, each holding a copy of one kind's
# subdirectory only. Then it measures at gzip level 6, on the mix in --runs interleaved rounds and
# on each kind once:
#   - nkvm-server:  `nkvm backup NS/PVC --compression server --output json` (nkvm compresses; wall
#                   time, peak RSS via /usr/bin/time -v);
#   - nkvm-source:  the same with `--compression source` (the helper's pigz compresses, within its
#                   CPU limit of 1; nkvm checks and stores the gzip bytes);
#                   every nkvm archive is verified afterwards: `gzip -t`, its size and its sha256
#                   (`sha256sum`) against nkvm's JSON output;
#   - predecessor:  helper pod (same image, emptyDir at /tmp) + `kubectl exec tar czf /tmp/...`
#                   + `kubectl cp` out + delete (wall time of the whole thing);
#   - ceiling:      `tar -cf - -C <hostPath> . | pigz -6` locally;
#   - nkvm-encoder: the same tar stream through nkvm's own block-parallel encoder
#                   (engine/examples/pgzip.rs, release build, one thread per core like pigz);
#   - gzip:         the same with single-threaded `gzip -6` (reference).
# A local command that fails (tar or the compressor, under `set -o pipefail`) fails the benchmark;
# the first mix archive of each local method is checked with `gzip -t`. Each volume is read once
# (`tar -cf - | cat >/dev/null`) before its runs, so every method reads it from the page cache.
# For every run it also records the CPU seconds spent by nkvm (or the local tar/compressor),
# kube-apiserver, kubelet and containerd (the shims come and go with the pods, so they are not
# reported; neither is CPU spent inside the pods).
# Prints a table for the mix with the goals and one per kind (seconds, MB/s, archive size, speed
# vs the predecessor and vs local tar|pigz); cleans up the namespace and temp files.
#
# Usage: bench/backup.sh [--runs N] [--no-kinds] [--keep] [--reuse NAMESPACE] [--explore]
#                        [--throttle RATE] [--helper-cpu-limit CPUS]
#   --runs N     rounds of each method on the mix (default 2)
#   --throttle RATE  shapes the API-server path as a slower, remote hop would be: the kubelet's
#                replies to the API server (TCP source port 10250 on `lo`, which carries every exec
#                stream, nkvm's and the predecessor's `kubectl exec`/`cp` alike) are limited to RATE
#                (tc htb, e.g. `200mbit`); other traffic is not shaped. Needs root and tc; refuses
#                when `lo` already has a queueing discipline; removed at exit.
#   --helper-cpu-limit CPUS  nkvm's helper CPU limit (`--helper-cpu-limit`, default 1): with
#                `--compression source`, pigz in the helper runs at most this many threads
#   --kinds      also measure each kind of data once, on its own PVC (the default)
#   --no-kinds   the mix only
#   --keep       leave the namespace and fixture in place
#   --reuse NS   measure on the fixture a previous `--keep` run left in NS (implies --keep; the
#                per-kind PVCs are added if that run had none)
#   --explore    also measure two design alternatives on the mix (exec time only, pod start
#                excluded), in a pod with nkvm's default helper limits (1 CPU, 256 MiB):
#                  exec-raw:    `kubectl exec tar -cf -` to /dev/null (the exec transport alone);
#                  helper-pigz: `kubectl exec sh -c 'tar -cf - | pigz -6'` into a file, with the
#                               client checking it as it arrives (sha256 + `gzip -dc | tar -t`).
# shellcheck source-path=SCRIPTDIR/..
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
runs=2
keep=0
reuse=""
explore=0
kinds=1
throttle=""
helper_cpu=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --throttle) throttle="$2"; shift 2 ;;
    --helper-cpu-limit) helper_cpu="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --reuse) reuse="$2"; keep=1; shift 2 ;;
    --explore) explore=1; shift ;;
    --kinds) kinds=1; shift ;;
    --no-kinds) kinds=0; shift ;;
    *) echo "usage: $0 [--runs N] [--no-kinds] [--keep] [--reuse NS] [--explore] [--throttle RATE] [--helper-cpu-limit CPUS]" >&2; exit 2 ;;
  esac
done

# shellcheck disable=SC2034 # read by scripts/lib.sh
NKVM_SCRIPT=bench-backup
source scripts/lib.sh
# Only ever the local test cluster: refuses to run unless it is up (never the caller's kubeconfig).
# shellcheck disable=SC2119 # no arguments: never --start
use_test_cluster
K="$NKVM_KUBECTL"
require rust deb:time:/usr/bin/time deb:pigz deb:bc deb:python3
source bench/fixture.sh
image=nkvm.local/helper:1
level=6

ns="${reuse:-nkvm-bench-backup-$$}"
work="$(mktemp -d /tmp/nkvm-bench-backup.XXXXXX)"
shaped=0
cleanup() {
  ((shaped)) && tc qdisc del dev lo root 2>/dev/null
  bench_drop_fixture "$ns" "$keep"
  rm -rf "$work"
}
trap cleanup EXIT
if [[ -n $throttle ]]; then
  require root deb:iproute2:tc
  [[ $throttle =~ ^[0-9]+(k|m|g)?bit$ ]] || die "--throttle: give a rate such as 200mbit, got '$throttle'"
  tc qdisc show dev lo | grep -q '^qdisc noqueue' ||
    die "lo already has a queueing discipline ($(tc qdisc show dev lo)); not replacing it"
  # Unclassified traffic goes straight through (htb without a default class); only the kubelet's
  # replies (source port 10250) are shaped.
  tc qdisc add dev lo root handle 1: htb
  shaped=1
  tc class add dev lo parent 1: classid 1:1 htb rate "$throttle" ceil "$throttle" 2>/dev/null
  tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport 10250 0xffff flowid 1:1
  echo "--- throttled: the kubelet's replies to the API server (port 10250 on lo) at $throttle" >&2
fi
bench_nkvm "$work"
# nkvm's own encoder as a filter for the local ceiling (a copy, like nkvm: the target directory may
# be shared).
echo "--- building the pgzip example (release)" >&2
cargo build --release -q --example pgzip -p nkvm-engine
cp "$CARGO_TARGET_DIR/release/examples/pgzip" "$work/pgzip"
pgzip="$work/pgzip"
threads="$(nproc)"

# --- fixture ---------------------------------------------------------------------------------
bench_fixture "$ns" "$reuse"
[[ $kinds == 1 ]] && bench_kind_fixture "$ns"

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

# The data set being measured: its name (`mix` or a kind), PVC, host directory and source bytes.
cur_set="" cur_pvc="" cur_dir="" cur_bytes=""
use_set() { cur_set=$1 cur_pvc=$2 cur_dir=$3 cur_bytes=$4; }

results="$work/results.tsv"
: >"$results"
# record METHOD RUN SECONDS ARCHIVE_BYTES RSS_KB SELF_CPU CPU_BEFORE CPU_AFTER (of the current set)
record() {
  local method=$1 run=$2 secs=$3 abytes=$4 rss=$5 selfcpu=$6 before=$7 after=$8
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cur_set" "$method" "$run" "$secs" "$abytes" "$rss" \
    "$selfcpu" "$before" "$after" >>"$results"
  printf '  %-5s %-12s run %s: %7.2f s  %7.1f MB/s\n' "$cur_set" "$method" "$run" "$secs" \
    "$(echo "$cur_bytes / $secs / 1000000" | bc -l)" >&2
}

run_nkvm() { # run_nkvm RUN MODE (server | source)
  local run=$1 mode=$2 before after start end
  local tag="$cur_set-$mode-$run" what="nkvm-$mode ($cur_set, run $run)"
  local data="$work/nkvm-data-$tag" out="$work/nkvm-$tag"
  before="$(cpu_snapshot)"; start=$(now)
  timev "$out.time" -- "$nkvm" --data-dir "$data" --helper-image "$image" --helper-cpu-limit "$helper_cpu" \
    backup "$ns/$cur_pvc" --gzip-level "$level" --compression "$mode" --output json \
    >"$out.json" 2>"$out.err" || { cat "$out.err" "$out.json" >&2; die "$what exited non-zero"; }
  end=$(now); after="$(cpu_snapshot)"
  local info artifact sha abytes
  info="$(python3 - "$out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r = r[0] if isinstance(r, list) else r
assert r.get("status") == "succeeded", r
assert not r.get("warnings"), r  # e.g. a fallback from source to server compression
print(r["artifact"], r["sha256"], r["bytes"])
PY
)" || { cat "$out.err" >&2; die "$what: unexpected result (above)"; }
  read -r artifact sha abytes <<<"$info"
  # The archive must be what nkvm says it wrote, and a whole gzip stream.
  [[ -f $artifact ]] || die "$what: no archive at $artifact"
  [[ "$(stat -c %s "$artifact")" == "$abytes" ]] \
    || die "$what: $artifact has $(stat -c %s "$artifact") bytes, nkvm reported $abytes"
  gzip -t "$artifact" || die "$what: $artifact is not a valid gzip stream"
  local got
  got="$(sha256sum "$artifact" | cut -d ' ' -f 1)"
  [[ $got == "$sha" ]] || die "$what: sha256sum of $artifact is $got, nkvm reported $sha"
  record "nkvm-$mode" "$run" "$(echo "$end - $start" | bc)" "$abytes" \
    "$(tv_field "$out.time" 'Maximum resident')" "$(tv_cpu "$out.time")" "$before" "$after"
  rm -rf "$data"
}

run_predecessor() {
  local run=$1 pod="prev-$cur_set-$1" before after start end
  before="$(cpu_snapshot)"; start=$(now)
  "$K" apply -n "$ns" -f - >/dev/null <<YAML
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
  - {name: data, persistentVolumeClaim: {claimName: $cur_pvc}}
  - {name: tmp, emptyDir: {}}
YAML
  "$K" wait -n "$ns" --for=condition=Ready "pod/$pod" --timeout=180s >/dev/null
  local t1 t2 t3
  t1=$(now)
  "$K" exec -n "$ns" "$pod" -- tar czf /tmp/backup.tar.gz -C /data .
  t2=$(now)
  "$K" cp -n "$ns" "$pod:/tmp/backup.tar.gz" "$work/prev.tar.gz" >/dev/null 2>&1
  t3=$(now)
  "$K" delete pod -n "$ns" "$pod" --wait=false >/dev/null
  end=$(now); after="$(cpu_snapshot)"
  printf '  %-5s predecessor  run %s phases: pod start %.1f s, tar czf %.1f s, kubectl cp %.1f s\n' \
    "$cur_set" "$run" "$(echo "$t1 - $start" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$t3 - $t2" | bc)" >&2
  record predecessor "$run" "$(echo "$end - $start" | bc)" "$(stat -c %s "$work/prev.tar.gz")" \
    - - "$before" "$after"
  rm -f "$work/prev.tar.gz"
}

declare -A local_checked=()
run_local() { # run_local NAME RUN COMPRESSOR...
  local name=$1 run=$2; shift 2
  local before after start end out="$work/time-$name-$cur_set-$run"
  before="$(cpu_snapshot)"; start=$(now)
  # Fails the benchmark when tar or the compressor fails: a ceiling that did not compress
  # everything is no ceiling.
  # shellcheck disable=SC2016 # expanded by the inner bash
  timev "$out" -- bash -c 'set -o pipefail; tar -cf - -C "$1" . | "${@:3}" >"$2"' _ \
    "$cur_dir" "$work/local.tar.gz" "$@" \
    || die "$name ($cur_set, run $run): \`tar -cf - -C $cur_dir . | $*\` failed" \
      "($(grep -m 1 -E '^Command (exited|terminated)' "$out" || echo 'see above'))"
  end=$(now); after="$(cpu_snapshot)"
  if [[ -z ${local_checked[$name]:-} ]]; then
    gzip -t "$work/local.tar.gz" || die "$name ($cur_set, run $run): the output is not a valid gzip stream"
    local_checked[$name]=1
  fi
  record "$name" "$run" "$(echo "$end - $start" | bc)" "$(stat -c %s "$work/local.tar.gz")" - \
    "$(tv_cpu "$out")" "$before" "$after"
  rm -f "$work/local.tar.gz"
}

start_explore_pod() {
  "$K" apply -n "$ns" -f - >/dev/null <<YAML
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
YAML
  "$K" wait -n "$ns" --for=condition=Ready pod/explore --timeout=180s >/dev/null
}

run_exec() { # run_exec NAME RUN SHELL-PIPELINE-IN-POD CLIENT-PIPELINE
  local name=$1 run=$2 before after start end
  before="$(cpu_snapshot)"; start=$(now)
  # A failed check is reported, not fatal: `kubectl exec` may drop the last bytes in flight when
  # the command exits (see docs/backup.md), which nkvm's wrapped tar avoids.
  # shellcheck disable=SC2016 # expanded by the inner bash
  timev "$work/time-$name-$run" -- bash -c 'set -o pipefail
    "$1" exec -n "$2" explore -- sh -c "$3" | eval "$4"' _ "$K" "$ns" "$3" "$4" \
    || echo "  $name run $run: the stream or its check failed (times still recorded)" >&2
  end=$(now); after="$(cpu_snapshot)"
  local ab=0
  [[ -f "$work/explore.tar.gz" ]] && ab="$(stat -c %s "$work/explore.tar.gz")"
  record "$name" "$run" "$(echo "$end - $start" | bc)" "$ab" - "$(tv_cpu "$work/time-$name-$run")" \
    "$before" "$after"
  rm -f "$work/explore.tar.gz"
}

# Every method once (run RUN) on the current set.
run_methods() {
  run_nkvm "$1" server
  run_nkvm "$1" source
  run_predecessor "$1"
  run_local pigz "$1" pigz "-$level"
  run_local nkvm-encoder "$1" "$pgzip" "-$level" "$threads"
  run_local gzip "$1" gzip "-$level"
}

# --- RSS baselines ---------------------------------------------------------------------------
timev "$work/time-help" -- "$nkvm" --help >/dev/null
rss_help="$(tv_field "$work/time-help" 'Maximum resident')"
timev "$work/time-tiny" -- "$nkvm" --data-dir "$work/tiny-data" --helper-image "$image" \
  backup "$ns/tiny" --gzip-level "$level" --compression server --output json >/dev/null 2>"$work/tiny.err" \
  || { cat "$work/tiny.err" >&2; exit 1; }
rss_tiny="$(tv_field "$work/time-tiny" 'Maximum resident')"
rm -rf "$work/tiny-data"

# --- runs ------------------------------------------------------------------------------------
use_set mix data "$src" "$src_bytes"
# Warm the page cache so that every method reads the volume from memory alike.
bench_warm "$src"
echo "--- mix: $runs round(s) of each method, interleaved" >&2
for ((i = 1; i <= runs; i++)); do
  run_methods "$i"
  if [[ $explore == 1 ]]; then
    [[ $i == 1 ]] && start_explore_pod
    run_exec exec-raw "$i" 'tar -cf - -C /data .' 'cat >/dev/null'
    run_exec helper-pigz "$i" "tar -cf - -C /data . | pigz -$level" \
      "tee \"$work/explore.tar.gz\" | tee >(sha256sum >/dev/null) | gzip -dc | tar -tf - >/dev/null"
  fi
done
[[ $explore == 1 ]] && "$K" delete pod -n "$ns" explore --wait=false >/dev/null

kind_args=()
if [[ $kinds == 1 ]]; then
  for kind in "${bench_kinds[@]}"; do
    use_set "$kind" "$kind" "${kind_dir[$kind]}" "${kind_bytes[$kind]}"
    bench_warm "${kind_dir[$kind]}"
    echo "--- kind $kind: each method once" >&2
    run_methods 1
    kind_args+=("$kind=${kind_bytes[$kind]}=${kind_files[$kind]}")
  done
fi

# --- report ----------------------------------------------------------------------------------
python3 - "$results" "$src_bytes" "$src_files" "$rss_help" "$rss_tiny" "$(nproc)" "${throttle:-none}" "$helper_cpu" "${kind_args[@]}" <<'PY'
import statistics, sys
path, src_bytes, src_files, rss_help, rss_tiny, cores, throttle, helper_cpu, *kinds = sys.argv[1:]
src_bytes, src_files, rss_help, rss_tiny = int(src_bytes), int(src_files), int(rss_help), int(rss_tiny)
kinds = [(k, int(b), int(f)) for k, b, f in (a.split("=") for a in kinds)]
rows = {}
for line in open(path):
    s, m, run, secs, ab, rss, selfcpu, before, after = line.rstrip("\n").split("\t")
    d = [float(a) - float(b) for a, b in zip(after.split(), before.split())]
    rows.setdefault(s, {}).setdefault(m, []).append(
        dict(secs=float(secs), ab=int(ab), rss=rss, self=selfcpu, d=d))
METHODS = ("nkvm-server", "nkvm-source", "predecessor", "pigz", "nkvm-encoder", "gzip", "exec-raw",
           "helper-pigz")
mix = rows["mix"]
med = {m: statistics.median(r["secs"] for r in rs) for m, rs in mix.items()}
print(f"source: {src_bytes / 2**30:.2f} GiB ({src_bytes} bytes) in {src_files} files; gzip level 6; "
      f"{cores} cores; API-server path throttled: {throttle}; helper CPU limit {helper_cpu}")
print()
print("mix:")
print()
print("| method | run | seconds | MB/s | archive MiB | own CPU s | apiserver CPU s | kubelet CPU s "
      "| containerd CPU s | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in METHODS:
    for i, r in enumerate(mix.get(m, []), 1):
        rss = f"{int(r['rss']) / 1024:.1f}" if r["rss"] != "-" else "-"
        own = f"{float(r['self']):.2f}" if r["self"] != "-" else "(in pod)"
        print(f"| {m} | {i} | {r['secs']:.2f} | {src_bytes / r['secs'] / 1e6:.1f} | {r['ab'] / 2**20:.1f} "
              f"| {own} | {r['d'][0]:.1f} | {r['d'][1]:.1f} | {r['d'][2]:.1f} | {rss} |")
print()
p, c, e = med["predecessor"], med["pigz"], med["nkvm-encoder"]
rss_base = rss_tiny
print(f"median seconds: nkvm-server {med['nkvm-server']:.2f}, nkvm-source {med['nkvm-source']:.2f}, "
      f"predecessor {p:.2f}, tar|pigz {c:.2f}, tar|nkvm-encoder {e:.2f}, tar|gzip {med['gzip']:.2f}")
for mode in ("nkvm-server", "nkvm-source"):
    n = med[mode]
    rss_peak = max(int(r["rss"]) for r in mix[mode])
    growth = (rss_peak - rss_base) / 1024
    print(f"{mode}: {p / n:.2f}x the predecessor (goal >= 2.5x) {'MET' if p / n >= 2.5 else 'MISSED'}; "
          f"{c / n:.2f}x tar|pigz (goal >= 0.9x) {'MET' if c / n >= 0.9 else 'MISSED'}; "
          f"{e / n:.2f}x tar|nkvm-encoder; {med['gzip'] / n:.2f}x tar|gzip; peak RSS "
          f"{rss_peak / 1024:.1f} MiB, growth vs tiny backup {growth:.1f} MiB (goal <= 64 MiB) "
          f"{'MET' if growth <= 64 else 'MISSED'}")
print(f"idle `nkvm --help` {rss_help / 1024:.1f} MiB, tiny backup {rss_tiny / 1024:.1f} MiB")
print(f"nkvm-source/nkvm-server seconds: {med['nkvm-source'] / med['nkvm-server']:.2f}; "
      f"tar|nkvm-encoder / tar|pigz seconds: {e / c:.2f}")
if kinds:
    print()
    print("per kind (one run each; x = the method's speed relative to the predecessor / local tar|pigz "
          "on the same kind):")
    print()
    print("| kind | source MB | files | method | seconds | MB/s | archive MiB | archive % of source "
          "| x predecessor | x tar\\|pigz | own CPU s | apiserver CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k, kb, kf in kinds:
        kr = {m: rs[0] for m, rs in rows.get(k, {}).items()}
        for m in METHODS:
            if m not in kr:
                continue
            r = kr[m]
            own = f"{float(r['self']):.2f}" if r["self"] != "-" else "(in pod)"
            print(f"| {k} | {kb / 1e6:.1f} | {kf} | {m} | {r['secs']:.2f} | {kb / r['secs'] / 1e6:.1f} "
                  f"| {r['ab'] / 2**20:.1f} | {100 * r['ab'] / kb:.1f} "
                  f"| {kr['predecessor']['secs'] / r['secs']:.2f} | {kr['pigz']['secs'] / r['secs']:.2f} "
                  f"| {own} | {r['d'][0]:.1f} |")
PY
