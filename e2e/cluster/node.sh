#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stops or starts one node's container runtime of the running local cluster,
# for tests of what Coral does when a node's runtime goes away.
#
#   node.sh stop-runtime NODE      SIGKILL NODE's containerd (its containers live on)
#   node.sh start-runtime NODE     start it again from its config and wait for CRI
#   node.sh restart-runtime NODE
#
# The kubelet of NODE reconnects by itself once its runtime is back.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  echo "usage: $0 stop-runtime|start-runtime|restart-runtime NODE (one of: ${NODES[*]})" >&2
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

main() {
  [ $# -eq 2 ] || usage
  local cmd=$1 node=$2
  [[ " ${NODES[*]} " == *" $node "* ]] || usage
  require_root
  lock_cluster
  [ -d "$(node_dir "$node")" ] || die "no cluster in $CLUSTER_DIR; run make cluster-up"
  case "$cmd" in
    stop-runtime) stop_runtime "$node" ;;
    start-runtime) start_runtime "$node" ;;
    restart-runtime) stop_runtime "$node" && start_runtime "$node" ;;
    *) usage ;;
  esac
}

main "$@"
