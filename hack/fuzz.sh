#!/usr/bin/env bash
# Runs every native Go fuzz target of the repository, one after another
# (`make fuzz`; CI runs `make fuzz FUZZTIME=10s`).
#
# A target is any `func FuzzX(f *testing.F)` in a *_test.go file: they are
# found by name, so a new target anywhere is picked up without touching this
# script. Each runs for FUZZTIME (default 5m) with `go test -fuzz`; its seed
# corpus (f.Add and testdata/fuzz/FuzzX) runs first. Every target runs even
# when one fails; the script then lists the failures and exits 1. An input
# that fails is written by go test to <package>/testdata/fuzz/FuzzX/: commit it
# with the fix and it stays a regression test in `go test`.
#
#   bash hack/fuzz.sh [DIR...]        # directories to search (default: the repository)
#   FUZZTIME=30s FUZZ='Termination' bash hack/fuzz.sh   # FUZZ: a regexp on target names
#   FUZZ_LIST=1 bash hack/fuzz.sh     # list the targets ("dir name") and run none
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5m}
FUZZ=${FUZZ:-}
roots=("$@")
[ ${#roots[@]} -gt 0 ] || roots=(.)
# ./pkg/x/... means the directory ./pkg/x and below.
for i in "${!roots[@]}"; do roots[$i]=${roots[$i]%/...}; done

# "dir target" lines, sorted, from every *_test.go outside build output.
mapfile -t targets < <(
  find "${roots[@]}" \( -name .git -o -name _output -o -name bin -o -name testdata -o -name vendor \) -prune \
    -o -type f -name '*_test.go' -print0 |
  xargs -0 -r grep -HoE '^func Fuzz[A-Za-z0-9_]*\([A-Za-z_][A-Za-z0-9_]* \*testing\.F\)' |
  sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' |
  sort -u
)
if [ -n "$FUZZ" ]; then
  mapfile -t targets < <(printf '%s\n' "${targets[@]}" | awk -v re="$FUZZ" '$2 ~ re')
fi
if [ ${#targets[@]} -eq 0 ] || [ -z "${targets[0]}" ]; then
  echo "[fuzz] no fuzz targets found under ${roots[*]}${FUZZ:+ matching $FUZZ}" >&2
  exit 1
fi

if [ "${FUZZ_LIST:-}" = 1 ]; then
  printf '%s\n' "${targets[@]}"
  exit 0
fi
# fuzz_one DIR NAME fuzzes one target. Minimising a new input is bounded
# (-fuzzminimizetime 5s; go's default is 60s, and a target whose inputs take
# milliseconds, like FuzzUntar, spent whole runs minimising at "0 execs/sec").
# Go before 1.27 can fail a duration-bounded run with "context deadline
# exceeded" at the deadline although nothing failed (golang/go#75804): such
# a failure writes no input, so a failure that wrote none and says so is run
# once more; a real finding always leaves its input in testdata/fuzz/NAME/.
fuzz_one() {
  local dir=$1 name=$2 out before after
  out=$(mktemp)
  before=$(ls "$dir/testdata/fuzz/$name" 2>/dev/null | sort || true)
  if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=5s "$dir" 2>&1 | tee "$out"; then
    rm -f "$out"
    return 0
  fi
  after=$(ls "$dir/testdata/fuzz/$name" 2>/dev/null | sort || true)
  if [ "$before" = "$after" ] && grep -q 'context deadline exceeded' "$out"; then
    rm -f "$out"
    echo "[fuzz] $dir $name: 'context deadline exceeded' with no failing input (golang/go#75804); running it once more" >&2
    "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=5s "$dir"
    return
  fi
  rm -f "$out"
  return 1
}

echo "[fuzz] ${#targets[@]} targets, $FUZZTIME each" >&2
failed=()
start=$SECONDS
for t in "${targets[@]}"; do
  dir=${t% *} name=${t#* }
  case $dir in ./*) ;; *) dir=./$dir ;; esac
  echo "[fuzz] $dir $name ($FUZZTIME)" >&2
  t0=$SECONDS
  if fuzz_one "$dir" "$name"; then
    echo "[fuzz] $dir $name: ok in $((SECONDS - t0)) s" >&2
  else
    echo "[fuzz] $dir $name: FAILED (the failing input is in $dir/testdata/fuzz/$name/)" >&2
    failed+=("$dir $name")
  fi
done
echo "[fuzz] ${#targets[@]} targets in $((SECONDS - start)) s, ${#failed[@]} failed" >&2
if [ ${#failed[@]} -gt 0 ]; then
  printf '[fuzz] FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
