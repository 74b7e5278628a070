#!/usr/bin/env bash
# Builds nkvm's web app without cargo-leptos and without downloading anything:
#   1. the browser crate (nkvm-frontend) for wasm32-unknown-unknown,
#   2. wasm-bindgen --target web  →  $SITE/pkg/nkvm.js + nkvm_bg.wasm,
#   3. style/*.css                →  $SITE/pkg/nkvm.css,
#   4. the server binary `nkvm` (nkvm-server), unless NKVM_SKIP_SERVER=1.
# Gzip copies (*.gz) are written next to the site files; the server sends them to browsers that
# accept gzip.
#
# Usage: scripts/build-web.sh [--release]
#   --release   wasm with the `wasm-release` profile (opt-level z, LTO) and then `wasm-opt -Oz`
#               (binaryen from npm, cached), server with `--release`. Default: debug builds.
#
# Build-time environment:
#   CARGO_TARGET_DIR   cargo's target directory (default: $NKVM_CACHE_DIR/cargo-target). SITE = $CARGO_TARGET_DIR/site
#   NKVM_SITE_DIR      write the site here instead of $CARGO_TARGET_DIR/site (deploy/image/build.sh)
#   NKVM_CACHE_DIR     caches, wasm-bindgen among them (default: $HOME/.cache/nkvm)
#   NKVM_SKIP_SERVER   set to 1 to build only the site (wasm, js, css)
#   LEPTOS_OUTPUT_NAME is deliberately NOT set (and is unset here): when `leptos` is compiled with it,
#                      the hydration script asks for `nkvm.wasm` (cargo-leptos' renamed file) instead
#                      of `nkvm_bg.wasm`, and flipping it rebuilds leptos and everything above it.
#                      The server sets the output name `nkvm` itself.
#
# Runtime environment of `nkvm serve`:
#   LEPTOS_SITE_ROOT   the site directory (holding pkg/). Default: `site` next to the binary, else
#                      `../site` from the binary's directory (so target/debug/nkvm finds
#                      target/site), else ./target/site.
#
# Prerequisites: checked first and installed when missing (scripts/lib.sh `require rust wasm-bindgen`).
set -euo pipefail

NKVM_SCRIPT=build-web
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NKVM_REPO"

profile_flag=()
wasm_profile=debug
server_profile=debug
case "${1:-}" in
  "") ;;
  --release)
    profile_flag=(--release)
    wasm_profile=wasm-release
    server_profile=release
    ;;
  *)
    echo "usage: $0 [--release]" >&2
    exit 2
    ;;
esac

# Rust (pinned by rust-toolchain.toml, with the wasm32 target) and wasm-bindgen at the exact version
# of the crate in Cargo.lock: installed when missing, else one message naming what is missing.
require rust wasm-bindgen deb:gzip
[[ "$wasm_profile" == debug ]] || require node binaryen
target_dir="$CARGO_TARGET_DIR"
site="${NKVM_SITE_DIR:-$target_dir/site}"
pkg="$site/pkg"
output_name=nkvm
unset LEPTOS_OUTPUT_NAME

log "wasm: cargo build -p nkvm-frontend ($wasm_profile)"
if [[ "$wasm_profile" == debug ]]; then
  cargo build -p nkvm-frontend --lib --target wasm32-unknown-unknown
else
  cargo build -p nkvm-frontend --lib --target wasm32-unknown-unknown --profile "$wasm_profile"
fi
wasm_in="$target_dir/wasm32-unknown-unknown/$wasm_profile/nkvm_frontend.wasm"

shopt -s nullglob
css_files=(style/*.css)
shopt -u nullglob
if ((${#css_files[@]} == 0)); then
  log "no stylesheet in style/"
  exit 1
fi
# The site is rebuilt only when its inputs changed (the wasm cargo wrote, the stylesheets, the
# wasm-bindgen version): a later run that changed nothing reuses it as it is.
stamp="$( (stat -c '%n %s %Y' "$wasm_in" "${css_files[@]}"; wasm-bindgen --version; echo "$wasm_profile") | sha256sum | cut -c1-32)"
if [[ -f "$pkg/${output_name}_bg.wasm.gz" && "$(cat "$pkg/.inputs" 2>/dev/null)" == "$stamp" ]]; then
  log "site in $pkg is up to date"
else
  log "wasm-bindgen → $pkg"
  mkdir -p "$pkg"
  rm -f "$pkg/.inputs" "$pkg/$output_name".* "$pkg/${output_name}_bg".*
  wasm-bindgen --target web --no-typescript --out-dir "$pkg" --out-name "$output_name" "$wasm_in"
  if [[ "$wasm_profile" != debug ]]; then
    # Size: wasm-opt -Oz (about a third of the bytes go; a minute of CPU). The features are those
    # rustc's wasm32 target emits by default.
    log "wasm-opt -Oz ($NKVM_WASM_OPT)"
    "$NKVM_WASM_OPT" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
      --enable-mutable-globals --enable-reference-types --enable-multivalue \
      "$pkg/${output_name}_bg.wasm" -o "$pkg/${output_name}_bg.opt.wasm"
    mv -f "$pkg/${output_name}_bg.opt.wasm" "$pkg/${output_name}_bg.wasm"
  fi
  # Also answer to cargo-leptos' file name, in case a server was compiled with LEPTOS_OUTPUT_NAME set.
  ln -f "$pkg/${output_name}_bg.wasm" "$pkg/$output_name.wasm"
  log "css → $pkg/$output_name.css"
  cat "${css_files[@]}" >"$pkg/$output_name.css"
  for file in "$pkg/$output_name.js" "$pkg/${output_name}_bg.wasm" "$pkg/$output_name.css"; do
    gzip -9 -n -k -f "$file"
  done
  echo "$stamp" >"$pkg/.inputs"
fi

raw=$(stat -c %s "$pkg/${output_name}_bg.wasm")
gz=$(stat -c %s "$pkg/${output_name}_bg.wasm.gz")
log "site: $site  (nkvm_bg.wasm: $raw bytes, gzip -9: $gz bytes)"

if [[ "${NKVM_SKIP_SERVER:-0}" != 1 ]]; then
  log "server: cargo build -p nkvm-server ($server_profile)"
  cargo build -p nkvm-server "${profile_flag[@]}"
  if [[ -n "${NKVM_SITE_DIR:-}" ]]; then
    log "binary: $target_dir/$server_profile/nkvm  (run it with LEPTOS_SITE_ROOT=$site)"
  else
    log "binary: $target_dir/$server_profile/nkvm  (finds $site by itself; or set LEPTOS_SITE_ROOT=$site)"
  fi
fi
