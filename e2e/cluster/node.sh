#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stops and starts single parts of the running local cluster, for tests of
# what Coral does when they fail.
#
#   node.sh stop-runtime NODE      SIGKILL NODE's containerd (its containers live on)
#   node.sh start-runtime NODE     start it again from its config and wait for CRI
#   node.sh restart-runtime NODE
#   node.sh stop-kubelet NODE      SIGKILL NODE's kubelet (its pods live on, unreported)
#   node.sh start-kubelet NODE     start it again with the same command line; wait until
#                                  the node is registered (it re-registers a deleted Node),
#                                  annotated as up.sh does, and Ready
#   node.sh restart-kubelet NODE
#   node.sh stop-apiserver         SIGTERM kube-apiserver (SIGKILL after 5s)
#   node.sh start-apiserver        start it again with the same command line (same port,
#                                  certificates, flags) and wait for /readyz
#   node.sh restart-apiserver
#   node.sh set-registry-host NODE HOST ENDPOINT
#                                  NODE's containerd pulls images named HOST/... from
#                                  http://ENDPOINT (e.g. a fault proxy); read at every pull
#   node.sh unset-registry-host NODE HOST
#
# The kubelet of NODE reconnects by itself once its runtime is back; every
# client of the API server (kubelets, controllers, Coral's watch) reconnects
# once it is back.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat >&2 <<EOT
usage: $0 stop-runtime|start-runtime|restart-runtime NODE
       $0 stop-kubelet|start-kubelet|restart-kubelet NODE
       $0 stop-apiserver|start-apiserver|restart-apiserver
       $0 set-registry-host NODE HOST ENDPOINT
       $0 unset-registry-host NODE HOST
NODE is one of: ${NODES[*]}
EOT
  exit 2
}

stop_runtime() {
  local node=$1 pid
  if daemon_alive "containerd-$node"; then
    pid=$(daemon_pid "containerd-$node")
    kill -KILL "$pid"
    while [ -e "/proc/$pid/cmdline" ] && ours "$pid"; do sleep 0.1; done
    log "killed containerd of $node (pid $pid)"
  else
    log "containerd of $node is not running"
  fi
}

start_runtime() {
  local node=$1
  if daemon_alive "containerd-$node"; then
    log "containerd of $node is already running"
    return 0
  fi
  start_containerd "$node"
  log "started containerd of $node (pid $(daemon_pid "containerd-$node"))"
}

stop_kubelet() { stop_daemon "kubelet-$1" KILL; }

node_ready() {
  [ "$(cluster_kubectl get node "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

kubelet_healthy() { [ "$(curl -s --max-time 2 "http://127.0.0.1:$1/healthz")" = ok ]; }

start_kubelet() {
  local node=$1 name=kubelet-$1 config port healthz
  # The ports are in the kubelet's config file (written by up.sh).
  config=$(node_dir "$node")/kubelet/config.yaml
  port=$(awk '$1 == "port:" {print $2}' "$config")
  healthz=$(awk '$1 == "healthzPort:" {print $2}' "$config")
  if ! daemon_alive "$name"; then
    wait_port_free "$port" "$name"
    wait_port_free "$healthz" "$name (healthz)"
    restart_daemon_recorded "$name"
  fi
  wait_for "$name" 60 "the kubelet of $node to be healthy" kubelet_healthy "$healthz"
  wait_for "$name" 60 "$node to be registered" cluster_kubectl get node "$node"
  # A Node deleted while its kubelet was down comes back without up.sh's
  # annotations (labels and taints come from the kubelet's flags and config).
  cluster_kubectl annotate --overwrite node "$node" >/dev/null \
    "kubeadm.alpha.kubernetes.io/cri-socket=unix://$(node_socket "$node")" \
    "coral.dev/host-root=$(node_host_root "$node")"
  wait_for "$name" 120 "$node to be Ready" node_ready "$node"
  log "$node is Ready"
}

apiserver_ready() { [ "$(curl -sk --max-time 2 "https://127.0.0.1:$1/readyz")" = ok ]; }

# kube-apiserver closes its port within a second of SIGTERM, then may take
# 20s and more to finish shutting down: it gets 5s.
stop_apiserver() { stop_daemon kube-apiserver TERM 5; }

start_apiserver() {
  local port
  [ -s "$(daemon_argv_file kube-apiserver)" ] || daemon_alive kube-apiserver ||
    die "kube-apiserver is not running and node.sh did not stop it; run make cluster-up"
  if ! daemon_alive kube-apiserver; then
    port=$(flag_value --secure-port kube-apiserver)
    wait_port_free "$port" kube-apiserver
    restart_daemon_recorded kube-apiserver
  else
    port=$(tr '\0' '\n' <"/proc/$(daemon_pid kube-apiserver)/cmdline" | awk 'p {print; exit} $0 == "--secure-port" {p = 1}')
  fi
  wait_for kube-apiserver 120 "the API server to be ready" apiserver_ready "$port"
  log "the API server on 127.0.0.1:$port is ready"
}

main() {
  [ $# -ge 1 ] || usage
  local cmd=$1
  shift
  case "$cmd" in
    stop-apiserver | start-apiserver | restart-apiserver) [ $# -eq 0 ] || usage ;;
    set-registry-host) [ $# -eq 3 ] || usage ;;
    unset-registry-host) [ $# -eq 2 ] || usage ;;
    *) [ $# -eq 1 ] || usage ;;
  esac
  if [ $# -ge 1 ]; then
    [[ " ${NODES[*]} " == *" $1 "* ]] || usage
  fi
  require_root
  lock_cluster
  [ -d "$CLUSTER_DIR/pids" ] || die "no cluster in $CLUSTER_DIR; run make cluster-up"
  case "$cmd" in
    stop-runtime) stop_runtime "$1" ;;
    start-runtime) start_runtime "$1" ;;
    restart-runtime) stop_runtime "$1" && start_runtime "$1" ;;
    stop-kubelet) stop_kubelet "$1" ;;
    start-kubelet) start_kubelet "$1" ;;
    restart-kubelet) stop_kubelet "$1" && start_kubelet "$1" ;;
    stop-apiserver) stop_apiserver ;;
    start-apiserver) start_apiserver ;;
    restart-apiserver) stop_apiserver && start_apiserver ;;
    set-registry-host) write_registry_redirect "$1" "$2" "$3" && log "$1 pulls $2/... from http://$3" ;;
    unset-registry-host) remove_registry_redirect "$1" "$2" && log "$1 pulls $2/... as before" ;;
    *) usage ;;
  esac
}

main "$@"
