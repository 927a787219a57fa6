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
echo "[fuzz] ${#targets[@]} targets, $FUZZTIME each" >&2
failed=()
start=$SECONDS
for t in "${targets[@]}"; do
  dir=${t% *} name=${t#* }
  case $dir in ./*) ;; *) dir=./$dir ;; esac
  echo "[fuzz] $dir $name ($FUZZTIME)" >&2
  t0=$SECONDS
  if "$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" "$dir"; then
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
