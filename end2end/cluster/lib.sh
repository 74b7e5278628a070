# Shared functions of the local single-node test cluster (sourced by `up`, `down`, `status`).
# Layout:
#   $STATE (repo/.cluster)   pki, tokens, etcd data, kubelet root, containerd root, volumes, logs/, pids/
#   $RUN   (/run/nkvm-cluster) sockets and containerd state (short paths; one cluster per machine)
# Every component listens on 127.0.0.1 only. The node's InternalIP lives on the cluster's own bridge.
# shellcheck shell=bash
set -euo pipefail

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"
# shellcheck source=versions.env
source "$CLUSTER_DIR/versions.env"
STATE="${NKVM_CLUSTER_STATE:-$REPO_ROOT/.cluster}"
RUN=/run/nkvm-cluster
CACHE="${NKVM_CACHE_DIR:-$HOME/.cache/nkvm}"
LOGS="$STATE/logs"
PIDS="$STATE/pids"
PKI="$STATE/pki"
NODE_NAME=127.0.0.1
BRIDGE=nkvm0
BRIDGE_IP=10.244.0.1
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/24
API_PORT=6443
# Start order; `down` stops in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy api-forwarder provisioner)
APT_PACKAGES=(containerd runc containernetworking-plugins busybox-static iptables curl openssl gcc libc6-dev pigz python3 iproute2 util-linux socat)

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() { [[ $(id -u) -eq 0 ]] || die "the test cluster needs root (containerd, kubelet, cgroups, bridge)"; }

