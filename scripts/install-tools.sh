#!/usr/bin/env bash
# Checks and installs, only when missing, what nkvm's builds and tests need (scripts/lib.sh `require`):
#   - Rust as rust-toolchain.toml pins it (rustup toolchain install: rustfmt, clippy, wasm32 target);
#   - wasm-bindgen-cli at exactly the version of the `wasm-bindgen` crate in Cargo.lock, cached in
#     $NKVM_CACHE_DIR/tools (installed without --locked: its lockfile pins a crate the mirror lacks);
#   - Node.js + npm (Debian's nodejs/npm when missing) and Debian's chromium, for Playwright.
# Stops with one message naming whatever is still missing, the version needed and how to get it.
# Every script checks its own prerequisites the same way; this one only does it ahead of time.
# Usage: scripts/install-tools.sh [ITEM...]   (default: rust wasm-bindgen node chromium; see lib.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
items=("$@")
((${#items[@]})) || items=(rust wasm-bindgen node chromium)
require "${items[@]}"
log "present: ${items[*]}"
