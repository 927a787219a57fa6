#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Starts the local offline multi-node cluster (make cluster-up):
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler;
#   three nodes, each a kubelet with its own containerd (own socket, root, state,
#   cgroup root, CNI bridge): coral-node-1 and -2 on containerd 2.x (pool=web),
#   coral-node-3 on Debian's containerd 1.6 (pool=batch, tainted
#   dedicated=batch:NoSchedule);
#   two registries on 127.0.0.1: a plain one and one with htpasswd auth.
#
# Every port is picked free at start. Everything lives in the state directory
# (see lib.sh) and is described by the sourceable file $CLUSTER_DIR/env.
#
# Idempotent: when the cluster is already up it only checks it, re-pushes the
# images and rewrites the env file; leftovers of a crashed cluster are removed
# first (as by down.sh) and the cluster is started anew.
#
# Knobs (environment): CORAL_CLUSTER_DIR (state directory), CORAL_CACHE
# (component cache), CORAL_NODE_IP (address the nodes report),
# CORAL_SKIP_JOBIMAGE=1 (do not build/push the worker image).
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKI=$CLUSTER_DIR/pki
STATE_FILE=$CLUSTER_DIR/state.env
ENV_FILE=$CLUSTER_DIR/env
SERVICE_CIDR=10.0.0.0/24

# ---- prerequisites ------------------------------------------------------------

