#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/nkvm against the kustomize manifests (the `helm` suite of
# scripts/test-all.sh; needs no cluster):
#   1. `helm lint --strict` with the default values and with deploy/overlays/test-cluster/helm-values.yaml;
#   2. `helm template` compared object by object with `kubectl kustomize` for the same settings:
#        defaults                                 <-> deploy/base
#        deploy/overlays/test-cluster/helm-values.yaml <-> deploy/overlays/test-cluster
#        deploy/helm/compare/NAME/values.yaml     <-> deploy/helm/compare/NAME (kustomization.yaml;
#                                                     oidc: every value set away from its default)
#      Fails on any object missing on one side or any field that differs. Ignored: Helm's own labels
#      (app.kubernetes.io/managed-by, helm.sh/chart), the order of env entries, volumes and
#      volumeMounts, the Namespace objects (Helm installs into a namespace created beforehand, from
#      deploy/base/namespace.yaml: docs/deploy.md) and the overlay's fixture namespaces.
# Helm is built from the Go module proxy and cached (end2end/ingress/build.sh helm); kubectl is the
# test cluster's (cached by end2end/cluster/build-binaries.sh, which builds it when missing).
set -euo pipefail
NKVM_SCRIPT=check-helm
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$NKVM_REPO"
require pyyaml
[[ -x "$NKVM_KUBECTL" ]] || {
  cluster_binaries_cached || require go:1.25
  end2end/cluster/build-binaries.sh >&2
}
helm="$(end2end/ingress/build.sh helm)"
chart=deploy/helm/nkvm
test_values=deploy/overlays/test-cluster/helm-values.yaml
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0

"$helm" lint --strict "$chart" >&2 || status=1
"$helm" lint --strict "$chart" -f "$test_values" --namespace nkvm >&2 || status=1

# compare NAME KUSTOMIZE_DIR [HELM ARGS...]
compare() {
  local name="$1" dir="$2"
  shift 2
  "$NKVM_KUBECTL" kustomize "$dir" >"$tmp/$name.kustomize.yaml"
  "$helm" template nkvm "$chart" --namespace nkvm --kube-version "${K8S_VERSION#v}" "$@" >"$tmp/$name.helm.yaml"
  if "$NKVM_PYTHON_YAML" - "$tmp/$name.kustomize.yaml" "$tmp/$name.helm.yaml" <<'PY'; then
import sys
import yaml

HELM_LABELS = {"app.kubernetes.io/managed-by", "helm.sh/chart"}
# Namespaces: Helm installs into an existing one; the overlay's fixture namespaces are test data.
SKIP_KINDS = {"Namespace"}
BY_NAME = {"env", "volumes", "volumeMounts"}


def normalize(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in BY_NAME and isinstance(value, list):
                value = sorted(value, key=lambda item: str(item.get("name")))
            out[key] = normalize(value)
        return out
    if isinstance(node, list):
        return [normalize(item) for item in node]
    return node


def load(path):
    objects = {}
    for doc in yaml.safe_load_all(open(path)):
        if not doc or doc.get("kind") in SKIP_KINDS:
            continue
        meta = doc.setdefault("metadata", {})
        labels = meta.get("labels") or {}
        for label in HELM_LABELS:
            labels.pop(label, None)
        key = (doc["kind"], meta.get("namespace", ""), meta["name"])
        if key in objects:
            sys.exit(f"{path}: {key} twice")
        objects[key] = normalize(doc)
    return objects


def diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            where = f"{path}.{key}"
            if key not in a:
                yield f"{where}: only in helm: {b[key]!r}"
            elif key not in b:
                yield f"{where}: only in kustomize: {a[key]!r}"
            else:
                yield from diff(a[key], b[key], where)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b)):
            yield from diff(x, y, f"{path}[{index}]")
    elif a != b:
        yield f"{path}: kustomize {a!r}, helm {b!r}"


kustomize, helm = load(sys.argv[1]), load(sys.argv[2])
problems = []
for key in sorted(set(kustomize) | set(helm)):
    name = "/".join(part for part in key if part)
    if key not in helm:
        problems.append(f"{name}: only in kustomize")
    elif key not in kustomize:
        problems.append(f"{name}: only in helm")
    else:
        problems.extend(f"{name}{line}" for line in diff(kustomize[key], helm[key]))
for line in problems:
    print(f"  {line}")
print(f"{len(kustomize)} objects compared, {len(problems)} differences")
sys.exit(1 if problems else 0)
PY
    log "ok: helm template ($name) renders what kubectl kustomize $dir does"
  else
    log "FAILED: helm template ($name) differs from kubectl kustomize $dir (above)"
    status=1
  fi
}

compare defaults deploy/base
compare test-cluster deploy/overlays/test-cluster -f "$test_values"
# Every value away from its default, against the same settings as a kustomize overlay.
for dir in deploy/helm/compare/*/; do
  "$helm" lint --strict "$chart" -f "$dir/values.yaml" --namespace nkvm >&2 || status=1
  compare "$(basename "$dir")" "$dir" -f "$dir/values.yaml"
done
exit "$status"
