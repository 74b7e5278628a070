# Shared by nkvm's scripts (sourced): paths and caches, logging, prerequisite checks that install what
# Debian's packages and the language registries can provide and name everything else in one message,
# and the local test cluster's kubeconfig (never the user's).
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"     # from scripts/; ../scripts/lib.sh from bench/
#   require rust wasm-bindgen node chromium            # stops the script with one message if any is missing
#   use_test_cluster [--start]                         # exports KUBECONFIG of the local test cluster
#
# Set NKVM_SCRIPT before sourcing to name the script in messages (default: the file name).
# shellcheck shell=bash

NKVM_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export NKVM_CACHE_DIR="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NKVM_CACHE_DIR/cargo-target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$NKVM_REPO/$CARGO_TARGET_DIR" ;; esac
# shellcheck source=../end2end/cluster/versions.env
source "$NKVM_REPO/end2end/cluster/versions.env"
NKVM_KUBECTL="$NKVM_CACHE_DIR/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin/kubectl"
NKVM_SCRIPT="${NKVM_SCRIPT:-$(basename "$0" .sh)}"
# cargo-llvm-cov, installed into the cache by `require cargo-llvm-cov`.
NKVM_LLVM_COV_VERSION=0.9.1
# cargo-deny (deny.toml), installed into the cache by `require cargo-deny`.
NKVM_CARGO_DENY_VERSION=0.20.2

