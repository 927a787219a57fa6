#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Removes a node that add-node.sh added: deletes the Node object, stops its
# kubelet, its containerd and its containers, and removes its directory,
# cgroup and bridge. Harmless when the node is already gone.
#
#   remove-node.sh NODE
set -euo pipefail

# shellcheck source=up.sh
source "$(dirname "${BASH_SOURCE[0]}")/up.sh"

main() {
  [ $# -eq 1 ] || { echo "usage: $0 coral-node-N (a node add-node.sh added)" >&2; exit 2; }
  local node=$1 d pid pids h br
  [[ $node =~ ^coral-node-([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 4 ] ||
    die "$node was not added by add-node.sh (only coral-node-4 and up can be removed)"
  require_root
  lock_cluster
  [ -f "$STATE_FILE" ] || die "no cluster in $CLUSTER_DIR"
  # shellcheck source=/dev/null
  source "$STATE_FILE"
  derive_names
  KUBECTL=$(kubectl_bin)
  kc delete node "$node" --ignore-not-found --wait=false >/dev/null || warn "could not delete the Node object $node"
  for d in "kubelet-$node" "containerd-$node"; do
    if daemon_alive "$d"; then
      pid=$(daemon_pid "$d")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do ours "$pid" || break; sleep 0.1; done
      ours "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$CLUSTER_DIR/pids/$d.pid"
  done
  # The node's containers and shims: every process in its cgroup, or whose
  # command line names its directory.
  for _ in $(seq 1 25); do
    pids=$( {
      while read -r h; do
        [ -d "$h$(node_cgroup "$node")" ] && find "$h$(node_cgroup "$node")" -name cgroup.procs -exec cat {} + 2>/dev/null || true
      done < <(cgroup_mounts)
      # grep exits 2 when a process vanished while it read: not an error here.
      grep -lsF "$(node_dir "$node")/" /proc/[0-9]*/cmdline | sed 's#/proc/\([0-9]*\)/cmdline#\1#' || true
    } | sort -u)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    sleep 0.2
  done
  unmount_all "$(node_dir "$node")"
  while read -r h; do
    [ -d "$h$(node_cgroup "$node")" ] && find "$h$(node_cgroup "$node")" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done < <(cgroup_mounts)
  br=$(node_bridge "$node")
  ip link show "$br" >/dev/null 2>&1 && { ip link delete "$br" 2>/dev/null || warn "could not delete bridge $br"; }
  rm -rf --one-file-system "$(node_dir "$node")"
  rm -f "$PKI/kubelet-$node".*
  [ -f "$CLUSTER_DIR/added-nodes" ] && sed -i "/^$node\$/d" "$CLUSTER_DIR/added-nodes"
  log "$node removed"
}

main "$@"
