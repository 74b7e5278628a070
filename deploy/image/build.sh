#!/usr/bin/env bash
# Builds the nkvm container image without Docker or a registry:
#   1. the web site in release mode (wasm, js, css) into $CARGO_TARGET_DIR/image/site,
#   2. a statically linked `nkvm` (glibc, `-C target-feature=+crt-static`, release),
#   3. a one-layer docker-archive with the binary, the site, /etc/passwd (uid 65532) and a CA bundle.
# The image runs `nkvm serve` as uid 65532 on 0.0.0.0:8080 with its data in /data.
#
# Usage: deploy/image/build.sh [IMAGE_REF]       (default: nkvm.local/nkvm:<workspace version>)
# Output: the path of the archive on stdout ($CARGO_TARGET_DIR/image/nkvm-image.tar). Load it with
#   ctr -n k8s.io images import FILE | docker load -i FILE | podman load -i FILE
# or push it with `skopeo copy docker-archive:FILE docker://REGISTRY/nkvm:TAG`.
# Prerequisites: scripts/install-tools.sh (wasm target, wasm-bindgen); python3; a CA bundle at
# /etc/ssl/certs/ca-certificates.crt (Debian's ca-certificates) or NKVM_CA_BUNDLE.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"
log() { printf 'image: %s\n' "$*" >&2; }

version="$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && /^version/ {print $2; exit}' Cargo.toml)"
ref="${1:-nkvm.local/nkvm:${version:-dev}}"
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
case "$target_dir" in /*) ;; *) target_dir="$repo_root/$target_dir" ;; esac
out_dir="$target_dir/image"
ca_bundle="${NKVM_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
[[ -f "$ca_bundle" ]] || { log "no CA bundle at $ca_bundle (install ca-certificates or set NKVM_CA_BUNDLE)"; exit 1; }
mkdir -p "$out_dir"

log "site (release) → $out_dir/site"
NKVM_SKIP_SERVER=1 NKVM_SITE_DIR="$out_dir/site" scripts/build-web.sh --release

triple=x86_64-unknown-linux-gnu
log "static server: cargo build --release --target $triple (crt-static)"
# With an explicit --target, RUSTFLAGS reach only the target's code: build scripts and proc macros
# stay dynamic, as they must.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --release --locked --target "$triple" -p nkvm-server
built="$target_dir/$triple/release/nkvm"
if readelf -l "$built" | grep -q INTERP || readelf -d "$built" | grep -q NEEDED; then
  log "$built is dynamically linked; expected a static binary"
  exit 1
fi
binary="$out_dir/nkvm"
strip -o "$binary" "$built"

python3 deploy/image/image.py "$binary" "$out_dir/site" "$ca_bundle" "$out_dir/nkvm-image.tar" "$ref" >&2
echo "$out_dir/nkvm-image.tar"
