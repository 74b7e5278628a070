#!/usr/bin/env bash
# Builds (or reuses from the cache outside the clone) versitygw, the S3 server of the destination tests.
# Usage: build-versitygw.sh  -> prints the path of the versitygw binary.
# Built from the Go module proxy (github.com/versity/versitygw), CGO off, cached in
# ~/.cache/nkvm/versitygw-<version>/ (NKVM_CACHE_DIR moves it). Cold build: several minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
dir="$cache/versitygw-$VERSITYGW_VERSION"
if [[ -x "$dir/versitygw" ]]; then echo "$dir/versitygw"; exit 0; fi

log() { echo "[build-versitygw] $*" >&2; }
command -v go >/dev/null || { log "go is required to build versitygw (install Go >= 1.24 from go.dev or Debian backports)"; exit 1; }
export GOFLAGS="-mod=mod" CGO_ENABLED=0 GOTOOLCHAIN=local
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
printf 'module nkvm.local/versitygwbuild\ngo 1.24\nrequire github.com/versity/versitygw %s\n' "$VERSITYGW_VERSION" >go.mod
log "building versitygw $VERSITYGW_VERSION (cold: several minutes on 2 cores)"
go mod download github.com/versity/versitygw
go mod tidy >/dev/null 2>&1 || true
go build -trimpath -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" -o "$tmp/versitygw" github.com/versity/versitygw/cmd/versitygw
mkdir -p "$dir"
install -m 0755 "$tmp/versitygw" "$dir/versitygw"
log "versitygw cached in $dir"
echo "$dir/versitygw"
