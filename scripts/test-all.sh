#!/usr/bin/env bash
# Runs every check and test of nkvm on a fresh machine: checks and installs the prerequisites (one
# message naming whatever cannot be installed), builds (or reuses the cached) test cluster and starts
# it, then runs each suite — the cluster smoke test, fmt, clippy, doc, cargo deny, the Rust tests
# (the workspace's instrumented for engine line coverage, then the server's), the browser end-to-end
# suite, the Helm chart check, the in-cluster deployment test (through a real ingress controller,
# installed with kustomize and with Helm) and the OIDC login test — every one of them even when an earlier one
# failed, and closes with a summary per suite and one line `total: N passed, N failed, N skipped`.
# Exits non-zero when anything failed.
# NKVM_SUITES=fmt,clippy,... runs only those suites (names as in the summary); CI runs them all.
# Stops the cluster at the end (also on failure) unless it was already running before, or
# NKVM_KEEP_CLUSTER=1. With NKVM_TEST_KUBECONFIG it uses (and never stops) the test cluster that
# kubeconfig belongs to, started from another checkout.
# Caches live outside the clone: NKVM_CACHE_DIR (default ~/.cache/nkvm) holds the Kubernetes binaries,
# images, tools, the ingress controller and Helm (by version) and the cargo target directory (CARGO_TARGET_DIR defaults to $NKVM_CACHE_DIR/cargo-target).
set -uo pipefail
NKVM_SCRIPT=test-all
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NKVM_REPO"
export CARGO_TERM_COLOR=never
# Every CI run builds a fresh clone at a new path: incremental data would never be reused and only
# fills the shared target directory (tens of GB over a few runs).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Playwright: `test.only` fails the run, and a spec whose environment is missing fails (end2end/tests/env.ts).
export NKVM_E2E_STRICT=1
step() { printf '\n=== %s (%s)\n' "$*" "$(date +%H:%M:%S)"; }
mkdir -p "$NKVM_CACHE_DIR"
# Artifacts of nkvm's own crates built by earlier clones are never reused: drop them (older than 12 h).
scripts/prune-target.sh "$CARGO_TARGET_DIR"

step "prerequisites"
items=(rust wasm-bindgen cargo-llvm-cov cargo-deny node chromium deb:python3 deb:curl)
# The schedules' end-to-end test (server/tests/schedule_serve.rs) runs a real scraper and receiver.
items+=(deb:prometheus deb:webhook)
# The docs' command blocks (server/tests/docs_commands.rs) use jq, as the tutorial does.
items+=(deb:jq)
cluster_binaries_cached || items+=(root go:1.25)
# Go builds the OIDC suite's provider too (cached in $NKVM_CACHE_DIR/oidc-idp-<version>).
compgen -G "$NKVM_CACHE_DIR/oidc-idp-*/oidc-idp" >/dev/null ||
  items+=("go:$(awk '$1 == "go" {print $2}' end2end/oidc/idp/go.mod)")
# The deployment suite's ingress controller (Traefik) and the Helm client, built by Go once per
# version (end2end/ingress/build.sh); Chromium trusts the Ingress's test CA through certutil.
source end2end/ingress/versions.env
[[ -x "$NKVM_CACHE_DIR/traefik-$TRAEFIK_VERSION/traefik" && -x "$NKVM_CACHE_DIR/helm-$HELM_VERSION/helm" ]] ||
  items+=(go:1.25)
items+=(pyyaml deb:openssl deb:iptables deb:util-linux:setpriv deb:socat deb:libnss3-tools:certutil)
require "${items[@]}"

was_running=1
if [[ -z "${NKVM_TEST_KUBECONFIG:-}" ]]; then
  was_running=0
  end2end/cluster/status >/dev/null 2>&1 && was_running=1
fi
cluster_stopped=0
stop_cluster() {
  ((cluster_stopped)) && return 0
  cluster_stopped=1
  # Only a cluster this run started from this checkout (end2end/cluster/down from another checkout
  # would break the cluster that runs).
  if [[ $was_running -eq 0 && "${NKVM_KEEP_CLUSTER:-0}" != 1 ]] && cluster_is_ours; then
    step "stopping the test cluster"
    end2end/cluster/down || true
  fi
}
servers_started=0
prebuild_pid=""
on_exit() {
  local rc=$?
  [[ -n "$prebuild_pid" ]] && kill "$prebuild_pid" 2>/dev/null
  ((servers_started)) && end2end/servers/down >/dev/null 2>&1
  stop_cluster
  rm -rf "${results:-}"
  exit $rc
}
trap on_exit EXIT

wanted() { [[ -z "${NKVM_SUITES:-}" || ",${NKVM_SUITES// /,}," == *",$1,"* ]]; }

# The cluster build (Go) and the first cargo build are the long poles; the cluster comes up first.
# When it cannot be started, nothing below could run honestly: stop with the cluster's error.
if wanted cluster-smoke || wanted rust || wanted server || wanted e2e || wanted deploy || wanted oidc; then
  step "test cluster"
  use_test_cluster --start
