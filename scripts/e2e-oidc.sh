#!/usr/bin/env bash
# OIDC end-to-end test with a real OpenID provider: builds zitadel/oidc's example provider
# (end2end/oidc/build-idp.sh, cached) and the web app (scripts/build-web.sh, debug), starts the
# provider on 127.0.0.1 (issuer http://localhost:<port>/, a different site than nkvm's
# 127.0.0.1, so the cross-site return from the provider is exercised) and `nkvm serve --auth oidc`
# with client `web` and a users file that maps only test-user@localhost (operator), then runs the
# Playwright projects oidc-hydrated and oidc-no-js (tests/oidc.spec.ts, NKVM_E2E_OIDC=1).
#
# The login flow needs no cluster, but `nkvm serve` connects at start-up: the kubeconfig is
# $NKVM_TEST_KUBECONFIG, else <repo>/.cluster/kubeconfig (the test cluster is never started or
# stopped here), else a placeholder pointing at an unused local port — never the user's kubeconfig.
# Logs: end2end/oidc-idp.log, end2end/oidc-server.log. Extra arguments go to `playwright test`.
set -euo pipefail
NKVM_SCRIPT=e2e-oidc
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$NKVM_REPO/scripts/e2e-lib.sh"
repo="$NKVM_REPO"
cd "$repo"
unset NKVM_CONTEXT NKVM_IN_CLUSTER
e2e_prepare_browser
[[ -x "$NKVM_CACHE_DIR/oidc-idp-$(awk '$1 == "require" && $2 == "github.com/zitadel/oidc/v3" {print $3}' end2end/oidc/idp/go.mod)/oidc-idp" ]] ||
  require "go:$(awk '$1 == "go" {print $2}' end2end/oidc/idp/go.mod)"

idp_bin="$(end2end/oidc/build-idp.sh)"
[[ "${NKVM_E2E_SKIP_BUILD:-}" == 1 ]] || scripts/build-web.sh

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="${NKVM_E2E_PORT:-$(free_port)}"
idp_port="${NKVM_E2E_IDP_PORT:-$(free_port)}"
[[ "$port" != "$idp_port" ]] || idp_port="$(free_port)"

work="$(mktemp -d)"
idp_pid=""
server_pid=""
cleanup() {
  for pid in "$server_pid" "$idp_pid"; do
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A private copy of the binary and its site: the cargo target directory is shared with other builds.
cp "$CARGO_TARGET_DIR/debug/nkvm" "$work/nkvm"
cp -r "$CARGO_TARGET_DIR/site" "$work/site"

kubeconfig="${NKVM_TEST_KUBECONFIG:-}"
[[ -z "$kubeconfig" && -f "$repo/.cluster/kubeconfig" ]] && kubeconfig="$repo/.cluster/kubeconfig"
if [[ -z "$kubeconfig" ]]; then
  kubeconfig="$work/kubeconfig"
  log "no test cluster kubeconfig: using a placeholder (the login flow does not need the cluster)"
  (umask 077; cat >"$kubeconfig" <<'KUBECONFIG'
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
users: [{name: none, user: {token: placeholder}}]
KUBECONFIG
  )
fi

issuer="http://localhost:$idp_port/"
callback="http://127.0.0.1:$port/auth/oidc/callback"
PORT="$idp_port" REDIRECT_URI="$callback" "$idp_bin" >"$repo/end2end/oidc-idp.log" 2>&1 &
idp_pid=$!
wait_http "${issuer}.well-known/openid-configuration" "$idp_pid" "$repo/end2end/oidc-idp.log"
log "provider: $issuer"

# Roles only (no password hashes): test-user@localhost is an operator, test-user2 has no role.
(umask 077
 printf 'users:\n- {name: test-user@localhost, role: operator}\n' >"$work/users.yaml"
 printf 'secret\n' >"$work/client-secret")
mkdir -p "$work/data"
RUST_LOG="${RUST_LOG:-info}" "$work/nkvm" --kubeconfig "$kubeconfig" --data-dir "$work/data" serve \
  --listen "127.0.0.1:$port" --auth oidc --oidc-issuer "$issuer" --oidc-client-id web \
  --oidc-client-secret-file "$work/client-secret" --oidc-redirect-url "$callback" \
  --users-file "$work/users.yaml" >"$repo/end2end/oidc-server.log" 2>&1 &
server_pid=$!
wait_http "http://127.0.0.1:$port/healthz" "$server_pid" "$repo/end2end/oidc-server.log"
log "nkvm: http://127.0.0.1:$port"

status=0
(cd end2end && NKVM_E2E_OIDC=1 NKVM_E2E_URL="http://127.0.0.1:$port" \
  NKVM_E2E_OIDC_ISSUER_HOST="localhost:$idp_port" npx playwright test "$@") || status=$?

# Whatever the outcome: nkvm's log must not hold a code, a state or the client secret's value.
if grep -E 'code=|state=|[^_]secret[^ _-]' "$repo/end2end/oidc-server.log" >&2; then
  log "nkvm's log holds a code, a state or the client secret (lines above)"
  status=1
fi
exit "$status"
