#!/usr/bin/env bash
# Builds the OpenID provider of the OIDC end-to-end test (end2end/oidc/idp: zitadel/oidc's example
# provider, bound to 127.0.0.1) from the Go module proxy, once per version: the binary is cached at
# $NKVM_CACHE_DIR/oidc-idp-<version>/oidc-idp. Prints the binary's path.
# Needs Go (>= the version in idp/go.mod); GOTOOLCHAIN=local, so Go itself is never downloaded.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
version="$(awk '$1 == "require" && $2 == "github.com/zitadel/oidc/v3" {print $3}' "$here/idp/go.mod")"
[[ -n "$version" ]] || { echo "build-idp: no zitadel/oidc version in $here/idp/go.mod" >&2; exit 1; }
out="$cache/oidc-idp-$version"
binary="$out/oidc-idp"
# Rebuild when the wrapper changed (its hash is part of the stamp).
stamp="$(cat "$here/idp/main.go" "$here/idp/go.mod" "$here/idp/go.sum" | sha256sum | cut -c1-16)"
if [[ -x "$binary" && "$(cat "$out/stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "$binary"
  exit 0
fi
mkdir -p "$out"
echo "build-idp: building zitadel/oidc $version example provider into $out" >&2
(
  cd "$here/idp"
  # go.sum pins every module; -mod=mod lets go fill its module cache from the proxy.
  GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -o "$binary.tmp" .
)
mv "$binary.tmp" "$binary"
echo "$stamp" >"$out/stamp"
echo "$binary"
