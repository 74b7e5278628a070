#!/usr/bin/env bash
# Destination benchmark on the local test cluster (numbers, not a pass/fail test): the same backup
# to local disk, to S3 (versitygw over HTTPS on loopback), to SFTP (sshd on loopback) and to FTPS
# (vsftpd on loopback), one run each, with the fixture of bench/backup.sh (bench/fixture.py:
# 1.14 GiB of mixed content). Refuses to run unless the local test cluster is up (end2end/cluster/up;
# NKVM_TEST_KUBECONFIG for one started from another checkout): it never touches another cluster.
#
# For each destination it measures `nkvm backup NS/data --destination D --output json` (release
# build, gzip level 6, default threads and part size) under /usr/bin/time -v: wall time, throughput
# (file bytes read / wall time), the ratio to the local run, and the process's peak RSS; the RSS
# growth is the peak RSS of that backup minus the peak RSS of a one-file backup to the same
# destination (what the 1.14 GiB costs on top of a process that backs up nothing). Goals (issue 15):
# S3 >= 0.9x the local throughput; RSS growth <= 64 MiB + the configured part buffers (3 x 64 MiB).
#
# The destination servers come from end2end/servers/up (started here and stopped at the end, unless
# NKVM_TEST_SERVERS_ENV names running ones). What a run stores at a server is removed afterwards.
#
# Usage: bench/destinations.sh [--keep] [--reuse NAMESPACE] [--only local,s3,sftp,ftps]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
keep=0
reuse=""
only="local,s3,sftp,ftps"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --keep) keep=1; shift ;;
    --reuse) reuse="$2"; keep=1; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "usage: $0 [--keep] [--reuse NS] [--only local,s3,sftp,ftps]" >&2; exit 2 ;;
  esac
done

NKVM_SCRIPT=bench-destinations
source scripts/lib.sh
# Only ever the local test cluster: refuses to run unless it is up (never the caller's kubeconfig).
use_test_cluster
K="$NKVM_KUBECTL"
require rust deb:time:/usr/bin/time deb:bc deb:python3

servers_started=0
if [[ -z "${NKVM_TEST_SERVERS_ENV:-}" ]]; then
  servers_started=1
  eval "$(end2end/servers/up | tail -n 1)"
fi
# shellcheck disable=SC1090
source "$NKVM_TEST_SERVERS_ENV"

source bench/fixture.sh
work="$(mktemp -d /tmp/nkvm-bench-destinations.XXXXXX)"
bench_nkvm "$work"
"$nkvm" destinations --help >/dev/null || die "$CARGO_TARGET_DIR/release/nkvm has no destinations command"
image=nkvm.local/helper:1
prefix="bench-$$"

ns="${reuse:-nkvm-bench-dest-$$}"
cleanup() {
  bench_drop_fixture "$ns" "$keep"
  # What the runs stored at the servers (their data directories are on this machine).
  rm -rf "${NKVM_TEST_S3_DATA_DIR:?}/$prefix" "${NKVM_TEST_SFTP_DATA_DIR:?}/$prefix" \
    "${NKVM_TEST_FTPS_DATA_DIR:?}/$prefix"
  rm -rf "$work"
  if [[ $servers_started == 1 ]]; then end2end/servers/down || true; fi
}
trap cleanup EXIT

# --- fixture: the volume of bench/backup.sh, and a one-file volume for the RSS baseline ---------
bench_fixture "$ns" "$reuse"

