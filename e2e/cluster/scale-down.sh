#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Stops the scale control plane started by scale-up.sh (make bench-scale runs
# it on exit, also after a failure) and removes its state directory. Safe when
# nothing runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CORAL_CLUSTER_DIR=${CORAL_SCALE_DIR:-$(cd "$here/../.." && pwd)/_output/scale}
# shellcheck source=lib.sh
source "$here/lib.sh"
NODES=()

t0=$SECONDS
lock_cluster
if [ "${SCALE_KEEP_LOGS:-}" != "" ] && [ -d "$CLUSTER_DIR/logs" ]; then
  stop_processes
  mkdir -p "$SCALE_KEEP_LOGS"
  cp -r "$CLUSTER_DIR/logs/." "$SCALE_KEEP_LOGS/"
  log "kept the scale control plane's logs in $SCALE_KEEP_LOGS"
fi
cluster_down
log "scale control plane down in $((SECONDS - t0))s ($CLUSTER_DIR removed)"
