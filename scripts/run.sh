#!/usr/bin/env bash
# Sets up and runs nkvm's web app on the current kubeconfig ($KUBECONFIG or ~/.kube/config, its current
# context) with the embedded SQLite database in ./nkvm-data. Installs the build tools when missing
# (cached in ~/.cache/nkvm), builds the wasm site and the `nkvm` binary, then serves on
# http://127.0.0.1:8080 (override with NKVM_LISTEN). Extra arguments go to `nkvm serve`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export NKVM_CACHE_DIR="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NKVM_CACHE_DIR/cargo-target}"
eval "$(scripts/install-tools.sh | tail -n 1)"
scripts/build-web.sh
exec "$CARGO_TARGET_DIR/debug/nkvm" serve --listen "${NKVM_LISTEN:-127.0.0.1:8080}" "$@"