fi

# The destination tests write to real servers on loopback (S3, SFTP, FTPS), started here and stopped
# at the end; a server that cannot start makes those tests fail (they never skip).
if wanted rust || wanted server; then
  step "test servers"
  if end2end/servers/up; then
    servers_started=1
    export NKVM_TEST_SERVERS_ENV="$NKVM_REPO/.servers/env"
  fi
fi

results="$(mktemp -d)"
suites=()

# Traefik, the deployment suite's ingress controller, is a cold Go build of about 5.5 minutes (once
# per machine and version). When it is not cached, it builds in the background while the suites
# before `deploy` run, on one thread and at low priority, so it takes the time those suites spend
# waiting on the cluster and the browser rather than their CPU. The deploy suite waits for it.
if wanted deploy; then
  GOMAXPROCS=1 nice -n 10 end2end/ingress/build.sh traefik >"$results/prebuild-traefik.log" 2>&1 &
  prebuild_pid=$!
fi
# A suite runs in a pipeline's subshell, where `wait` cannot wait for the main shell's child: the
# build is awaited by polling. Had it failed, e2e-deploy.sh builds Traefik again in the foreground
# and stops with that build's error.
deploy_suite() {
  if [[ -n "$prebuild_pid" ]]; then
    while kill -0 "$prebuild_pid" 2>/dev/null; do sleep 5; done
    cat "$results/prebuild-traefik.log"
  fi
  NKVM_E2E_JSON="$results/deploy.json" scripts/e2e-deploy.sh
}
declare -A rc seconds
# suite NAME COMMAND...: runs one suite, its output also in $results/NAME.log; records its exit status.
suite() {
  local name="$1" start=$SECONDS
  shift
  wanted "$name" || return 0
  step "$name"
  suites+=("$name")
  "$@" 2>&1 | tee "$results/$name.log"
  rc[$name]=${PIPESTATUS[0]}
  seconds[$name]=$((SECONDS - start))
}

# Rust tests: the tests that need the cluster are marked #[ignore = "needs the test cluster"], so a plain
# `cargo test` skips them; the cluster is up here, so they run (--include-ignored), and the summary
# says how many of them there were.
# has_doc_tests DIR...: true when a doc comment opens a Rust code block (``` or ```rust, no_run, ...).
has_doc_tests() {
  find "$@" -name '*.rs' -exec awk '
    FNR == 1 { open = 0 }
    /^[[:space:]]*\/\/[\/!] ```/ {
      lang = $0; sub(/^[[:space:]]*\/\/[\/!] ```/, "", lang)
      if (!open && lang ~ /^(rust|no_run|should_panic|compile_fail)?([ ,].*)?$/) { print FILENAME; exit }
      open = !open
    }' {} + | grep -q .
}

rust_workspace_tests() {
  local status=0
  # The instrumented build directory is shared by every checkout (CARGO_TARGET_DIR): drop the
  # workspace crates' instrumented artifacts and profiles of other checkouts and earlier runs, or the
  # report mixes their binaries in (seen: another clone's objects, 89.47 % instead of 92.00 %).
  # Dependencies stay; a fresh clone rebuilds the workspace crates anyway.
  cargo llvm-cov clean --workspace || status=1
  # The same tests as `cargo test --workspace --exclude nkvm-server`, instrumented: they run once and
  # give the engine's line coverage (app and frontend are measured too, but not reported).
  cargo llvm-cov --no-report --workspace --exclude nkvm-server --locked --no-fail-fast \
    -- --include-ignored || status=1
  cargo llvm-cov report --summary-only --json --output-path "$results/coverage.json" || status=1
  cargo llvm-cov report -p nkvm-engine --summary-only || status=1
  # cargo llvm-cov runs no doc tests on stable Rust: run them plainly if the crates have any.
  if has_doc_tests engine/src app/src frontend/src; then
    cargo test --workspace --exclude nkvm-server --locked --no-fail-fast --doc || status=1
  fi
  # Which tests are #[ignore]d, for the summary.
  cargo llvm-cov --no-report --workspace --exclude nkvm-server --locked -- --list --ignored \
    >"$results/rust.ignored" 2>/dev/null || true
  return "$status"
}
# The server binary is tested on its own, as it is built for production: a workspace build unifies
# the browser-only `hydrate` feature into the app crate, which changes how Leptos runs on the server.
rust_server_tests() {
  local status=0
  cargo test -p nkvm-server --locked --no-fail-fast -- --include-ignored || status=1
  cargo test -p nkvm-server --locked -- --list --ignored >"$results/server.ignored" 2>/dev/null || true
  return "$status"
}

# The smoke test reads the kubeconfig in its cluster's state directory (also for NKVM_TEST_KUBECONFIG).
suite cluster-smoke env NKVM_CLUSTER_STATE="$(dirname "${NKVM_TEST_KUBECONFIG:-$NKVM_REPO/.cluster/kubeconfig}")" \
  end2end/cluster/smoke.sh
