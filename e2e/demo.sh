#!/usr/bin/env bash
# make demo: Coral's main job on the built-in local cluster. Brings the
# cluster up if it is not, builds the plugin, and prefetches the two sample
# images (pushed to the local registry by cluster-up) onto the nodes of the
# web pool, then shows what each node's runtime holds.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
env_file=_output/cluster/env

make --no-print-directory cluster-up >&2
# shellcheck source=/dev/null
source "$env_file"
make --no-print-directory build >&2
export PATH="$repo/bin:$PATH"

echo
echo "\$ kubectl coral prefetch images $CORAL_SAMPLE_IMAGES -l pool=web"
# shellcheck disable=SC2086 # the sample list is space-separated on purpose
kubectl coral prefetch images $CORAL_SAMPLE_IMAGES -l pool=web --progress=plain

echo
echo "What each node's container runtime now holds (crictl over its own socket):"
for node in $CORAL_NODES; do
  var="CORAL_CRI_$(echo "$node" | tr 'a-z-' 'A-Z_')"
  echo "--- $node"
  "$CORAL_CRICTL" --runtime-endpoint "${!var}" images 2>/dev/null | grep -E "samples/" || echo "(no sample images)"
done
