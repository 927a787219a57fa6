#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Adds a node to the running local cluster, as an autoscaler would: its own
# containerd 2.x, a kubelet that registers with the node's labels, the same
# annotations up.sh gives every node. Prints the node name when it is Ready.
#
#   add-node.sh NODE [LABELS]   e.g. add-node.sh coral-node-4 pool=web
#
# NODE must be coral-node-<N> with N >= 4. LABELS defaults to pool=web.
# CORAL_IMAGE_MAX_GC_AGE=30s gives the node's kubelet an imageMaximumGCAge
# (unused images are removed at the next GC pass after that age): for tests
# of pinned images.
# Remove it with remove-node.sh NODE (make cluster-down stops it too, but only
# remove-node.sh deletes its network bridge).
set -euo pipefail

# up.sh defines the node functions and runs nothing when sourced.
# shellcheck source=up.sh
source "$(dirname "${BASH_SOURCE[0]}")/up.sh"

usage() {
  echo "usage: $0 coral-node-N [LABELS]   (N >= 4; LABELS like pool=web,zone=a)" >&2
  exit 2
}

add_node() {
  local node=$1 labels=$2 i
  i=$(node_index "$node")
  NODES+=("$node")
  pick_port "KUBELET_PORT_$i"
  pick_port "KUBELET_HEALTHZ_PORT_$i"
  new_cert "kubelet-$node" "/O=system:nodes/CN=system:node:$node" clientAuth
  write_kubeconfig "$PKI/kubelet-$node.kubeconfig" "kubelet-$node"
  prepare_node "$node"
  if [ -n "${CORAL_IMAGE_MAX_GC_AGE:-}" ]; then
    # imageMinimumGCAge 0s counts as unset (2m) and fails validation against a
    # shorter maximum: 1s (kubelet config validation, measured on v1.37).
    printf 'imageMaximumGCAge: %s\nimageMinimumGCAge: 1s\n' "$CORAL_IMAGE_MAX_GC_AGE" >>"$(node_dir "$node")/kubelet/config.yaml"
  fi
  launch_containerd "$node"
  wait_containerd "$node"
  # The Node object exists before its kubelet runs, with the runtime socket
  # annotation, as on a kubeadm join (the annotation is there before the node
  # is Ready). The kubelet adopts it; its --node-labels are the same labels.
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $node
  labels: {$(printf '%s' "$labels" | sed 's/=/: /g; s/,/, /g')}
  annotations:
    kubeadm.alpha.kubernetes.io/cri-socket: unix://$(node_socket "$node")
    coral.dev/host-root: $(node_host_root "$node")
EOF
  node_labels() { echo "$labels"; }
  start_kubelet "$node"
  wait_for "kubelet-$node" 60 "$node to register" node_registered "$node"
  kc wait --for=condition=Ready node "$node" --timeout=120s >/dev/null ||
    die "$node not Ready after 120s; see $CLUSTER_DIR/logs/kubelet-$node.log"
  echo "$node" >>"$CLUSTER_DIR/added-nodes"
  log "$node is Ready (labels $labels)"
  echo "$node"
}

main() {
  [ $# -ge 1 ] && [ $# -le 2 ] || usage
  local node=$1 labels=${2:-pool=web}
  [[ $node =~ ^coral-node-([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge 4 ] || usage
  require_root
  lock_cluster
  [ -f "$STATE_FILE" ] || die "no cluster in $CLUSTER_DIR; run make cluster-up"
  # shellcheck source=/dev/null
  source "$STATE_FILE"
  derive_names
  KUBECTL=$(kubectl_bin)
  [ ! -d "$(node_dir "$node")" ] || die "$node exists already (remove it with remove-node.sh $node)"
  add_node "$node" "$labels"
}

main "$@"