suite fmt cargo fmt --all --check
suite clippy cargo clippy --workspace --all-targets --locked -- -D warnings
suite doc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked
# deny.toml: licenses, duplicate versions (warnings), sources. Offline: advisories need the RustSec
# database from GitHub (docs/dev/testing.md says how to run them where the network allows). cargo
# deny reads the whole dependency graph, every platform's crates included (Windows, Android), which
# a build on this machine never downloads: `cargo fetch` gets them from the registry first (on a
# fresh machine the offline check failed with "failed to download `valuable`").
deny_check() {
  cargo fetch --locked && cargo deny --locked --offline check licenses bans sources
}
suite deny deny_check
suite rust rust_workspace_tests
suite server rust_server_tests
suite e2e env NKVM_E2E_JSON="$results/e2e.json" scripts/e2e.sh
suite helm scripts/check-helm.sh
suite deploy deploy_suite
suite oidc env NKVM_E2E_JSON="$results/oidc.json" NKVM_E2E_SKIP_BUILD=1 scripts/e2e-oidc.sh

# --- summary ---------------------------------------------------------------------------------------
# Counts per suite: cargo's `test result:` lines, Playwright's JSON report. The cluster smoke test's
# checks are not nkvm tests: shown, not counted. A suite that failed without a failing test (fmt,
# clippy, a build error, a script that stopped before its tests) counts as one failure.
counts() { # counts SUITE -> "passed failed skipped"
  local name="$1"
  case "$name" in
    rust | server)
      sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' \
        "$results/$name.log" | awk '{p += $1; f += $2; s += $3} END {print p + 0, f + 0, s + 0}'
      ;;
    e2e | deploy | oidc)
      python3 - "$results/$name.json" <<'PY'
import json, sys
try:
    stats = json.load(open(sys.argv[1]))["stats"]
    print(stats["expected"] + stats["flaky"], stats["unexpected"], stats["skipped"])
except (OSError, ValueError, KeyError):
    print("")  # no report: the suite stopped before Playwright ran
PY
      ;;
  esac
}

# Before the summary, so that its `total:` line is the last thing printed.
stop_cluster
# engine_line_coverage REPORT.json: percent of this checkout's engine/src lines the tests ran.
engine_line_coverage() {
  python3 - "$1" "$NKVM_REPO/engine/src/" <<'PY' 2>/dev/null
import json, sys
files = [f for f in json.load(open(sys.argv[1]))["data"][0]["files"] if f["filename"].startswith(sys.argv[2])]
count = sum(f["summary"]["lines"]["count"] for f in files)
covered = sum(f["summary"]["lines"]["covered"] for f in files)
print("%.2f" % (100 * covered / count))
PY
}

step "summary"
total_passed=0
total_failed=0
total_skipped=0
any_failed=0
printf '%-14s %-7s %7s %7s %8s %6s  %s\n' suite result passed failed skipped time notes
for name in "${suites[@]}"; do
  read -r p f s <<<"$(counts "$name")"
  note=""
  case "$name" in
    cluster-smoke)
      note="$(grep -cE '^ok ' "$results/$name.log") cluster checks passed, $(grep -cE '^FAIL ' "$results/$name.log") failed (not nkvm tests)"
      ;;
    helm)
      note="chart linted; $(grep -c '^check-helm: ok' "$results/$name.log") helm/kustomize comparisons without a difference"
      ;;
    rust | server)
      ignored="?"
      grep -qE '^[0-9]+ tests?, ' "$results/$name.ignored" 2>/dev/null &&
        ignored="$(grep -cE ': test$' "$results/$name.ignored")"
      note="$ignored of them #[ignore]d (run with --include-ignored)"
      ;;
  esac
  if [[ "$name" == rust ]]; then
    coverage="$(engine_line_coverage "$results/coverage.json")"
    note="$note; engine line coverage ${coverage:-unknown} %"
  fi
  result=ok
  ((rc[$name] == 0)) || { result=FAILED; any_failed=1; }
  if [[ "$name" =~ ^(cluster-smoke|fmt|clippy|helm|deny)$ ]]; then
    # Checks, not tests: only their failure counts, as one.
    p=0 s=0 f=0
    [[ "$result" == ok ]] || f=1
  elif [[ "$result" == FAILED && "${f:-0}" == 0 ]]; then
    # A failed suite always counts as at least one failure, also when no test said so.
    f=1
    note="${note:+$note; }failed without a failing test (a build error or the script stopped: see its log above)"
  fi
  total_passed=$((total_passed + ${p:-0}))
  total_failed=$((total_failed + ${f:-0}))
  total_skipped=$((total_skipped + ${s:-0}))
  printf '%-14s %-7s %7s %7s %8s %5ss  %s\n' "$name" "$result" "${p:-0}" "${f:-0}" "${s:-0}" "${seconds[$name]}" "$note"
done
echo
echo "total: $total_passed passed, $total_failed failed, $total_skipped skipped"
exit "$any_failed"
