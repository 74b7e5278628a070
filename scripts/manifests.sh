# YAML of the fixture workloads the scripts create on the local test cluster (all of the workload
# image, never pulled), sourced by scripts/e2e.sh, scripts/e2e-deploy.sh, scripts/demo-seed.sh and
# end2end/cluster/smoke.sh. Each function prints YAML; a whole document ends in `---`.
#
#   kubectl apply -f - <<YAML
#   $(claim data ReadWriteOnce)
#   $(deployment app 'exec sleep 3600' data:/data)
#   YAML
# shellcheck shell=bash

NKVM_WORKLOAD_IMAGE=nkvm.local/workload:1

# yaml_string TEXT: TEXT as one double-quoted YAML string (backslashes, quotes, tabs and new lines
# escaped).
yaml_string() {
  local text=$1
  text=${text//\\/\\\\}
  text=${text//\"/\\\"}
  text=${text//$'\n'/\\n}
  text=${text//$'\t'/\\t}
  printf '"%s"' "$text"
}

# _volume_name CLAIM:MOUNT[:VOLUME]: the volume's name (VOLUME, else the claim's name).
_volume_name() {
  local rest=${1#*:}
  if [[ $rest == *:* ]]; then echo "${rest#*:}"; else echo "${1%%:*}"; fi
}

# container NAME SCRIPT CLAIM:MOUNT[:VOLUME]...: one line of YAML, a container of the workload image
# running the shell SCRIPT with each claim's volume mounted at MOUNT.
container() {
  local name=$1 script=$2 mounts="" spec rest
  shift 2
  for spec in "$@"; do
    rest=${spec#*:}
    mounts+="${mounts:+, }{name: $(_volume_name "$spec"), mountPath: ${rest%%:*}}"
  done
  printf -- '- {name: %s, image: %s, imagePullPolicy: Never, command: [sh, -c, %s], volumeMounts: [%s]}' \
    "$name" "$NKVM_WORKLOAD_IMAGE" "$(yaml_string "$script")" "$mounts"
}

# volumes CLAIM:MOUNT[:VOLUME]...: one line of YAML, the `volumes:` of those claims.
volumes() {
  local list="" spec
  for spec in "$@"; do
    list+="${list:+, }{name: $(_volume_name "$spec"), persistentVolumeClaim: {claimName: ${spec%%:*}}}"
  done
  printf 'volumes: [%s]' "$list"
}

# claim NAME ACCESS_MODE [SIZE]: a PersistentVolumeClaim (default 1Gi), a YAML document.
claim() {
  printf 'apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: %s}\n' "$1"
  printf 'spec: {accessModes: [%s], resources: {requests: {storage: %s}}}\n---\n' "$2" "${3:-1Gi}"
}

# deployment NAME SCRIPT CLAIM:MOUNT[:VOLUME]...: a Deployment whose pods run the shell SCRIPT in
# one container (named NAME) with the claims mounted, a YAML document. $REPLICAS (default 1) and
# $STRATEGY (default RollingUpdate) set its replicas and update strategy.
deployment() {
  local name=$1 script=$2
  shift 2
  cat <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name}
spec:
  replicas: ${REPLICAS:-1}
  strategy: {type: ${STRATEGY:-RollingUpdate}}
  selector: {matchLabels: {app: $name}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      $(container "$name" "$script" "$@")
      $(volumes "$@")
---
YAML
}
