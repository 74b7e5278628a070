#!/usr/bin/env bash
# Builds and runs nkvm's web app on http://127.0.0.1:8080 (NKVM_LISTEN overrides).
#
#   scripts/run.sh [ARGS]        on the current kubeconfig (NKVM_KUBECONFIG, else $KUBECONFIG, else
#                                ~/.kube/config; its current context, or NKVM_CONTEXT), history in
#                                ./nkvm-data. When there is no kubeconfig, or its API server does not
#                                answer, it says so and offers the demo (asks when run in a terminal).
#   scripts/run.sh --demo [ARGS] starts this repository's local single-node Kubernetes
#                                (end2end/cluster/up; the first time it builds Kubernetes, ~20 min),
#                                seeds demo workloads with data (scripts/demo-seed.sh), and runs nkvm on
#                                it with the cluster's helper image; history in ./nkvm-demo-data.
#   scripts/run.sh --demo-down   stops the demo cluster (end2end/cluster/down); ./nkvm-demo-data stays.
# ARGS go to `nkvm serve`. Ctrl-C stops the app (the demo cluster keeps running until --demo-down).
#
# The app is built for use: a release server and a release wasm (`scripts/build-web.sh --release`: the
# `wasm-release` profile, opt-level z + LTO, then `wasm-opt -Oz` from npm's binaryen: Debian's binaryen
# is too old and its output does not hydrate). Later runs reuse the build (cargo and the site are only rebuilt when
# the sources changed). Prerequisites are checked first and installed when possible (scripts/lib.sh).
# Login: unless users are configured (NKVM_USERS_FILE, or NKVM_ADMIN_USER + NKVM_ADMIN_PASSWORD_HASH),
# the first run creates <data dir>/users.yaml with one admin, `admin`, and a random password that it
# prints and keeps in <data dir>/initial-admin-password (both readable by you only).
set -euo pipefail
NKVM_SCRIPT=run
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NKVM_REPO"
listen="${NKVM_LISTEN:-127.0.0.1:8080}"
demo_data=./nkvm-demo-data

# --- the current kubeconfig -----------------------------------------------------------------------
kubeconfig_files() {
  local list="${NKVM_KUBECONFIG:-${KUBECONFIG:-$HOME/.kube/config}}" file
  local IFS=:
  for file in $list; do [[ -n "$file" && -f "$file" ]] && printf '%s\n' "$file"; done
}

# The API server of the kubeconfig's context (kubectl's merge rules: the first file that names a
# context or cluster wins); on failure prints why and returns non-zero.
api_server_of() {
  "$NKVM_PYTHON_YAML" - "$@" <<'PY'
import os, sys, yaml
docs = []
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            docs.append(yaml.safe_load(f) or {})
    except Exception as err:  # unreadable or not YAML
        print(f"{path} cannot be read: {err}")
        sys.exit(1)
name = os.environ.get("NKVM_CONTEXT") or next((d.get("current-context") for d in docs if d.get("current-context")), None)
if not name:
    print("the kubeconfig has no current context")
    sys.exit(1)
def find(key, wanted):
    return next((i for d in docs for i in (d.get(key) or []) if isinstance(i, dict) and i.get("name") == wanted), None)
context = find("contexts", name)
cluster = context and find("clusters", (context.get("context") or {}).get("cluster"))
server = cluster and (cluster.get("cluster") or {}).get("server")
if not server:
    print(f"context {name!r} names no cluster with a server")
    sys.exit(1)
print(server)
PY
}

# Offers the demo when there is no cluster to show; asks when run in a terminal.
no_cluster() {
  log "no reachable cluster: $1"
  cat >&2 <<EOF

nkvm lists and backs up the PVCs of a Kubernetes cluster, and there is none to talk to.
Try it on a local single-node cluster that this repository builds and starts, with demo workloads
and data in their volumes (the first start builds Kubernetes from source, about 20 minutes):

    scripts/run.sh --demo          (stop it later with: scripts/run.sh --demo-down)

EOF
  if [[ -t 0 && -t 2 ]]; then
    local answer=""
    read -r -p "Start the local demo now? [y/N] " answer || true
    [[ "$answer" == [yY]* ]] && exec "$0" --demo "${serve_args[@]}"
  fi
  exit 1
}

