#!/usr/bin/env bash
# make bench-scale: Coral's prefetch on N simulated nodes against the bound
# the control plane allows, measured in the same run (see docs/scale.md).
#
#   SCALE_N="100 1000 5000"  node counts (ascending; an N is skipped when
#                            MemAvailable is too small for it)
#   ROUNDS=1                 rounds per N and mode
#   SCALE_ARGS=              more flags for the harness (go run ./bench/scale --help),
#                            e.g. SCALE_ARGS='--fail-pct 5 --silent-pct 0 --coral-args "--max-nodes-in-flight=1000"'
#   SCALE_TIME_LIMIT=        seconds for the whole benchmark (default: from N and ROUNDS)
#
# It starts its own control plane (e2e/cluster/scale-up.sh, state in
# _output/scale) and always stops it on the way out, also on failure or ^C
# (e2e/cluster/scale-down.sh). Logs of a failed run are kept in
# _output/scale-logs/. The output ends with one summary line per Coral run.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"
SCALE_N=${SCALE_N:-100 1000 5000}
ROUNDS=${ROUNDS:-1}
SCALE_ARGS=${SCALE_ARGS:-}
GO=${GO:-go}

log() { printf '%s [bench-scale] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The whole benchmark is bounded: each run has its own limit in the harness
# (180 s + 0.6 s per node), each wait for garbage collection 10 min; this is
# the sum of them all, plus the control plane's start.
default_limit() {
  local n total=900
  for n in ${SCALE_N//,/ }; do
    total=$((total + ROUNDS * 4 * (180 + n * 6 / 10 + 660)))
  done
  echo "$total"
}
SCALE_TIME_LIMIT=${SCALE_TIME_LIMIT:-$(default_limit)}

rc=0
cleanup() {
  # SCALE_KEEP_LOGS=DIR keeps the control plane's logs (audit log included)
  # in DIR after any run; a failed run keeps them anyway.
  local keep=${SCALE_KEEP_LOGS:-}
  if [ "$rc" -ne 0 ] && [ -z "$keep" ]; then
    keep=$repo/_output/scale-logs/$(date +%Y%m%d-%H%M%S)
  fi
  SCALE_KEEP_LOGS=$keep bash e2e/cluster/scale-down.sh || true
}
trap 'rc=$?; cleanup' EXIT
trap 'exit 130' INT TERM

log "building the plugin and the harness"
$GO build -o _output/bin/coral-scale ./bench/scale
$GO build -o _output/bin/coral-controller ./cmd/coral-controller
make --no-print-directory build >&2

log "starting the scale control plane (limit for the whole benchmark: ${SCALE_TIME_LIMIT}s)"
bash e2e/cluster/scale-up.sh

mkdir -p _output
# shellcheck disable=SC2086 # SCALE_ARGS is a list of flags
eval "set -- $SCALE_ARGS"
set +e
timeout --signal=INT --kill-after=120 "$SCALE_TIME_LIMIT" \
  _output/bin/coral-scale --env _output/scale/env --plugin bin/kubectl-coral \
  --n "$SCALE_N" --rounds "$ROUNDS" "$@" | tee _output/scale-last.txt
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -eq 124 ]; then
  log "the benchmark hit its time limit of ${SCALE_TIME_LIMIT}s"
fi
exit "$rc"
