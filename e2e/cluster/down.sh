#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Removes every trace of the local cluster (make cluster-down): its processes
# (recorded daemons, containerd shims, containers), the mounts under the state
# directory, the nodes' cgroups in every hierarchy, their CNI bridges, and the
# state directory itself. Works after a crash and when nothing runs.
set -euo pipefail

# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local t0=$SECONDS
  require_root
  lock_cluster
  cluster_down
  log "cluster down in $((SECONDS - t0))s ($CLUSTER_DIR removed)"
}

main "$@"