check_deps() {
  local missing=() c
  for c in etcd docker-registry containerd containerd-shim-runc-v2 runc htpasswd openssl curl ss ip setsid go; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  cni_bin_dir >/dev/null 2>&1 || missing+=(containernetworking-plugins)
  if [ ${#missing[@]} -gt 0 ]; then
    log "missing: ${missing[*]}; installing the cluster's dependencies"
    bash "$CLUSTER_LIB_DIR/install-deps.sh"
  fi
}

# cni_bin_dir prints where the CNI plugins are (Debian: /usr/lib/cni).
cni_bin_dir() {
  local d
  for d in /usr/lib/cni /opt/cni/bin; do
    [ -x "$d/bridge" ] && [ -x "$d/host-local" ] && [ -x "$d/loopback" ] && echo "$d" && return 0
  done
  return 1
}

kubectl_bin() {
  if command -v kubectl >/dev/null 2>&1; then
    command -v kubectl
  else
    # No kubectl on this machine: build the one matching the cluster.
    bash "$CLUSTER_LIB_DIR/build-components.sh" kubectl >/dev/null
    echo "$K8S_BIN/kubectl"
  fi
}

build_components() {
  log "checking the component cache ($CORAL_CACHE; builds only what is missing)"
  bash "$CLUSTER_LIB_DIR/build-components.sh" all >/dev/null
}

# build_tools builds imagetool and the pause binary from this repository.
build_tools() {
  log "building imagetool and pause into $TOOLS_DIR"
  mkdir -p "$TOOLS_DIR"
  (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$TOOLS_DIR/" \
    ./e2e/cmd/imagetool ./e2e/cluster/pause)
}

check_path_lengths() {
  # Unix socket paths are limited to 107 bytes; the deepest one is kubelet's
  # pod-resources socket.
  local longest
  longest="$(node_dir coral-node-1)/kubelet/pod-resources/kubelet.sock"
  [ ${#longest} -le 107 ] ||
    die "state directory $CLUSTER_DIR is too long for unix sockets ($longest); set CORAL_CLUSTER_DIR to a shorter path"
}

detect_node_ip() {
  local ip=${CORAL_NODE_IP:-}
  [ -n "$ip" ] || ip=$(ip -4 -o route get 192.0.2.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
  [ -n "$ip" ] || ip=$(ip -4 -o addr show scope global | awk '{split($4, a, "/"); print a[1]; exit}')
  # A loopback node IP is refused by kubelet, and kubectl logs/exec need the
  # kubelets reachable at the address their node reports.
  [ -n "$ip" ] || die "found no non-loopback IPv4 address for the nodes; set CORAL_NODE_IP"
  echo "$ip"
}

# ---- state --------------------------------------------------------------------

choose_ports() {
  NODE_IP=$(detect_node_ip)
  pick_port ETCD_PORT
  pick_port ETCD_PEER_PORT
  pick_port APISERVER_PORT
  pick_port KCM_PORT
  pick_port SCHEDULER_PORT
  pick_port REGISTRY_PORT
  pick_port AUTH_REGISTRY_PORT
  local node i
  for node in "${NODES[@]}"; do
    i=$(node_index "$node")
    pick_port "KUBELET_PORT_$i"
    pick_port "KUBELET_HEALTHZ_PORT_$i"
  done
  AUTH_USER=coral
  AUTH_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
}

save_state() {
  local v
  {
    echo "# Chosen by up.sh at $(date -Is); read by up.sh and node.sh."
    for v in NODE_IP ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT \
      REGISTRY_PORT AUTH_REGISTRY_PORT AUTH_USER AUTH_PASSWORD \
      KUBELET_PORT_1 KUBELET_PORT_2 KUBELET_PORT_3 \
      KUBELET_HEALTHZ_PORT_1 KUBELET_HEALTHZ_PORT_2 KUBELET_HEALTHZ_PORT_3; do
      printf '%s=%q\n' "$v" "${!v}"
    done
  } >"$STATE_FILE"
}

derive_names() {
  REGISTRY=127.0.0.1:$REGISTRY_PORT
  AUTH_REGISTRY=127.0.0.1:$AUTH_REGISTRY_PORT
  PAUSE_IMAGE=$REGISTRY/coral/pause:v1
  SAMPLE_IMAGES="$REGISTRY/samples/hello:v1 $REGISTRY/samples/tools:v1"
  AUTH_SAMPLE_IMAGE=$AUTH_REGISTRY/samples/private:v1
  KUBECONFIG_FILE=$CLUSTER_DIR/kubeconfig
}

kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

# cluster_healthy: is a cluster of ours up and whole (every daemon alive, API
# ready, every node Ready)?
cluster_healthy() {
  [ -f "$STATE_FILE" ] || return 1
  # shellcheck source=/dev/null
  source "$STATE_FILE"
  derive_names
  local d node
  for d in etcd kube-apiserver kube-controller-manager kube-scheduler registry registry-auth; do
    daemon_alive "$d" || { log "$d is not running"; return 1; }
  done
  for node in "${NODES[@]}"; do
    daemon_alive "containerd-$node" || { log "containerd of $node is not running"; return 1; }
    daemon_alive "kubelet-$node" || { log "kubelet of $node is not running"; return 1; }
  done
  kc get --raw /readyz >/dev/null 2>&1 || { log "the API server is not ready"; return 1; }
  for node in "${NODES[@]}"; do
    [ "$(kc get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] ||
      { log "node $node is not Ready"; return 1; }
  done
  no_not_ready_taints || { log "a node still has the not-ready taint"; return 1; }
}

# ---- certificates and kubeconfigs --------------------------------------------

# new_cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]: an EC key and a
# certificate signed by the cluster CA, in $PKI/NAME.{key,crt}.
new_cert() {
  local name=$1 subj=$2 eku=$3 sans=${4:-}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# write_kubeconfig FILE USER: a kubeconfig for the client cert $PKI/USER.*,
# with the certificates embedded so the file can be copied anywhere.
write_kubeconfig() {
  local file=$1 user=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: coral-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 <"$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$PKI/$user.crt")
    client-key-data: $(base64 -w0 <"$PKI/$user.key")
contexts:
- name: coral-local
  context:
    cluster: coral-local
    user: $user
current-context: coral-local
EOF
  chmod 600 "$file"
}

make_pki() {
  log "creating certificates"
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=coral-local-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -out "$PKI/ca.crt" 2>/dev/null
  new_cert kube-apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$NODE_IP,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The API server's client certificate towards kubelets (logs, exec).
  new_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  new_cert admin "/O=system:masters/CN=coral-admin" clientAuth
  # system:masters: with --use-service-account-credentials=false every
  # controller acts as the controller manager itself, and the built-in
  # system:kube-controller-manager role does not cover them all.
  new_cert kube-controller-manager "/O=system:masters/CN=system:kube-controller-manager" clientAuth
  new_cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  local node
  for node in "${NODES[@]}"; do
    # The Node authorizer knows a kubelet by this name and group.
    new_cert "kubelet-$node" "/O=system:nodes/CN=system:node:$node" clientAuth
  done
  # Service-account token signing key pair.
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/sa.key" 2>/dev/null
  openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

  write_kubeconfig "$KUBECONFIG_FILE" admin
  write_kubeconfig "$PKI/kube-controller-manager.kubeconfig" kube-controller-manager
  write_kubeconfig "$PKI/kube-scheduler.kubeconfig" kube-scheduler
  for node in "${NODES[@]}"; do
    write_kubeconfig "$PKI/kubelet-$node.kubeconfig" "kubelet-$node"
  done
}

# ---- registries and images ----------------------------------------------------

# start_registry NAME PORT [HTPASSWD]: Debian's docker-registry (CNCF
# distribution) on 127.0.0.1:PORT, with storage in the state directory.
start_registry() {
  local name=$1 port=$2 htpasswd=${3:-} dir=$CLUSTER_DIR/registry/$1
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: warn, accesslog: {disabled: true}}"
    # No blob descriptor cache: with deletes enabled it can report deleted
    # blobs as present.
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir/data}"
    echo "  delete: {enabled: true}"
    echo "  maintenance: {uploadpurging: {enabled: false}}"
    echo "http:"
    echo "  addr: 127.0.0.1:$port"
    echo "  headers: {X-Content-Type-Options: [nosniff]}"
    if [ -n "$htpasswd" ]; then
      echo "auth:"
      echo "  htpasswd: {realm: coral-local, path: $htpasswd}"
    fi
  } >"$dir/config.yml"
  ensure_port_free "$port" "registry $name"
  start_daemon "$name" docker-registry serve "$dir/config.yml"
}

registry_answers() { # URL WANT_STATUS
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = "$2" ]
}

start_registries() {
  log "starting registries on 127.0.0.1:$REGISTRY_PORT (plain) and 127.0.0.1:$AUTH_REGISTRY_PORT (htpasswd)"
  mkdir -p "$CLUSTER_DIR/registry/registry-auth"
  htpasswd -Bbn "$AUTH_USER" "$AUTH_PASSWORD" >"$CLUSTER_DIR/registry/registry-auth/htpasswd" 2>/dev/null
  start_registry registry "$REGISTRY_PORT"
  start_registry registry-auth "$AUTH_REGISTRY_PORT" "$CLUSTER_DIR/registry/registry-auth/htpasswd"
}

wait_registries() {
  wait_for registry 20 "the registry on port $REGISTRY_PORT" registry_answers "http://$REGISTRY/v2/" 200
  wait_for registry-auth 20 "the auth registry on port $AUTH_REGISTRY_PORT" registry_answers "http://$AUTH_REGISTRY/v2/" 401
}

imagetool() { "$TOOLS_DIR/imagetool" "$@"; }

# push_images pushes the pause image (every node's sandbox image) and the
# sample images. Fixed seeds keep their digests the same from run to run.
push_images() {
  log "pushing the pause image and sample images"
  imagetool binary --ref "$PAUSE_IMAGE" --binary "$TOOLS_DIR/pause" --entrypoint /pause >/dev/null
  imagetool random --ref "$REGISTRY/samples/hello:v1" --layers 2 --layer-size 150000 --seed 1 >/dev/null
  imagetool random --ref "$REGISTRY/samples/tools:v1" --layers 3 --layer-size 100000 --seed 2 >/dev/null
  imagetool random --ref "$AUTH_SAMPLE_IMAGE" --layers 2 --layer-size 100000 --seed 3 \
    --username "$AUTH_USER" --password "$AUTH_PASSWORD" >/dev/null
}

# push_worker_image runs the lead's `make jobimage`, which prints the pushed
# reference as the last line of its stdout.
push_worker_image() {
  WORKER_IMAGE=""
  if [ "${CORAL_SKIP_JOBIMAGE:-}" = 1 ]; then
    warn "CORAL_SKIP_JOBIMAGE=1: not building the worker image; CORAL_WORKER_IMAGE stays empty"
    return 0
  fi
  local dry
  dry=$(make -C "$REPO_ROOT" --no-print-directory -n jobimage REGISTRY="$REGISTRY" 2>&1 || true)
  if [ -z "$dry" ] || [[ $dry == *"Nothing to be done"* ]] || [[ $dry == *"No rule to make target"* ]]; then
    warn "make jobimage has no recipe yet: CORAL_WORKER_IMAGE stays empty"
    return 0
  fi
  log "building and pushing the worker image (make jobimage REGISTRY=$REGISTRY)"
  local out
  out=$(make -C "$REPO_ROOT" --no-print-directory jobimage REGISTRY="$REGISTRY") ||
    die "make jobimage REGISTRY=$REGISTRY failed"
  WORKER_IMAGE=$(printf '%s\n' "$out" | awk 'NF {line = $0} END {print line}')
  [[ $WORKER_IMAGE == "$REGISTRY"/* ]] ||
    die "make jobimage printed '$WORKER_IMAGE' as its last line; want a reference in $REGISTRY"
  log "worker image: $WORKER_IMAGE"
}

# push_controller_image runs `make controllerimage` (the controller mode's
# image) for this machine's platform and records the pushed reference.
push_controller_image() {
  CONTROLLER_IMAGE=""
  if [ "${CORAL_SKIP_JOBIMAGE:-}" = 1 ]; then
    return 0
  fi
  log "building and pushing the controller image (make controllerimage REGISTRY=$REGISTRY)"
  local out
  out=$(make -C "$REPO_ROOT" --no-print-directory controllerimage REGISTRY="$REGISTRY" \
    CONTROLLER_PLATFORMS="linux/$(go env GOARCH)") || die "make controllerimage REGISTRY=$REGISTRY failed"
  CONTROLLER_IMAGE=$(printf '%s\n' "$out" | awk 'NF {line = $0} END {print line}')
  [[ $CONTROLLER_IMAGE == "$REGISTRY"/* ]] ||
    die "make controllerimage printed '$CONTROLLER_IMAGE' as its last line; want a reference in $REGISTRY"
  log "controller image: $CONTROLLER_IMAGE"
}

# ---- etcd and the control plane -----------------------------------------------

https_healthy() { # PORT PATH
  [ "$(curl -sk --max-time 2 "https://127.0.0.1:$1$2")" = ok ]
}

start_etcd() {
  ensure_port_free "$ETCD_PORT" etcd
  ensure_port_free "$ETCD_PEER_PORT" "etcd (peer)"
  log "starting etcd on 127.0.0.1:$ETCD_PORT"
  # --unsafe-no-fsync: test data, and fsync dominates etcd's latency on a busy disk.
  start_daemon etcd etcd --name coral --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "coral=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state new \
    --unsafe-no-fsync
}

start_apiserver() {
  ensure_port_free "$APISERVER_PORT" kube-apiserver
  log "starting kube-apiserver on 127.0.0.1:$APISERVER_PORT"
  # WatchList=false: Debian's etcd 3.4 lacks RequestWatchProgress, which
  # streaming watch-lists need (they fail with a 422 and clients stall).
  # --endpoint-reconciler-type=none: no kube-proxy, no kubernetes service to serve.
  start_daemon kube-apiserver "$K8S_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
    --tls-cert-file "$PKI/kube-apiserver.crt" --tls-private-key-file "$PKI/kube-apiserver.key" \
    --client-ca-file "$PKI/ca.crt" \
    --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP,Hostname \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode Node,RBAC --allow-privileged=true \
    --endpoint-reconciler-type none \
    --feature-gates WatchList=false \
    --profiling=false --v=1
}

start_controllers() {
  ensure_port_free "$KCM_PORT" kube-controller-manager
  ensure_port_free "$SCHEDULER_PORT" kube-scheduler
  log "starting kube-controller-manager (:$KCM_PORT) and kube-scheduler (:$SCHEDULER_PORT)"
  local kcm=$PKI/kube-controller-manager.kubeconfig sched=$PKI/kube-scheduler.kubeconfig
  start_daemon kube-controller-manager "$K8S_BIN/kube-controller-manager" \
    --kubeconfig "$kcm" --authentication-kubeconfig "$kcm" --authorization-kubeconfig "$kcm" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --leader-elect=false --use-service-account-credentials=false \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --node-monitor-period 1s \
    --cluster-name coral-local --flex-volume-plugin-dir "$CLUSTER_DIR/kcm-volume-plugins" \
    --authentication-skip-lookup --profiling=false --v=1
  start_daemon kube-scheduler "$K8S_BIN/kube-scheduler" \
    --kubeconfig "$sched" --authentication-kubeconfig "$sched" --authorization-kubeconfig "$sched" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
    --leader-elect=false --authentication-skip-lookup --profiling=false --v=1
}

# ---- nodes ------------------------------------------------------------------

# prepare_cgroups creates NODE's cgroup root in every hierarchy. kubelet
# refuses a cgroupRoot that does not exist, and a cgroup root per kubelet keeps
# one kubelet from garbage-collecting the other's pods. A new cpuset cgroup
# starts with no CPUs or memory nodes; copy the parent's.
prepare_cgroups() {
  local node=$1 h d f
  while read -r h; do
    for d in "$h/$CGROUP_PARENT" "$h$(node_cgroup "$node")"; do
      mkdir -p "$d"
      for f in cpuset.cpus cpuset.mems; do
        [ -f "$d/$f" ] && [ -z "$(cat "$d/$f")" ] && cat "$(dirname "$d")/$f" >"$d/$f"
      done
    done
  done < <(cgroup_mounts)
  return 0
}

# write_registry_hosts DIR: containerd registry host configs, so every node
# pulls from both local registries over plain http.
write_registry_hosts() {
  local certs=$1 host
  for host in "$REGISTRY" "$AUTH_REGISTRY"; do
    mkdir -p "$certs/$host"
    cat >"$certs/$host/hosts.toml" <<EOF
server = "http://$host"

[host."http://$host"]
  capabilities = ["pull", "resolve", "push"]
EOF
  done
}

write_cni_config() {
  local node=$1 dir
  dir=$(node_dir "$node")/cni
  mkdir -p "$dir/net.d" "$dir/ipam"
  # A bridge and subnet per node; IPAM state in the node's directory (not the
  # host-wide /var/lib/cni). Pods normally use hostNetwork (there is no
  # kube-proxy); this only has to make the node's network Ready.
  cat >"$dir/net.d/10-coral.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$(node_bridge "$node")",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$(node_subnet "$node")"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$dir/ipam"
      }
    }
  ]
}
EOF
}

# overlay_volatile_ok says whether this kernel mounts an overlay with the
# "volatile" option (Linux 5.10 and later) on the cluster's filesystem.
overlay_volatile_ok() {
  local d ok=1
  d=$(mktemp -d "$CLUSTER_DIR/overlay-probe.XXXXXX") || return 1
  mkdir -p "$d/lower" "$d/upper" "$d/work" "$d/merged"
  if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work,volatile" "$d/merged" 2>/dev/null; then
    umount "$d/merged" && ok=0
  fi
  rm -rf "$d"
  return "$ok"
}

# overlay_config prints the containerd 2.x overlay snapshotter's table.
#
# The local cluster's nodes keep their containerd roots on one filesystem,
# and unmounting a container's overlay syncs its upper layer's whole
# filesystem: the first container to exit on one node wrote back the layers
# every other node was still pulling, and stalled those pulls (~0.3 s per
# run in `make bench-prefetch`, docs/scale.md). A real node's exit syncs
# only its own disk. "volatile" mounts skip that sync; their cost, a
# container layer unusable after the machine crashes, is nothing here: the
# cluster's state is thrown away by down.sh. (Debian's containerd 1.6, on
# coral-node-3, has no mount_options: its containers' exits still sync.)
overlay_config() {
  overlay_volatile_ok || return 0
  printf '%s\n' "  [plugins.'io.containerd.snapshotter.v1.overlayfs']" "    mount_options = ['volatile']"
}

# write_containerd2_config NODE: containerd 2.x, config version 3.
write_containerd2_config() {
  local node=$1 dir sock
  dir=$(node_dir "$node")/containerd
  sock=$(node_socket "$node")
  cat >"$dir/config.toml" <<EOF
# containerd $CONTAINERD_VERSION for $node (written by e2e/cluster/up.sh)
version = 3
root = '$dir/root'
state = '$dir/state'
temp = '$dir/tmp'
imports = []

[grpc]
  address = '$sock'
[ttrpc]
  address = '$sock.ttrpc'
[debug]
  address = ''
[metrics]
  address = ''

[plugins]
$(overlay_config)
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      # Nothing can be pulled from the internet: the sandbox is our own pause.
      sandbox = '$PAUSE_IMAGE'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '$dir/certs.d'

  [plugins.'io.containerd.cri.v1.runtime']
    # This machine lacks CAP_SYS_RESOURCE: without this, runc fails to lower
    # oom_score_adj and every sandbox dies with "can't get final child's PID".
    restrict_oom_score_adj = true
    # Network namespaces under our state directory, not /var/run/netns.
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        # Our own shim of the same release, never Debian's 1.6 one.
        runtime_path = '$CONTAINERD2_DIR/containerd-shim-runc-v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = false
          # runc's state per node instead of the host-wide /run/containerd/runc.
          Root = '$dir/runc'
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$(cni_bin_dir)']
      conf_dir = '$(node_dir "$node")/cni/net.d'
      max_conf_num = 1

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  [plugins.'io.containerd.transfer.v1.local']
    config_path = '$dir/certs.d'

  [plugins.'io.containerd.internal.v1.opt']
    path = '$dir/opt'

  # Two NRI instances would share /var/run/nri/nri.sock.
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
EOF
}

# write_containerd1_config NODE: Debian's containerd 1.6, config version 2.
write_containerd1_config() {
  local node=$1 dir sock
  dir=$(node_dir "$node")/containerd
  sock=$(node_socket "$node")
  cat >"$dir/config.toml" <<EOF
# Debian's containerd 1.6 for $node (written by e2e/cluster/up.sh)
version = 2
root = "$dir/root"
state = "$dir/state"
imports = []

[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # See the 2.x config: no CAP_SYS_RESOURCE on this machine.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          Root = "$dir/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$(cni_bin_dir)"
      conf_dir = "$(node_dir "$node")/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$dir/certs.d"

  [plugins."io.containerd.internal.v1.opt"]
    path = "$dir/opt"
EOF
}

write_kubelet_config() {
  local node=$1 i dir port healthz taint taints=""
  i=$(node_index "$node")
  dir=$(node_dir "$node")
  port=KUBELET_PORT_$i
  healthz=KUBELET_HEALTHZ_PORT_$i
  for taint in $(node_taints "$node"); do
    local kv=${taint%%:*}
    taints+="
- key: ${kv%%=*}
  value: ${kv#*=}
  effect: ${taint##*:}"
  done
  cat >"$dir/kubelet/config.yaml" <<EOF
# kubelet of $node (written by e2e/cluster/up.sh)
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# Serve on the address the node reports, so kubectl logs/exec reach it.
address: $NODE_IP
port: ${!port}
healthzBindAddress: 127.0.0.1
healthzPort: ${!healthz}
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: AlwaysAllow
containerRuntimeEndpoint: unix://$(node_socket "$node")
# This machine is cgroup v1 without systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $(node_cgroup "$node")
# No CAP_SYS_RESOURCE here: kubelet may not lower its own oom_score_adj.
oomScoreAdj: 0
podLogsDir: $dir/pod-logs
volumePluginDir: $dir/kubelet/volume-plugins
failSwapOn: false
serializeImagePulls: false
# Tests decide what a node holds: no disk-pressure image GC, loose eviction.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
registerWithTaints:${taints:- []}
EOF
}

prepare_node() {
  local node=$1 dir
  dir=$(node_dir "$node")
  mkdir -p "$dir/containerd/certs.d" "$dir/kubelet/root" "$dir/kubelet/pki" "$dir/pod-logs" "$(node_host_root "$node")"
  write_registry_hosts "$dir/containerd/certs.d"
  write_cni_config "$node"
  case "$(node_runtime "$node")" in
    containerd2) write_containerd2_config "$node" ;;
    containerd1) write_containerd1_config "$node" ;;
  esac
  write_kubelet_config "$node"
  prepare_cgroups "$node"
}

start_kubelet() {
  local node=$1 i dir port healthz
  i=$(node_index "$node")
  dir=$(node_dir "$node")
  port=KUBELET_PORT_$i
  healthz=KUBELET_HEALTHZ_PORT_$i
  ensure_port_free "${!port}" "kubelet of $node"
  ensure_port_free "${!healthz}" "kubelet healthz of $node"
  start_daemon "kubelet-$node" "$K8S_BIN/kubelet" \
    --config "$dir/kubelet/config.yaml" --kubeconfig "$PKI/kubelet-$node.kubeconfig" \
    --hostname-override "$node" --node-ip "$NODE_IP" \
    --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" \
    --node-labels "$(node_labels "$node")" --v=2
}

node_registered() { kc get node "$1"; }

annotate_nodes() {
  local node
  for node in "${NODES[@]}"; do
    wait_for "kubelet-$node" 60 "$node to register" node_registered "$node"
    # Per-node runtime socket discovery is exercised for real: no two nodes
    # share a socket. host-root stands for the node's "/" for host paths Coral
    # writes to (all nodes share this machine's filesystem).
    kc annotate --overwrite node "$node" >/dev/null \
      "kubeadm.alpha.kubernetes.io/cri-socket=unix://$(node_socket "$node")" \
      "coral.dev/host-root=$(node_host_root "$node")"
  done
}

wait_ready() {
  log "waiting for the nodes to be Ready"
  kc wait --for=condition=Ready node "${NODES[@]}" --timeout=120s >/dev/null ||
    die "nodes not Ready after 120s; see $CLUSTER_DIR/logs/kubelet-*.log"
  # The node lifecycle controller lifts the not-ready taints a moment later;
  # until then the scheduler would leave ordinary pods Pending.
  wait_for kube-controller-manager 60 "the not-ready taints to be lifted" no_not_ready_taints
  wait_for kube-controller-manager 60 "the default service account" kc -n default get serviceaccount default
}

no_not_ready_taints() {
  local keys
  keys=$(kc get nodes -o jsonpath='{.items[*].spec.taints[*].key}') || return 1
  [[ $keys != *node.kubernetes.io/not-ready* ]]
}

# ---- env file -----------------------------------------------------------------

# env_line NAME VALUE prints `export NAME="VALUE"`. Values never need
# escaping (checked), so the file is as easy to parse as to source.
env_line() {
  case "$2" in
    *[\"\$\`\\]*) die "value of $1 needs quoting: $2" ;;
  esac
  printf 'export %s="%s"\n' "$1" "$2"
}

write_env() {
  local node suffix tmp=$ENV_FILE.tmp
  {
    echo "# The local Coral e2e cluster, written by e2e/cluster/up.sh at $(date -Is)."
    echo "# Use: source $ENV_FILE"
    env_line CORAL_CLUSTER_DIR "$CLUSTER_DIR"
    env_line KUBECONFIG "$KUBECONFIG_FILE"
    env_line CORAL_KUBECTL "$KUBECTL"
    env_line CORAL_NODE_IP "$NODE_IP"
    env_line CORAL_REGISTRY "$REGISTRY"
    env_line CORAL_AUTH_REGISTRY "$AUTH_REGISTRY"
    env_line CORAL_AUTH_USER "$AUTH_USER"
    env_line CORAL_AUTH_PASSWORD "$AUTH_PASSWORD"
    env_line CORAL_NODES "${NODES[*]}"
    for node in "${NODES[@]}"; do
      suffix=$(node_env_name "$node")
      suffix=${suffix#CORAL_CRI_}
      env_line "CORAL_CRI_$suffix" "unix://$(node_socket "$node")"
      env_line "CORAL_HOST_ROOT_$suffix" "$(node_host_root "$node")"
      env_line "CORAL_CONTAINERD_PIDFILE_$suffix" "$CLUSTER_DIR/pids/containerd-$node.pid"
    done
    env_line CORAL_CRICTL "$CRICTL"
    env_line CORAL_IMAGETOOL "$TOOLS_DIR/imagetool"
    env_line CORAL_WORKER_IMAGE "$WORKER_IMAGE"
    env_line CORAL_CONTROLLER_IMAGE "${CONTROLLER_IMAGE:-}"
    env_line CORAL_APISERVER "127.0.0.1:$APISERVER_PORT"
    env_line CORAL_PAUSE_IMAGE "$PAUSE_IMAGE"
    env_line CORAL_SAMPLE_IMAGES "$SAMPLE_IMAGES"
    env_line CORAL_AUTH_SAMPLE_IMAGE "$AUTH_SAMPLE_IMAGE"
  } >"$tmp"
  mv "$tmp" "$ENV_FILE"
}

# ---- main ---------------------------------------------------------------------

# start_cluster starts everything, overlapping what does not depend on each
# other: registries, etcd and the three containerds start together; the
# sandbox image only has to be in the registry before the first pod.
start_cluster() {
  choose_ports
  derive_names
  mkdir -p "$CLUSTER_DIR"
  save_state
  make_pki
  local node
  for node in "${NODES[@]}"; do
    prepare_node "$node"
  done

  start_registries
  start_etcd
  log "starting containerd on every node (${NODES[*]})"
  for node in "${NODES[@]}"; do
    launch_containerd "$node"
  done
  wait_registries
  push_images
  wait_for etcd 30 "etcd" curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  start_apiserver
  for node in "${NODES[@]}"; do
    wait_containerd "$node"
  done
  # kubelets retry until the API server answers: starting them now overlaps
  # their own start-up with the API server's.
  log "starting the kubelets"
  for node in "${NODES[@]}"; do
    start_kubelet "$node"
  done
  wait_for kube-apiserver 90 "the API server to be ready" https_healthy "$APISERVER_PORT" /readyz
  start_controllers
  annotate_nodes
  wait_ready
}

# raise_inotify_limits: every containerd and kubelet takes inotify
# instances; with the default of 128 per user a second cluster on the same
# machine (or a busy one) fails with "too many open files" in containerd's
# CNI config watcher. Only ever raised, never lowered.
raise_inotify_limits() {
  local key want have
  for key in max_user_instances:8192 max_user_watches:1048576; do
    want=${key#*:} key=${key%%:*}
    have=$(cat "/proc/sys/fs/inotify/$key" 2>/dev/null || echo 0)
    if [ "$have" -lt "$want" ]; then
      echo "$want" >"/proc/sys/fs/inotify/$key" 2>/dev/null || log "cannot raise fs.inotify.$key ($have); containerd may fail with 'too many open files'"
    fi
  done
}

main() {
  local t0=$SECONDS
  require_root
  raise_inotify_limits
  lock_cluster
  check_path_lengths
  check_deps
  build_components
  build_tools
  KUBECTL=$(kubectl_bin)

  if cluster_healthy; then
    log "the cluster in $CLUSTER_DIR is already up"
    push_images
  else
    if [ -d "$CLUSTER_DIR" ] || [ -n "$(cluster_pids)" ]; then
      log "removing the leftovers of an earlier cluster"
      cluster_down
    fi
    start_cluster
  fi
  push_worker_image
  push_controller_image
  write_env
  log "cluster up in $((SECONDS - t0))s: source $ENV_FILE"
  kc get nodes -L pool >&2
}

# Sourcing this file (for debugging) defines the functions without running.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