cat >"$work/destinations.yaml" <<YAML
destinations:
  - {name: s3, type: s3, endpoint: '$NKVM_TEST_S3_ENDPOINT', bucket: $NKVM_TEST_S3_BUCKET,
     prefix: '$prefix', path_style: true, access_key_id_file: '$NKVM_TEST_S3_ACCESS_KEY_ID_FILE',
     secret_access_key_file: '$NKVM_TEST_S3_SECRET_ACCESS_KEY_FILE', ca_file: '$NKVM_TEST_CA_FILE'}
  - {name: sftp, type: sftp, host: $NKVM_TEST_SFTP_HOST, port: $NKVM_TEST_SFTP_PORT,
     user: $NKVM_TEST_SFTP_USER, path: '/upload/$prefix', private_key_file: '$NKVM_TEST_SFTP_KEY_FILE',
     known_hosts_file: '$NKVM_TEST_SFTP_KNOWN_HOSTS'}
  - {name: ftps, type: ftps, host: $NKVM_TEST_FTPS_HOST, port: $NKVM_TEST_FTPS_PORT,
     user: $NKVM_TEST_FTPS_USER, path: '/upload/$prefix', password_file: '$NKVM_TEST_FTPS_PASSWORD_FILE',
     ca_file: '$NKVM_TEST_CA_FILE'}
YAML
"$nkvm" --destinations "$work/destinations.yaml" --data-dir "$work/check" destinations check >&2 ||
  die "a destination failed its check (above)"

# --- one backup per destination ------------------------------------------------------------
results="$work/results.tsv"
: >"$results"
# backup PVC DESTINATION TAG: prints "<seconds> <peak RSS KiB> <archive bytes>"
backup() {
  local pvc=$1 dest=$2 tag=$3 start end
  local data="$work/data-$tag"
  start=$(now)
  /usr/bin/time -v -o "$work/time-$tag" "$nkvm" --destinations "$work/destinations.yaml" \
    --data-dir "$data" --helper-image "$image" \
    backup "$ns/$pvc" --destination "$dest" --gzip-level 6 --output json >"$work/$tag.json" \
    2>"$work/$tag.err" || { cat "$work/$tag.err" "$work/$tag.json" >&2; die "backup $tag failed"; }
  end=$(now)
  local bytes
  bytes="$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))[0]; assert r["status"]=="succeeded", r; print(r["bytes"])' "$work/$tag.json")"
  echo "$(echo "$end - $start" | bc) $(tv_field "$work/time-$tag" 'Maximum resident') $bytes"
  rm -rf "$data"
}
IFS=, read -r -a chosen <<<"$only"
for dest in "${chosen[@]}"; do
  echo "--- $dest: one-file backup (RSS baseline), then the fixture" >&2
  read -r _ tiny_rss _ < <(backup tiny "$dest" "tiny-$dest")
  read -r secs rss abytes < <(backup data "$dest" "data-$dest")
  printf '%s\t%s\t%s\t%s\t%s\n' "$dest" "$secs" "$rss" "$tiny_rss" "$abytes" >>"$results"
  printf '  %-6s %7.2f s  %7.1f MB/s  peak RSS %s KiB (one-file backup: %s KiB)\n' "$dest" "$secs" \
    "$(echo "$src_bytes / $secs / 1000000" | bc -l)" "$rss" "$tiny_rss" >&2
done

# --- report ---------------------------------------------------------------------------------
python3 - "$results" "$src_bytes" "$src_files" "$(nproc)" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
src_bytes, src_files, cpus = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
MiB = 1 << 20
print(f"\nbackup of {src_bytes / MiB:.0f} MiB ({src_files} files), gzip -6, {cpus} CPUs, one run each")
print(f"{'destination':<12} {'seconds':>8} {'MB/s':>8} {'x local':>8} {'peak RSS':>10} {'RSS growth':>11} {'archive':>10}")
local = next((float(r[1]) for r in rows if r[0] == "local"), None)
for dest, secs, rss, tiny, abytes in rows:
    secs, rss, tiny = float(secs), int(rss), int(tiny)
    ratio = f"{local / secs:.2f}" if local else "-"
    print(f"{dest:<12} {secs:8.2f} {src_bytes / secs / 1e6:8.1f} {ratio:>8} "
          f"{rss / 1024:8.1f} MiB {(rss - tiny) / 1024:8.1f} MiB {int(abytes) / MiB:7.0f} MiB")
print("\ngoals: S3 >= 0.90x local throughput; RSS growth <= 64 MiB + 3 part buffers of 64 MiB "
      "(256 MiB) for S3")
PY