pid_of() { [[ -f "$PIDS/$1.pid" ]] && cat "$PIDS/$1.pid" || true; }
alive() { local p; p="$(pid_of "$1")"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

# The tail of a component's log, printed when it fails to start.
show_log_tail() {
  local f="$LOGS/$1.log"
  if [[ -f "$f" ]]; then
    log "last lines of $f:"
    tail -n "${2:-40}" "$f" >&2
  fi
}

fail_component() {
  show_log_tail "$1" 60
  die "$1 did not start: $2 (full log: $LOGS/$1.log; reset with end2end/cluster/down)"
}

# start NAME CMD ARGS... : runs CMD in its own session, logs to $LOGS/NAME.log, PID in $PIDS/NAME.pid.
start() {
  local name="$1"
  shift
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$PIDS/$name.pid"
  log "started $name (pid $!, log $LOGS/$name.log)"
}

# wait_for NAME SECONDS CMD... : polls CMD until it succeeds; fails with the component's log tail.
wait_for() {
  local name="$1" secs="$2"
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    alive "$name" || fail_component "$name" "process exited"
    ((SECONDS < deadline)) || fail_component "$name" "not ready after ${secs}s"
    sleep 0.5
  done
}

install_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Images are rebuilt when images.py, scripts/dockerarchive.py, pause.c or IMAGES_VERSION change; kept in the cache dir.
build_images() {
  local key
  key="$(cat "$CLUSTER_DIR/images.py" "$REPO_ROOT/scripts/dockerarchive.py" "$CLUSTER_DIR/pause.c" "$CLUSTER_DIR/versions.env" | sha256sum | cut -c1-16)"
  IMAGES="$CACHE/images-$key"
  if [[ ! -f "$IMAGES/helper.tar" ]]; then
    log "building images into $IMAGES"
    mkdir -p "$IMAGES"
    gcc -static -Os -o "$IMAGES/pause" "$CLUSTER_DIR/pause.c"
    python3 "$CLUSTER_DIR/images.py" "$IMAGES" "$IMAGES/pause" >&2
  fi
}

make_pki() {
  mkdir -p "$PKI"
  [[ -f "$PKI/ca.crt" ]] && return 0
  log "generating certificates and tokens"
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 365 -subj "/CN=nkvm-test-ca" 2>/dev/null
    cat >apiserver.ext <<EOF
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:$BRIDGE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EOF
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 365 -extfile apiserver.ext 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-client.crt -days 365 -extfile client.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
      echo "$(token),admin,admin,system:masters"
      echo "$(token),system:node:$NODE_NAME,kubelet,system:nodes"
      echo "$(token),system:kube-controller-manager,kube-controller-manager"
      echo "$(token),system:kube-scheduler,kube-scheduler"
      echo "$(token),system:kube-proxy,kube-proxy"
    } >tokens.csv
    chmod 600 ./*.key tokens.csv
  )
}

token_for() { awk -F, -v u="$1" '$2==u {print $1}' "$PKI/tokens.csv"; }

# write_kubeconfig FILE USER
write_kubeconfig() {
  local file="$1" user="$2"
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nkvm-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    token: $(token_for "$user")
contexts:
- name: nkvm-test
  context:
    cluster: nkvm-test
    user: $user
    namespace: default
current-context: nkvm-test
EOF
  chmod 600 "$file"
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

setup_network() {
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  sysctl -qw net.ipv4.ip_forward=1
  # Pod traffic may only stay on the cluster's own bridge: drop anything forwarded elsewhere.
  iptables -N NKVM-FORWARD 2>/dev/null || iptables -F NKVM-FORWARD
  iptables -A NKVM-FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP
  iptables -A NKVM-FORWARD -o "$BRIDGE" ! -i "$BRIDGE" -j DROP
  iptables -C FORWARD -j NKVM-FORWARD 2>/dev/null || iptables -I FORWARD 1 -j NKVM-FORWARD
  mkdir -p "$STATE/cni"
  cat >"$STATE/cni/10-nkvm.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "nkvm",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$BRIDGE_IP"}]],
              "dataDir": "$STATE/cni/ipam", "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

start_etcd() {
  mkdir -p "$STATE/etcd"
  chmod 700 "$STATE/etcd"
  start etcd "$BIN/etcd" --name nkvm --data-dir "$STATE/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster nkvm=http://127.0.0.1:2380 --listen-metrics-urls "" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
  wait_for etcd 60 curl -fsS http://127.0.0.1:2379/health
}

start_apiserver() {
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 --bind-address=127.0.0.1 --secure-port=$API_PORT \
    --advertise-address=$BRIDGE_IP \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --token-auth-file="$PKI/tokens.csv" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range=$SERVICE_CIDR --allow-privileged=true \
    --kubelet-preferred-address-types=Hostname,InternalIP \
    --kubelet-client-certificate="$PKI/kubelet-client.crt" --kubelet-client-key="$PKI/kubelet-client.key" \
    --cert-dir="$PKI/apiserver-generated" --profiling=false --v=1
  wait_for kube-apiserver 120 kubectl_admin get --raw /readyz
}

start_control_plane() {
  write_kubeconfig "$STATE/controller-manager.kubeconfig" system:kube-controller-manager
  write_kubeconfig "$STATE/scheduler.kubeconfig" system:kube-scheduler
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$STATE/controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10257 --cert-dir="$PKI/controller-manager" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --use-service-account-credentials --leader-elect=false \
    --kube-api-qps=200 --kube-api-burst=400 --concurrent-deployment-syncs=10 \
    --concurrent-replicaset-syncs=10 --concurrent-statefulset-syncs=10 --v=1
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig="$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig="$STATE/scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=10259 --cert-dir="$PKI/scheduler" \
    --leader-elect=false --v=1
  wait_for kube-controller-manager 60 curl -fsSk https://127.0.0.1:10257/healthz
  wait_for kube-scheduler 60 curl -fsSk https://127.0.0.1:10259/healthz
}

start_containerd() {
  mkdir -p "$RUN" "$STATE/containerd"
  cat >"$STATE/containerd/config.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$RUN/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$RUN/containerd.sock"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[debug]
  level = "warn"
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "nkvm.local/pause:1"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$STATE/cni"
EOF
  start containerd containerd --config "$STATE/containerd/config.toml"
  wait_for containerd 60 ctr --address "$RUN/containerd.sock" version
  for img in pause workload helper; do
    ctr --address "$RUN/containerd.sock" -n k8s.io images import --no-unpack "$IMAGES/$img.tar" >/dev/null ||
      fail_component containerd "importing image $img failed"
  done
  log "images imported: nkvm.local/{pause,workload,helper}:1"
}

start_kubelet() {
  write_kubeconfig "$STATE/kubelet.kubeconfig" "system:node:$NODE_NAME"
  mkdir -p "$STATE/kubelet" "$PKI/kubelet"
  cat >"$STATE/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: "$PKI/ca.crt"}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$RUN/containerd.sock
oomScoreAdj: 0
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
  memory.available: "100Mi"
serializeImagePulls: false
maxPods: 250
resolvConf: /etc/resolv.conf
volumePluginDir: $STATE/kubelet-plugins
EOF
  start kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" \
    --kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" --cert-dir="$PKI/kubelet" \
    --hostname-override=$NODE_NAME --node-ip=$BRIDGE_IP --v=1
  wait_for kubelet 120 curl -fsS http://127.0.0.1:10248/healthz
  wait_for kubelet 120 node_ready
}

# Services: kube-proxy (iptables mode) turns ClusterIPs into DNAT rules for pods and for this host.
# Pods reach the apiserver through the `kubernetes` Service, whose endpoint is the advertise address
# on the bridge ($BRIDGE_IP:$API_PORT); the apiserver itself listens on loopback only, so a socat
# forwarder listens on the bridge address and relays to it. NodePorts stay on the bridge address.
start_kube_proxy() {
  write_kubeconfig "$STATE/kube-proxy.kubeconfig" system:kube-proxy
  cat >"$STATE/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$STATE/kube-proxy.kubeconfig"}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: "$NODE_NAME"
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$BRIDGE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml" --v=1
  wait_for kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz
  start api-forwarder socat "TCP-LISTEN:$API_PORT,bind=$BRIDGE_IP,fork,reuseaddr" "TCP:127.0.0.1:$API_PORT"
  wait_for api-forwarder 30 curl -fsS --cacert "$PKI/ca.crt" -o /dev/null "https://$BRIDGE_IP:$API_PORT/version"
  wait_for kube-proxy 60 service_routed
}

# The `kubernetes` Service answers through kube-proxy's rules (the certificate covers its IP).
service_routed() {
  curl -fsS --cacert "$PKI/ca.crt" -o /dev/null "https://${SERVICE_CIDR%.0/*}.1:443/version"
}

node_ready() {
  [[ "$(kubectl_admin get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == "True" ]]
}

start_provisioner() {
  mkdir -p "$STATE/volumes"
  kubectl_admin apply -f "$CLUSTER_DIR/manifests/storage.yaml" >/dev/null
  start provisioner python3 -u "$CLUSTER_DIR/provisioner.py" --kubeconfig "$STATE/kubeconfig" \
    --volumes "$STATE/volumes" --node "$NODE_NAME"
  sleep 1
  alive provisioner || fail_component provisioner "process exited"
}

default_sa_exists() { kubectl_admin -n default get serviceaccount default; }

running() {
  local c
  [[ -f "$STATE/kubeconfig" ]] || return 1
  for c in "${COMPONENTS[@]}"; do alive "$c" || return 1; done
  kubectl_admin get --raw /readyz >/dev/null 2>&1
}

# --- teardown -------------------------------------------------------------------------------------

stop_pid() {
  local name="$1" p
  p="$(pid_of "$name")"
  [[ -n "$p" ]] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$p" 2>/dev/null || true
    log "stopped $name (pid $p)"
  fi
  rm -f "$PIDS/$name.pid"
}

# Kill every process left in the pod cgroups (containers, shims' children) and remove the cgroups.
clean_cgroups() {
  local d
  for d in /sys/fs/cgroup/*/kubepods* /sys/fs/cgroup/*/kubepods.slice; do
    [[ -d "$d" ]] || continue
    find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  sleep 0.5
  for d in /sys/fs/cgroup/*/kubepods*; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

# containerd's shims outlive containerd itself; they are ours when they talk to our socket.
kill_shims() {
  local p
  for p in $(pgrep -f "containerd-shim.*$RUN/containerd.sock" || true); do kill -KILL "$p" 2>/dev/null || true; done
}

unmount_under() {
  local root="$1" m
  [[ -n "$root" ]] || return 0
  # Deepest first.
  awk -v r="$root" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

clean_network() {
  local ns
  for ns in /run/netns/cni-*; do
    [[ -e "$ns" ]] || continue
    if grep -q "$ns" /proc/mounts; then umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true; fi
    rm -f "$ns"
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link delete "$BRIDGE" || true
  ip route show "$POD_CIDR" 2>/dev/null | grep -q . && ip route delete "$POD_CIDR" 2>/dev/null || true
  while iptables -C FORWARD -j NKVM-FORWARD 2>/dev/null; do iptables -D FORWARD -j NKVM-FORWARD; done
  iptables -F NKVM-FORWARD 2>/dev/null && iptables -X NKVM-FORWARD 2>/dev/null || true
  # Chains made by the CNI portmap/bridge plugins for this cluster's pods.
  local table chain
  for table in nat filter; do
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N CNI-/ {print $2}'); do
      iptables -t "$table" -S 2>/dev/null | grep -E -- "-j $chain( |$)" | sed 's/^-A/-D/' | while read -r rule; do
        # shellcheck disable=SC2086
        iptables -t "$table" $rule 2>/dev/null || true
      done
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N CNI-/ {print $2}'); do
      iptables -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $(iptables -t "$table" -S 2>/dev/null | awk '/^-N CNI-/ {print $2}'); do
      iptables -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# Stops a cluster whose state dir is $1 (this clone's, or one another clone left behind).
teardown() {
  local state="$1" c
  local saved_state="$STATE" saved_pids="$PIDS"
  STATE="$state"
  PIDS="$state/pids"
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[$i]}"
    [[ "$c" == containerd ]] && { kill_shims; clean_cgroups; }
    stop_pid "$c"
  done
  kill_shims
  clean_cgroups
  # kube-proxy's iptables chains (KUBE-*), removed by kube-proxy itself.
  local proxy="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin/kube-proxy"
  if [[ -x "$proxy" ]] && iptables -t nat -S 2>/dev/null | grep -q -- '-N KUBE-'; then
    "$proxy" --cleanup >/dev/null 2>&1 || log "warning: kube-proxy --cleanup failed"
  fi
  unmount_under "$state/kubelet"
  unmount_under "$state/containerd"
  unmount_under "$RUN"
  clean_network
  rm -rf "$RUN"
  # Keep logs for post-mortems; everything else the cluster made goes.
  if [[ -d "$state" ]]; then
    find "$state" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} + 2>/dev/null || {
      log "warning: some files under $state could not be removed (still mounted?)"
    }
  fi
  STATE="$saved_state"
  PIDS="$saved_pids"
}
