#!/usr/bin/env bash
# Builds nkvm's helper image (BusyBox + GNU tar + pigz, no Docker, no registry) as a docker-archive.
#
# Usage: deploy/image/build-helper.sh [IMAGE_REF]   (default: nkvm.local/nkvm-helper:<workspace version>)
# Output: the path of the archive on stdout ($CARGO_TARGET_DIR/image/nkvm-helper-image.tar).
# Push it and print the digest to pin (docs/deploy.md, "The helper image"):
#   skopeo copy --digestfile helper.digest docker-archive:FILE docker://REGISTRY/nkvm-helper:TAG
#   cat helper.digest                      # sha256:…, the digest of the manifest in REGISTRY
# Prerequisites (Debian): python3, busybox-static, tar, pigz.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

version="$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version/ {print $2; exit}' Cargo.toml)"
ref="${1:-nkvm.local/nkvm-helper:${version:-dev}}"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo_root/$target_dir" ;; esac
out="$target_dir/image/nkvm-helper-image.tar"
mkdir -p "$(dirname "$out")"
[[ -x /bin/busybox ]] || { echo "build-helper: /bin/busybox is missing (apt-get install busybox-static)" >&2; exit 1; }
python3 deploy/image/helper.py "$out" "$ref" >&2
echo "$out"
