#!/usr/bin/env bash
# bench-mirror: `kubectl coral mirror` against `crane copy` on the same random
# two-platform index (~200 MiB) between two local registries (Debian's
# docker-registry), cold (a fresh, empty destination) and warm (everything
# already present), interleaved over ROUNDS rounds; prints medians and ratios.
#
#   make bench-mirror                      # or: bash bench/mirror/bench-mirror.sh
#   ROUNDS=9 SIZE_MB=400 make bench-mirror
#
# Needs: go, docker-registry (apt-get install -y docker-registry). crane is
# installed from the Go module proxy into $BENCH_CACHE (default
# ~/.cache/coral-bench) on first use. Nothing else on the machine is touched.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
SIZE_MB=${SIZE_MB:-200}
CRANE_VERSION=${CRANE_VERSION:-v0.22.1}
BENCH_CACHE=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coral-bench}
GO=${GO:-go}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { echo "bench-mirror: $*" >&2; exit 1; }
command -v docker-registry >/dev/null || die "docker-registry not found: apt-get install -y docker-registry"
(( ROUNDS >= 1 )) || die "ROUNDS must be at least 1"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/coral-bench-mirror.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# --- tools -------------------------------------------------------------------
mkdir -p "$BENCH_CACHE/bin"
CRANE="$BENCH_CACHE/bin/crane-$CRANE_VERSION"
if [[ ! -x $CRANE ]]; then
  echo "installing crane $CRANE_VERSION into $BENCH_CACHE …" >&2
  GOBIN="$WORK/gobin" "$GO" install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
  mv "$WORK/gobin/crane" "$CRANE"
fi

echo "building coral …" >&2
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -trimpath -o "$WORK/kubectl-coral" ./cmd/kubectl-coral)
CORAL=("$WORK/kubectl-coral" mirror)
(cd "$ROOT" && "$GO" build -o "$WORK/seed" ./bench/mirror/seed)

# --- registries ----------------------------------------------------------------
free_port() {
  local p
  for _ in $(seq 50); do
    p=$(( 20000 + RANDOM % 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  die "no free port"
}

# start_registry NAME PORT: (re)start a registry on an empty storage dir.
declare -A REG_PID
start_registry() {
  local name=$1 port=$2 dir="$WORK/$1"
  if [[ -n ${REG_PID[$name]:-} ]]; then
    kill "${REG_PID[$name]}" 2>/dev/null || true
    wait "${REG_PID[$name]}" 2>/dev/null || true
  fi
  rm -rf "$dir"; mkdir -p "$dir"
  cat >"$dir/config.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $dir/storage}
  maintenance: {uploadpurging: {enabled: false}}
http: {addr: 127.0.0.1:$port, secret: bench}
YAML
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  REG_PID[$name]=$!
  PIDS+=("$!")
  for _ in $(seq 200); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && return
    sleep 0.05
  done
  cat "$dir/log" >&2
  die "registry $name did not start"
}

SRC_PORT=$(free_port); DST_PORT=$(free_port)
SRC="127.0.0.1:$SRC_PORT"; DST="127.0.0.1:$DST_PORT"
IMAGE="bench/app:v1"
start_registry src "$SRC_PORT"
"$WORK/seed" -ref "$SRC/$IMAGE" -mb "$SIZE_MB" >&2

# --- runs --------------------------------------------------------------------
now() { echo "${EPOCHREALTIME/,/.}"; }

run_crane() { "$CRANE" copy "$SRC/$IMAGE" "$DST/$IMAGE" >/dev/null 2>&1; }
run_coral() { "${CORAL[@]}" "$SRC/$IMAGE" --to "$DST" -o json >/dev/null 2>"$WORK/coral.err"; }

# timed TOOL: prints seconds
timed() {
  local t0 t1
  t0=$(now)
  "run_$1" || { cat "$WORK/coral.err" >&2 2>/dev/null; die "$1 failed"; }
  t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}

declare -A TIMES
want=$(curl -fsS -o /dev/null -w '%header{docker-content-digest}' -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$SRC/v2/bench/app/manifests/v1")
echo "rounds: $ROUNDS, image: $SRC/$IMAGE ($SIZE_MB MiB, 2 platforms, $want)" >&2
for round in $(seq "$ROUNDS"); do
  # Alternate who goes first so neither always meets a warmer page cache.
  if (( round % 2 )); then order=(crane coral); else order=(coral crane); fi
  for tool in "${order[@]}"; do
    start_registry dst "$DST_PORT"
    cold=$(timed "$tool")
    warm=$(timed "$tool")
    got=$(curl -fsS -o /dev/null -w '%header{docker-content-digest}' -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$DST/v2/bench/app/manifests/v1")
    [[ $got == "$want" ]] || die "$tool: destination digest $got, want the source's $want"
    TIMES[$tool.cold]+="$cold "
    TIMES[$tool.warm]+="$warm "
    printf 'round %d  %-5s  cold %7.3fs  warm %7.3fs\n' "$round" "$tool" "$cold" "$warm" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END { if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
cc=$(median <<<"${TIMES[crane.cold]}"); cw=$(median <<<"${TIMES[crane.warm]}")
oc=$(median <<<"${TIMES[coral.cold]}"); ow=$(median <<<"${TIMES[coral.warm]}")

echo
echo "mirror benchmark: $SIZE_MB MiB two-platform index, docker-registry → docker-registry, $ROUNDS rounds (medians)"
printf '%-22s %10s %10s\n' "" cold warm
printf '%-22s %9.3fs %9.3fs\n' "crane copy $CRANE_VERSION" "$cc" "$cw"
printf '%-22s %9.3fs %9.3fs\n' "coral mirror" "$oc" "$ow"
awk -v oc="$oc" -v cc="$cc" -v ow="$ow" -v cw="$cw" 'BEGIN {
  printf "%-22s %9.2fx %9.2fx\n", "coral / crane", oc/cc, ow/cw
  printf "aim: cold <= 1.00x crane (%s), warm <= 0.100s (%s)\n", (oc <= cc ? "met" : "missed"), (ow <= 0.1 ? "met" : "missed")
}'
echo "digest kept: $want"
