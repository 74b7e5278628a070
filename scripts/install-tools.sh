#!/usr/bin/env bash
# Installs, only when missing, the build tools nkvm's web build needs (no cargo-leptos):
#   - the rustup target wasm32-unknown-unknown;
#   - wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock.
# Tools are cached under $NKVM_CACHE_DIR/tools (default: $HOME/.cache/nkvm/tools) so CI can keep them.
# Prints the PATH addition on stdout as its last line (`export PATH=...`), so callers can
#   eval "$(scripts/install-tools.sh | tail -n 1)"
# Environment:
#   NKVM_CACHE_DIR   cache root (default $HOME/.cache/nkvm)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"

log() { printf 'install-tools: %s\n' "$*" >&2; }

# The CLI must match the crate exactly, or wasm-bindgen refuses the module's schema.
wb_version="$(awk '
  $0 == "name = \"wasm-bindgen\"" { found = 1; next }
  found && /^version = / { gsub(/"/, "", $3); print $3; exit }
' "$repo_root/Cargo.lock")"
if [[ -z "$wb_version" ]]; then
  log "cannot find the wasm-bindgen version in $repo_root/Cargo.lock (run 'cargo generate-lockfile' first)"
  exit 1
fi

if rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "rustup target wasm32-unknown-unknown: present"
else
  log "adding rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >&2
fi

wb_root="$cache_dir/tools/wasm-bindgen-$wb_version"
wb_bin="$wb_root/bin/wasm-bindgen"
if [[ -x "$wb_bin" ]] && "$wb_bin" --version 2>/dev/null | grep -qF " $wb_version"; then
  log "wasm-bindgen $wb_version: present at $wb_bin"
else
  log "installing wasm-bindgen-cli $wb_version into $wb_root (about 4 min on 2 cores)"
  # Deliberately without --locked: the CLI's own lockfile pins a crate the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "=$wb_version" --root "$wb_root" >&2
fi

echo "export PATH=\"$wb_root/bin:\$PATH\""
