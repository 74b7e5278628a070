#!/usr/bin/env bash
# Builds (or reuses from the cache outside the clone) the Kubernetes and etcd binaries of the test cluster.
# Usage: build-binaries.sh  -> prints the directory holding kube-apiserver, kube-controller-manager,
#                              kube-scheduler, kubelet, kube-proxy, kubectl and etcd.
# Only the binaries missing from the cache are built.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
bin="$cache/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
want=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl etcd)

missing=()
for b in "${want[@]}"; do [[ -x "$bin/$b" ]] || missing+=("$b"); done
if ((${#missing[@]} == 0)); then echo "$bin"; exit 0; fi
k8s_cmds=()
for b in "${missing[@]}"; do [[ "$b" == etcd ]] || k8s_cmds+=("k8s.io/kubernetes/cmd/$b"); done

# Go >= 1.25 (Kubernetes 1.35's go.mod); checked with the scripts' shared prerequisite check.
NKVM_SCRIPT=build-binaries
# shellcheck source=../../scripts/lib.sh
source "$here/../../scripts/lib.sh"
require go:1.25
log() { echo "[build-binaries] $*" >&2; }
export GOFLAGS="-mod=mod" CGO_ENABLED=0 GOTOOLCHAIN=local
mkdir -p "$bin"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# --- Kubernetes: k8s.io/kubernetes requires its staging modules at v0.0.0, which the module proxy does
# not serve; replace each of them (listed from the release's own go.mod) with the matching v0.x tag.
minor_tag="v0.${K8S_VERSION#v1.}"
mkdir -p "$tmp/k8s" "$tmp/out"
((${#k8s_cmds[@]} == 0)) || (
  cd "$tmp/k8s"
  gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$gomod" ]] || { log "could not download k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
  {
    echo "module nkvm.local/k8sbuild"
    echo "go 1.25"
    echo "require k8s.io/kubernetes $K8S_VERSION"
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0(\s*//.*)?\s*$' "$gomod" | awk -v t="$minor_tag" '{print "replace " $1 " => " $1 " " t}' | sort -u
  } >go.mod
  log "building Kubernetes $K8S_VERSION: ${k8s_cmds[*]##*/} (cold: 15-30 min on 2 cores)"
  ver="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1"
  ver="$ver -X k8s.io/component-base/version.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  ver="$ver -X k8s.io/component-base/version.gitTreeState=clean"
  ver="$ver -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
  go mod download k8s.io/kubernetes
  go build -trimpath -ldflags "-s -w $ver" -o "$tmp/out/" "${k8s_cmds[@]}"
)
# --- etcd 3.6 (Debian's 3.4 is below Kubernetes' minimum); server/v3's main.go is a main package.
mkdir -p "$tmp/etcd"
[[ -x "$bin/etcd" ]] || (
  cd "$tmp/etcd"
  printf 'module nkvm.local/etcdbuild\ngo 1.25\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >go.mod
  log "building etcd $ETCD_VERSION"
  go mod download go.etcd.io/etcd/server/v3
  go build -trimpath -ldflags "-s -w" -o "$tmp/out/etcd" go.etcd.io/etcd/server/v3
)
for b in "${missing[@]}"; do install -m 0755 "$tmp/out/$b" "$bin/$b"; done
log "binaries cached in $bin ($(du -sh "$bin" | cut -f1))"
echo "$bin"
