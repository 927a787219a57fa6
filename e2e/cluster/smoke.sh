#!/usr/bin/env bash
# Checks that a running local cluster does what the e2e tests rely on: on every
# node, a batch/v1 Job pinned by nodeName (tolerating every taint) that mounts
# the node's own containerd socket (hostPath type Socket) succeeds; kubectl
# logs works; and the node's runtime, asked directly over CRI, holds the image
# the Job ran while its own socket serves only that node.
#
#   make cluster-up && bash e2e/cluster/smoke.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
env_file=${CORAL_CLUSTER_DIR:-$here/../../_output/cluster}/env
[ -f "$env_file" ] || { echo "no $env_file: run make cluster-up first" >&2; exit 1; }
# shellcheck source=/dev/null
source "$env_file"

log() { printf '%s [smoke] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
kc() { "$CORAL_KUBECTL" "$@"; }
socket_of() {
  local v=CORAL_CRI_${1^^}
  v=${v//-/_}
  echo "${!v}"
}

job_manifest() { # NAME NODE SOCKET_PATH
  cat <<EOF2
apiVersion: batch/v1
kind: Job
metadata:
  name: $1
  labels: {app.kubernetes.io/name: coral-smoke}
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 60
  template:
    metadata:
      labels: {app.kubernetes.io/name: coral-smoke}
    spec:
      nodeName: $2
      hostNetwork: true
      restartPolicy: Never
      automountServiceAccountToken: false
      tolerations: [{operator: Exists}]
      containers:
      - name: check
        image: $CORAL_PAUSE_IMAGE
        args: ["-stat", "/run/cri.sock", "-exit-after", "100ms"]
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
          seccompProfile: {type: RuntimeDefault}
        volumeMounts: [{name: cri, mountPath: /run/cri.sock}]
      volumes:
      - name: cri
        hostPath: {path: $3, type: Socket}
EOF2
}

main() {
  local node sock name out t0=$SECONDS
  kc delete job -l app.kubernetes.io/name=coral-smoke --wait=true >/dev/null 2>&1 || true
  for node in $CORAL_NODES; do
    sock=$(socket_of "$node")
    job_manifest "smoke-$node" "$node" "${sock#unix://}" | kc apply -f - >/dev/null
  done
  for node in $CORAL_NODES; do
    name=smoke-$node
    kc wait --for=condition=complete "job/$name" --timeout=90s >/dev/null ||
      fail "job $name did not complete: $(kc get pods -l job-name="$name" -o wide 2>&1)"
    # Capture, then match: `cmd | grep -q` fails under pipefail when grep
    # exits before cmd has written everything (SIGPIPE).
    out=$(kc logs "job/$name") || fail "kubectl logs job/$name failed"
    grep -qx '/run/cri.sock: socket' <<<"$out" || fail "kubectl logs job/$name: no socket line in: $out"
    sock=$(socket_of "$node")
    out=$("$CORAL_CRICTL" --runtime-endpoint "$sock" images 2>/dev/null) || fail "crictl images on $sock failed"
    grep -q "^${CORAL_PAUSE_IMAGE%:*} " <<<"$out" || fail "$node's runtime ($sock) does not list $CORAL_PAUSE_IMAGE"
    log "ok: $node (job succeeded, logs readable, image present over CRI at $sock)"
  done
  kc delete job -l app.kubernetes.io/name=coral-smoke --wait=false >/dev/null
  log "all nodes passed in $((SECONDS - t0))s"
}

main "$@"
