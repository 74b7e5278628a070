# Shared by end2end/ingress/up and down (sourced after scripts/lib.sh): where the deployment suite's
# ingress controller keeps its state, and how to remove everything it made.
#
# The controller is Traefik (build.sh), a process on the test cluster's node like the cluster's own
# components: it runs as the system user nkvm-ingress, reads Ingresses, Services, EndpointSlices and
# TLS Secrets with a ServiceAccount token of its own (ClusterRole nkvm-e2e-traefik), serves HTTPS on
# 127.0.0.1:$INGRESS_PORT with a certificate of a test CA made by `up`, and forwards to pod IPs on the
# cluster's bridge. An iptables chain lets that user reach loopback and the pod network only.
# shellcheck shell=bash
# shellcheck source=versions.env
source "$NKVM_REPO/end2end/ingress/versions.env"
INGRESS_STATE="${NKVM_INGRESS_STATE:-$NKVM_REPO/.ingress}"
INGRESS_HOST="${NKVM_INGRESS_HOST:-nkvm.test}"
INGRESS_PORT="${NKVM_INGRESS_PORT:-18443}"
INGRESS_PING_PORT="${NKVM_INGRESS_PING_PORT:-18444}"
INGRESS_USER=nkvm-ingress
INGRESS_NAMESPACE=nkvm-e2e-traefik
INGRESS_CLASS=traefik
INGRESS_CLUSTER_ROLE=nkvm-e2e-traefik
INGRESS_CHAIN=NKVM-INGRESS-OUT
# The test cluster's pod network (end2end/cluster/lib.sh POD_CIDR): the only place besides loopback
# the controller may reach.
INGRESS_POD_CIDR=10.244.0.0/24
INGRESS_LABEL=app.kubernetes.io/part-of=nkvm-e2e-ingress

ingress_pid() { cat "$INGRESS_STATE/traefik.pid" 2>/dev/null || true; }
ingress_running() { local p; p="$(ingress_pid)"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

# Packets the controller's user sent outside loopback and the pod network (refused by the chain).
ingress_refused_packets() {
  iptables -L "$INGRESS_CHAIN" -v -x -n 2>/dev/null | awk '$3 == "REJECT" {print $1; found = 1} END {if (!found) print 0}'
}

# Stops the controller (by its PID) and removes its cluster objects, its iptables chain and its state
# (the log stays). Safe to run when nothing, or only part of it, was started.
ingress_teardown() {
  local p
  p="$(ingress_pid)"
  if [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$p" 2>/dev/null || true
    log "stopped traefik (pid $p)"
  fi
  rm -f "$INGRESS_STATE/traefik.pid"
  if [[ -n "${NKVM_TEST_KUBECONFIG:-}" ]]; then
    k delete ingressclass,clusterrolebinding,clusterrole -l "$INGRESS_LABEL" --ignore-not-found >/dev/null 2>&1 || true
    k delete namespace "$INGRESS_NAMESPACE" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  fi
  while iptables -C OUTPUT -m owner --uid-owner "$INGRESS_USER" -j "$INGRESS_CHAIN" 2>/dev/null; do
    iptables -D OUTPUT -m owner --uid-owner "$INGRESS_USER" -j "$INGRESS_CHAIN"
  done
  iptables -F "$INGRESS_CHAIN" 2>/dev/null && iptables -X "$INGRESS_CHAIN" 2>/dev/null || true
  if [[ -d "$INGRESS_STATE" ]]; then
    find "$INGRESS_STATE" -mindepth 1 -maxdepth 1 ! -name '*.log' -exec rm -rf {} +
  fi
}
