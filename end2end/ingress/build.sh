#!/usr/bin/env bash
# Builds (or reuses from the cache outside the clone) the tools of the deployment suite:
#   build.sh traefik  -> prints the path of Traefik (github.com/traefik/traefik/v3, the ingress controller)
#   build.sh helm     -> prints the path of the Helm client (helm.sh/helm/v3/cmd/helm)
# Both from the Go module proxy, CGO off, `-trimpath -s -w`, cached by version in
# $NKVM_CACHE_DIR/traefik-<version>/ and $NKVM_CACHE_DIR/helm-<version>/ (versions.env).
# Each module is built as its own main module (a copy of its source from the module cache), so the
# `replace` directives and the go.sum of the upstream release apply exactly as upstream builds it.
# Needs Go >= the module's `go` line; GOTOOLCHAIN=local, so Go itself is never downloaded.
# The build uses its own module and build caches in a temporary directory, removed afterwards: only
# the binary is kept (Traefik's dependencies alone fill about 2 GB of module cache, 1 GB of build
# cache), and a new version is a cold build anyway.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
log() { echo "[ingress-build] $*" >&2; }

tool="${1:-}"
case "$tool" in
  traefik)
    module=github.com/traefik/traefik/v3 version="$TRAEFIK_VERSION" package=./cmd/traefik
    ldflags="-X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION"
    ;;
  helm)
    module=helm.sh/helm/v3 version="$HELM_VERSION" package=./cmd/helm
    ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    ;;
  *) log "usage: build.sh traefik|helm"; exit 2 ;;
esac
dir="$cache/$tool-$version"
if [[ -x "$dir/$tool" ]]; then echo "$dir/$tool"; exit 0; fi

command -v go >/dev/null || { log "Go is needed to build $tool $version (install it from https://go.dev/dl/)"; exit 1; }
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/build.XXXXXX")"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
export GOFLAGS="-mod=mod" CGO_ENABLED=0 GOTOOLCHAIN=local GOMODCACHE="$tmp/gomod" GOCACHE="$tmp/gocache"
(
  cd "$tmp"
  printf 'module nkvm.local/fetch\n' >go.mod
  src="$(go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
  [[ -d "$src" ]] || { log "could not download $module@$version from the module proxy"; exit 1; }
  cp -r "$src" "$tmp/src"
  chmod -R u+w "$tmp/src"
)
start=$SECONDS
log "building $tool $version (cold: many minutes on 2 cores)"
(cd "$tmp/src" && go build -trimpath -ldflags "-s -w $ldflags" -o "$tmp/$tool" "$package")
mkdir -p "$dir"
install -m 0755 "$tmp/$tool" "$dir/$tool"
log "$tool $version cached in $dir (built in $((SECONDS - start))s)"
echo "$dir/$tool"