check_current_cluster() {
  [[ "${NKVM_IN_CLUSTER:-false}" == true ]] && return 0
  local files server
  mapfile -t files < <(kubeconfig_files)
  if ((${#files[@]} == 0)); then
    no_cluster "no kubeconfig (${NKVM_KUBECONFIG:-${KUBECONFIG:-$HOME/.kube/config}} does not exist)"
  fi
  server="$(api_server_of "${files[@]}")" || no_cluster "$server (${files[*]})"
  # Any HTTP answer (even 401/403) means the API server is there; no answer within 5 s means it is not.
  local error
  if ! error="$(curl -sS -k --max-time 5 -o /dev/null "$server/version" 2>&1)"; then
    no_cluster "the API server $server does not answer (${error//$'\n'/ }; kubeconfig ${files[*]})"
  fi
  log "cluster: $server (kubeconfig ${files[*]})"
}

# --- build, login, serve ---------------------------------------------------------------------------
# A release site of its own (the debug one in $CARGO_TARGET_DIR/site belongs to the test scripts).
build_app() {
  NKVM_SITE_DIR="$CARGO_TARGET_DIR/site-release" scripts/build-web.sh --release
  nkvm="$CARGO_TARGET_DIR/release/nkvm"
  export LEPTOS_SITE_ROOT="$CARGO_TARGET_DIR/site-release"
}

# login DATA_DIR [quiet]: users file arguments in users_args; creates the first admin when there is
# none and prints its password (unless quiet: the demo prints it with the URL).
login() {
  local data_dir="$1" quiet="${2:-}" users_file="$1/users.yaml" password
  users_args=()
  [[ -n "${NKVM_USERS_FILE:-}" || -n "${NKVM_ADMIN_USER:-}" ]] && return 0
  if [[ ! -f "$users_file" ]]; then
    (
      umask 077
      mkdir -p "$data_dir"
      password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      hash="$(printf '%s\n' "$password" | "$nkvm" hash-password)"
      printf 'users:\n- {name: admin, role: admin, password_hash: "%s"}\n' "$hash" >"$users_file"
      printf '%s\n' "$password" >"$data_dir/initial-admin-password"
      [[ -n "$quiet" ]] ||
        printf '\nFirst run: log in as "admin" with password %s\n(also in %s; delete that file once you have stored it)\n\n' \
          "$password" "$data_dir/initial-admin-password" >&2
    )
  fi
  users_args=(--users-file "$users_file")
}

serve_args=("$@")
[[ "${1:-}" == --demo || "${1:-}" == --demo-down ]] && serve_args=("${@:2}")
case "${1:-}" in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    ;;
  --demo-down)
    if [[ -n "${NKVM_TEST_KUBECONFIG:-}" ]]; then
      # A cluster started from another checkout is not ours to stop: remove only the demo's namespaces.
      use_test_cluster
      prefix="${NKVM_DEMO_PREFIX:-demo-}"
      log "removing the namespaces ${prefix}shop and ${prefix}analytics (the cluster of $NKVM_TEST_KUBECONFIG keeps running)"
      k delete namespace "${prefix}shop" "${prefix}analytics" --ignore-not-found --wait=true --timeout=180s >&2
    elif cluster_is_ours; then
      require root
      end2end/cluster/down
    else
      die "the test cluster running here was not started from this checkout ($(cat /run/nkvm-cluster.state 2>/dev/null || echo 'none runs')); stop it from its own checkout, or set NKVM_TEST_KUBECONFIG to its kubeconfig to remove only the demo namespaces"
    fi
    log "demo stopped; its history and archives stay in $demo_data"
    ;;
  --demo)
    require rust wasm-bindgen deb:curl
    require_cluster_prereqs
    use_test_cluster --start
    build_app
    scripts/demo-seed.sh
    login "$demo_data" quiet
    export NKVM_HELPER_IMAGE=nkvm.local/helper:1
    prefix="${NKVM_DEMO_PREFIX:-demo-}"
    "$nkvm" --data-dir "$demo_data" inventory -n "${prefix}shop" -n "${prefix}analytics" >&2
    password="$(cat "$demo_data/initial-admin-password" 2>/dev/null || true)"
    cat >&2 <<EOF

nkvm demo: http://$listen
  log in as "admin"${password:+ with password $password} (kept in $demo_data/initial-admin-password)
  the cluster: KUBECONFIG=$KUBECONFIG, kubectl at $NKVM_KUBECTL
  Ctrl-C stops the app; scripts/run.sh --demo-down stops the cluster.

EOF
    exec "$nkvm" --data-dir "$demo_data" serve --listen "$listen" "${users_args[@]}" "${serve_args[@]}"
    ;;
  *)
    require pyyaml deb:curl
    check_current_cluster
    require rust wasm-bindgen
    build_app
    data_dir="${NKVM_DATA_DIR:-./nkvm-data}"
    login "$data_dir"
    log "nkvm: http://$listen (Ctrl-C stops it)"
    exec "$nkvm" --data-dir "$data_dir" serve --listen "$listen" "${users_args[@]}" "${serve_args[@]}"
    ;;
esac