log() { printf '%s: %s\n' "$NKVM_SCRIPT" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# version_at_least HAVE WANT: true when dotted version HAVE >= WANT.
version_at_least() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

# --- prerequisites ---------------------------------------------------------------------------------
# require ITEM...: checks each item, installs what can be installed (Debian packages, rustup
# components, cargo tools into $NKVM_CACHE_DIR/tools), then stops the script with one message that
# names every item still missing, the version needed and how to get it. A failed install is reported
# with the installer's own error (printed above the message), never hidden.
# Items: rust, wasm-bindgen, node, chromium, go[:MIN], cargo-llvm-cov, cargo-deny, pyyaml, root,
# deb:PACKAGE[:COMMAND].
_missing=()
_apt_updated=0

require() {
  local item
  _missing=()
  for item in "$@"; do
    case "$item" in
      deb:*) _require_deb "${item#deb:}" ;;
      go:*) _require_go "${item#go:}" ;;
      *) "_require_${item//-/_}" ;;
    esac
  done
  if ((${#_missing[@]})); then
    log "missing prerequisites:"
    printf '  - %s\n' "${_missing[@]}" >&2
    exit 1
  fi
}

# apt_install PACKAGE...: installs Debian packages (one `apt-get update` per script run).
apt_install() {
  if [[ $(id -u) -ne 0 ]]; then
    log "cannot install Debian packages $* without root"
    return 1
  fi
  log "installing Debian packages: $*"
  if ((!_apt_updated)); then
    apt-get update -qq >&2 || return 1
    _apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# deb:PACKAGE[:COMMAND] — present when COMMAND (default PACKAGE) is on PATH.
_require_deb() {
  local package="${1%%:*}" command="${1#*:}"
  command -v "$command" >/dev/null 2>&1 && return 0
  apt_install "$package" && command -v "$command" >/dev/null 2>&1 && return 0
  _missing+=("$command: from Debian's package $package (apt-get install $package failed, error above)")
}

_require_root() {
  [[ $(id -u) -eq 0 ]] ||
    _missing+=("root: the local Kubernetes cluster runs containerd, a kubelet, cgroups and a bridge (run as root)")
}

# Rust: rustup with the toolchain rust-toolchain.toml pins (rustfmt, clippy, the wasm32 target).
_rust_channel() { sed -n 's/^channel *= *"\(.*\)"/\1/p' "$NKVM_REPO/rust-toolchain.toml"; }

_rust_complete() {
  local channel="$1"
  rustup toolchain list 2>/dev/null | grep -q "^$channel-" &&
    (cd "$NKVM_REPO" && rustup component list --installed 2>/dev/null | grep -q '^rustfmt-' &&
      rustup component list --installed 2>/dev/null | grep -q '^clippy-' &&
      rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown)
}

_require_rust() {
  local channel
  channel="$(_rust_channel)"
  if ! command -v rustup >/dev/null 2>&1; then
    _missing+=("rustup with Rust $channel: Debian 12's rustc (1.63) is too old; install rustup from https://rustup.rs (rust-toolchain.toml then selects $channel, rustfmt, clippy and the wasm32 target)")
    return
  fi
  if ! _rust_complete "$channel"; then
    log "installing Rust $channel with rustfmt, clippy and wasm32-unknown-unknown (rustup toolchain install)"
    (cd "$NKVM_REPO" && rustup toolchain install >&2 &&
      rustup component add rustfmt clippy >&2 && rustup target add wasm32-unknown-unknown >&2) || true
    _rust_complete "$channel" ||
      _missing+=("Rust $channel with rustfmt, clippy and the wasm32-unknown-unknown target: 'rustup toolchain install' in $NKVM_REPO failed (error above)")
  fi
  # The linker, and the C compiler of crates with C parts (ring).
  _require_deb gcc:cc
}

# wasm-bindgen-cli at exactly the version of the wasm-bindgen crate in Cargo.lock (else it refuses the
# module's schema), cached in $NKVM_CACHE_DIR/tools/wasm-bindgen-<version>. Installed WITHOUT --locked
# on purpose: the CLI's own lockfile pins a crate the registry mirror lacks (docs/dev/testing.md).
wasm_bindgen_version() {
  awk '$0 == "name = \"wasm-bindgen\"" { found = 1; next }
       found && /^version = / { gsub(/"/, "", $3); print $3; exit }' "$NKVM_REPO/Cargo.lock"
}

_require_wasm_bindgen() {
  local version root
  version="$(wasm_bindgen_version)"
  root="$NKVM_CACHE_DIR/tools/wasm-bindgen-$version"
  if [[ -z "$version" ]]; then
    _missing+=("wasm-bindgen: no wasm-bindgen crate in $NKVM_REPO/Cargo.lock")
    return
  fi
  if ! "$root/bin/wasm-bindgen" --version 2>/dev/null | grep -qF " $version"; then
    if ! command -v cargo >/dev/null 2>&1; then
      _missing+=("wasm-bindgen-cli $version: needs Rust first (see rustup above)")
      return
    fi
    log "installing wasm-bindgen-cli $version into $root (about 4 min on 2 cores, once)"
    (cd "$NKVM_REPO" && cargo install wasm-bindgen-cli --version "=$version" --root "$root" >&2) || true
    if ! "$root/bin/wasm-bindgen" --version 2>/dev/null | grep -qF " $version"; then
      _missing+=("wasm-bindgen-cli $version: 'cargo install wasm-bindgen-cli --version =$version' failed (error above)")
      return
    fi
  fi
  PATH="$root/bin:$PATH"
  export PATH
}

# wasm-opt from binaryen (pinned, npm's `binaryen` package: a current binaryen compiled to wasm, run
# by Node; Debian's binaryen is too old and its output broke hydration) in the cache. Sets NKVM_WASM_OPT.
NKVM_BINARYEN_VERSION=132.0.0
_require_binaryen() {
  local root="$NKVM_CACHE_DIR/tools/binaryen-$NKVM_BINARYEN_VERSION"
  NKVM_WASM_OPT="$root/node_modules/.bin/wasm-opt"
  if ! "$NKVM_WASM_OPT" --version >/dev/null 2>&1; then
    if ! command -v npm >/dev/null 2>&1; then
      _missing+=("binaryen $NKVM_BINARYEN_VERSION (wasm-opt): needs Node.js with npm first (see above)")
      return
    fi
    log "installing binaryen $NKVM_BINARYEN_VERSION (wasm-opt) from npm into $root (once)"
    mkdir -p "$root"
    npm install --no-audit --no-fund --prefix "$root" "binaryen@$NKVM_BINARYEN_VERSION" >&2 || true
    if ! "$NKVM_WASM_OPT" --version >/dev/null 2>&1; then
      _missing+=("binaryen $NKVM_BINARYEN_VERSION: 'npm install binaryen@$NKVM_BINARYEN_VERSION' failed (error above)")
    fi
  fi
}

# _cargo_tool CRATE VERSION: the cargo tool CRATE (its binary named like it), pinned, installed with
# --locked into $NKVM_CACHE_DIR/tools/CRATE-VERSION when missing; its bin directory goes first on
# PATH. When it cannot be installed, it is added to the missing items (the caller goes on).
_cargo_tool() {
  local crate=$1 version=$2 root="$NKVM_CACHE_DIR/tools/$1-$2"
  if ! command -v cargo >/dev/null 2>&1; then
    _missing+=("$crate $version: needs Rust first (see rustup above)")
    return 0
  fi
  if [[ ! -x "$root/bin/$crate" ]]; then
    log "installing $crate $version into $root (once)"
    (cd "$NKVM_REPO" && cargo install "$crate" --locked --version "$version" --root "$root" >&2) ||
      { _missing+=("$crate $version: 'cargo install $crate --locked' failed (error above)"); return 0; }
  fi
  PATH="$root/bin:$PATH"
  export PATH
}

# cargo-llvm-cov in the cache, and rustup's llvm-tools component.
_require_cargo_llvm_cov() {
  _cargo_tool cargo-llvm-cov "$NKVM_LLVM_COV_VERSION"
  [[ -x "$NKVM_CACHE_DIR/tools/cargo-llvm-cov-$NKVM_LLVM_COV_VERSION/bin/cargo-llvm-cov" ]] || return 0
  if ! (cd "$NKVM_REPO" && rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'); then
    log "adding rustup component llvm-tools"
    (cd "$NKVM_REPO" && rustup component add llvm-tools >&2) ||
      _missing+=("rustup component llvm-tools: 'rustup component add llvm-tools' failed (error above)")
  fi
}

# cargo-deny in the cache: `cargo deny check` for deny.toml (about 10 min to build on 2 cores, once).
_require_cargo_deny() {
  _cargo_tool cargo-deny "$NKVM_CARGO_DENY_VERSION"
}

# Node.js and npm for Playwright (end2end/package.json "engines": Playwright 1.65 needs Node >= 20).
# Not installed here: Debian 12's nodejs is 18, too old.
_require_node() {
  local want have
  want="$(sed -n 's/.*"node": *">=\([0-9.]*\)".*/\1/p' "$NKVM_REPO/end2end/package.json")"
  have="$(node --version 2>/dev/null | tr -d v || true)"
  if [[ -z "$have" ]] || ! command -v npm >/dev/null 2>&1; then
    _missing+=("Node.js >= $want with npm: not found (Debian 12's nodejs is 18, too old for Playwright); install Node.js $want or newer, e.g. from https://nodejs.org or NodeSource's Debian packages")
  elif ! version_at_least "$have" "$want"; then
    _missing+=("Node.js >= $want: found $have (Playwright needs $want); install a newer Node.js, e.g. from https://nodejs.org")
  fi
}

# A python3 with PyYAML (reads kubeconfigs): the one on PATH, else Debian's with python3-yaml.
# Sets NKVM_PYTHON_YAML.
_require_pyyaml() {
  local python
  for python in python3 /usr/bin/python3; do
    if "$python" -c 'import yaml' 2>/dev/null; then
      NKVM_PYTHON_YAML="$python"
      return 0
    fi
  done
  apt_install python3 python3-yaml || true
  if /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    NKVM_PYTHON_YAML=/usr/bin/python3
  else
    _missing+=("python3 with PyYAML: from Debian's packages python3 python3-yaml (apt-get install failed, error above)")
  fi
}

# Debian's chromium (Playwright never downloads a browser here).
_require_chromium() {
  local chromium="${CHROMIUM_PATH:-/usr/bin/chromium}"
  [[ -x "$chromium" ]] && return 0
  [[ -n "${CHROMIUM_PATH:-}" ]] && { _missing+=("chromium: CHROMIUM_PATH=$chromium is not executable"); return; }
  apt_install chromium || true
  [[ -x "$chromium" ]] || _missing+=("chromium: from Debian's package chromium (apt-get install chromium failed, error above)")
}

# Go >= MIN (the cluster's Kubernetes 1.35 needs 1.25, the OIDC test provider 1.26). Debian 12's
# golang is 1.19, too old, and Go never downloads itself here (GOTOOLCHAIN=local).
_require_go() {
  local want="$1" have
  have="$(go env GOVERSION 2>/dev/null | sed 's/^go//' || true)"
  if [[ -z "$have" ]]; then
    _missing+=("Go >= $want: not found (Debian 12's golang is 1.19, too old); install it from https://go.dev/dl/ and put its bin/ on PATH")
  elif ! version_at_least "$have" "$want"; then
    _missing+=("Go >= $want: found $have at $(command -v go); install a newer Go from https://go.dev/dl/")
  fi
}

# Go is only needed while the cluster's binaries are not cached yet.
cluster_binaries_cached() {
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd; do
    [[ -x "$(dirname "$NKVM_KUBECTL")/$b" ]] || return 1
  done
}

# --- the local test cluster ------------------------------------------------------------------------
# use_test_cluster [--start]: points KUBECONFIG at the local test cluster and unsets NKVM_KUBECONFIG,
# NKVM_CONTEXT and NKVM_IN_CLUSTER, so nothing here can reach the user's clusters.
#   - NKVM_TEST_KUBECONFIG set: that cluster (one started from another checkout, whose .cluster/kubeconfig
#     it names); it must be the nkvm test cluster this machine runs, and up. Never started here.
#   - else this checkout's cluster (.cluster/kubeconfig); --start starts it (end2end/cluster/up) first.
# Stops the script with the cluster's own error when it cannot be started, or when it is not up.
# Never falls back to $KUBECONFIG or ~/.kube/config.
use_test_cluster() {
  local start=0 state kubeconfig status running
  [[ "${1:-}" == --start ]] && start=1
  if [[ -n "${NKVM_TEST_KUBECONFIG:-}" ]]; then
    kubeconfig="$NKVM_TEST_KUBECONFIG"
    [[ -f "$kubeconfig" ]] || die "NKVM_TEST_KUBECONFIG=$kubeconfig: no such file"
    state="$(cd "$(dirname "$kubeconfig")" && pwd -P)"
  else
    state="${NKVM_CLUSTER_STATE:-$NKVM_REPO/.cluster}"
    kubeconfig="$state/kubeconfig"
    if ((start)); then
      ((_cluster_prereqs_checked)) || require_cluster_prereqs
      log "starting the local test cluster (end2end/cluster/up)"
      "$NKVM_REPO/end2end/cluster/up" >/dev/null ||
        die "the local test cluster could not be started (end2end/cluster/up's error is above)"
    fi
    state="$(cd "$state" 2>/dev/null && pwd -P)" ||
      die "the local test cluster is not running (no $kubeconfig); start it with end2end/cluster/up"
  fi
  # The machine's running nkvm test cluster is the one whose state dir end2end/cluster/up recorded.
  running="$(cat /run/nkvm-cluster.state 2>/dev/null || true)"
  running="$( [[ -n "$running" ]] && cd "$running" 2>/dev/null && pwd -P)" || true
  if [[ "$running" != "$state" ]]; then
    die "the local test cluster of $state is not running${running:+ (the one running belongs to $running; set NKVM_TEST_KUBECONFIG=$running/kubeconfig to use it)}; start it with end2end/cluster/up"
  fi
  if ! status="$(NKVM_CLUSTER_STATE="$state" "$NKVM_REPO/end2end/cluster/status" 2>&1)"; then
    printf '%s\n' "$status" >&2
    die "the local test cluster ($state) is not up (components above); restart it with end2end/cluster/down && end2end/cluster/up"
  fi
  if ! "$NKVM_KUBECTL" --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null; then
    die "the local test cluster's API server ($kubeconfig) does not answer"
  fi
  # nkvm reads KUBECONFIG when NKVM_KUBECONFIG is unset (and the tests parse the environment, so the
  # NKVM_* connection variables must be unset, not set).
  export KUBECONFIG="$kubeconfig" NKVM_TEST_KUBECONFIG="$kubeconfig"
  unset NKVM_KUBECONFIG NKVM_CONTEXT NKVM_IN_CLUSTER
}

# cluster_is_ours: true when the test cluster this machine runs (or failed to start) was started from
# this checkout. Only then may end2end/cluster/down run here: it also removes machine-wide pieces (the
# bridge, the pod cgroups, containerd's shims), so from another checkout it would break that cluster.
cluster_is_ours() {
  local running own
  running="$(cat /run/nkvm-cluster.state 2>/dev/null)" || return 1
  running="$(cd "$running" 2>/dev/null && pwd -P)" || return 1
  own="$(cd "${NKVM_CLUSTER_STATE:-$NKVM_REPO/.cluster}" 2>/dev/null && pwd -P)" || return 1
  [[ "$running" == "$own" ]]
}

# kubectl for the test cluster, with its kubeconfig given explicitly.
k() { "$NKVM_KUBECTL" --kubeconfig "$NKVM_TEST_KUBECONFIG" "$@"; }

# What end2end/cluster/up needs before it can build and start the cluster (it installs its own Debian
# packages): root, and Go while the Kubernetes binaries are not cached.
_cluster_prereqs_checked=0
require_cluster_prereqs() {
  local items=(root)
  cluster_binaries_cached || items+=(go:1.25 deb:curl)
  require "${items[@]}"
  _cluster_prereqs_checked=1
}
