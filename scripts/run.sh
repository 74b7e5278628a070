#!/usr/bin/env bash
# Sets up and runs nkvm's web app on the current kubeconfig ($KUBECONFIG or ~/.kube/config, its current
# context) with the embedded SQLite database in ./nkvm-data. Installs the build tools when missing
# (cached in ~/.cache/nkvm), builds the wasm site and the `nkvm` binary, then serves on
# http://127.0.0.1:8080 (override with NKVM_LISTEN). Extra arguments go to `nkvm serve`.
# Login: unless users are configured (NKVM_USERS_FILE, or NKVM_ADMIN_USER + NKVM_ADMIN_PASSWORD_HASH),
# the first run creates ./nkvm-data/users.yaml with one admin, `admin`, and a random password that it
# prints once and keeps in ./nkvm-data/initial-admin-password (both readable by you only).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export NKVM_CACHE_DIR="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NKVM_CACHE_DIR/cargo-target}"
eval "$(scripts/install-tools.sh | tail -n 1)"
scripts/build-web.sh
nkvm="$CARGO_TARGET_DIR/debug/nkvm"
data_dir="${NKVM_DATA_DIR:-./nkvm-data}"
users_args=()
if [[ -z "${NKVM_USERS_FILE:-}" && -z "${NKVM_ADMIN_USER:-}" ]]; then
  users_file="$data_dir/users.yaml"
  if [[ ! -f "$users_file" ]]; then
    (
      umask 077
      mkdir -p "$data_dir"
      password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      hash="$(printf '%s\n' "$password" | "$nkvm" hash-password)"
      printf 'users:\n- {name: admin, role: admin, password_hash: "%s"}\n' "$hash" >"$users_file"
      printf '%s\n' "$password" >"$data_dir/initial-admin-password"
      printf '\nFirst run: log in as "admin" with password %s\n(also in %s; delete that file once you have stored it)\n\n' \
        "$password" "$data_dir/initial-admin-password" >&2
    )
  fi
  users_args=(--users-file "$users_file")
fi
exec "$nkvm" --data-dir "$data_dir" serve --listen "${NKVM_LISTEN:-127.0.0.1:8080}" "${users_args[@]}" "$@"
