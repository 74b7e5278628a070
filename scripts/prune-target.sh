#!/usr/bin/env bash
# Drops build artifacts of nkvm's own crates (engine, app, server, frontend, ...) that are older than
# NKVM_PRUNE_MINUTES (default 720) from the shared cargo target directory. Cargo hashes a workspace
# crate's artifacts by the checkout's path, so every CI clone builds its own set and nothing ever
# reuses an old one; without this the directory grows by gigabytes per run. Dependencies are kept.
# Usage: scripts/prune-target.sh [TARGET_DIR]   (default: $CARGO_TARGET_DIR)
set -euo pipefail
target="${1:-${CARGO_TARGET_DIR:?set CARGO_TARGET_DIR or pass the target directory}}"
minutes="${NKVM_PRUNE_MINUTES:-720}"
[[ -d "$target" ]] || exit 0
freed=0
while IFS= read -r fingerprint; do
  # .fingerprint/<crate-name>-<hash>: the hash names the crate's files in deps/ and build/ too.
  profile_dir="$(dirname "$(dirname "$fingerprint")")"
  name="$(basename "$fingerprint")"
  hash="${name##*-}"
  [[ "$hash" =~ ^[0-9a-f]{16}$ ]] || continue
  for f in "$profile_dir"/deps/*-"$hash"* "$profile_dir"/deps/*-"$hash".* "$profile_dir"/build/*-"$hash"; do
    [[ -e "$f" ]] || continue
    freed=$((freed + $(du -sk "$f" | cut -f1)))
    rm -rf "$f"
  done
  rm -rf "$fingerprint"
done < <(find "$target" -mindepth 3 -maxdepth 4 -type d -path '*/.fingerprint/nkvm*' -mmin "+$minutes")
echo "prune-target: freed $((freed / 1024)) MiB of stale nkvm artifacts in $target" >&2
