#!/usr/bin/env bash
# Runs every check and test of nkvm on a fresh machine: installs what is missing, builds (or reuses
# the cached) test cluster, starts it, then runs fmt, clippy, unit and integration tests, the cluster
# smoke test, the browser end-to-end suite, the in-cluster deployment test and the OIDC login test.
# Stops the cluster at the end (also on failure) unless it was already running before, or
# NKVM_KEEP_CLUSTER=1.
# Caches live outside the clone: NKVM_CACHE_DIR (default ~/.cache/nkvm) holds the Kubernetes binaries,
# images, tools and the cargo target directory (CARGO_TARGET_DIR defaults to $NKVM_CACHE_DIR/cargo-target).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export NKVM_CACHE_DIR="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NKVM_CACHE_DIR/cargo-target}"
export CARGO_TERM_COLOR=never
# Every CI run builds a fresh clone at a new path: incremental data would never be reused and only
# fills the shared target directory (tens of GB over a few runs).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
mkdir -p "$NKVM_CACHE_DIR"
# Artifacts of nkvm's own crates built by earlier clones are never reused: drop them (older than 12 h).
scripts/prune-target.sh "$CARGO_TARGET_DIR"
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }

was_running=0
end2end/cluster/status >/dev/null 2>&1 && was_running=1
stop_cluster() {
  local rc=$?
  if [[ $was_running -eq 0 && "${NKVM_KEEP_CLUSTER:-0}" != 1 ]]; then
    step "stopping the test cluster"
    end2end/cluster/down || true
  fi
  exit $rc
}
trap stop_cluster EXIT

step "tools"
eval "$(scripts/install-tools.sh | tail -n 1)"

# The cluster build (Go) and the first cargo build are the long poles; the cluster comes up first.
step "test cluster"
end2end/cluster/up
export KUBECONFIG="$repo/.cluster/kubeconfig"
export NKVM_TEST_KUBECONFIG="$KUBECONFIG"

results="$(mktemp -d)"
step "cluster smoke test"
end2end/cluster/smoke.sh | tee "$results/smoke.log"

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and integration tests"
# The server binary is tested on its own, as it is built for production: a workspace build unifies
# the browser-only `hydrate` feature into the app crate, which changes how Leptos runs on the server.
(
  status=0
  cargo test --workspace --exclude nkvm-server --locked --no-fail-fast || status=1
  cargo test -p nkvm-server --locked --no-fail-fast || status=1
  # Real-cluster tests marked `#[ignore = "needs the test cluster"]` (a bare `cargo test` skips them).
  cargo test -p nkvm-engine --locked --no-fail-fast --test restore_cluster \
    --test restore_refusals_cluster -- --ignored || status=1
  cargo test -p nkvm-server --locked --no-fail-fast --test restore_cli -- --ignored || status=1
  exit "$status"
) 2>&1 | tee "$results/cargo.log"

step "browser end-to-end tests"
scripts/e2e.sh 2>&1 | tee "$results/e2e.log"

step "in-cluster deployment tests"
scripts/e2e-deploy.sh 2>&1 | tee "$results/deploy.log"

step "OIDC end-to-end tests"
NKVM_E2E_SKIP_BUILD=1 scripts/e2e-oidc.sh 2>&1 | tee "$results/oidc.log"

# One closing line over every suite: cargo's per-binary results, the smoke test, Playwright.
passed=0
failed=0
while read -r p f; do passed=$((passed + p)); failed=$((failed + f)); done < <(
  sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$results/cargo.log"
  sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$results/smoke.log"
  sed -n 's/^ *\([0-9]*\) passed (.*/\1 0/p' "$results/e2e.log" "$results/deploy.log" "$results/oidc.log"
  sed -n 's/^ *\([0-9]*\) failed$/0 \1/p' "$results/e2e.log" "$results/deploy.log" "$results/oidc.log"
)
step "summary"
echo "$passed passed, $failed failed"
