#!/usr/bin/env bash
# Installs the real servers the integration tests start on loopback, cached
# by version outside the repository, and prints versitygw's path. `make test`
# and `make check` run it first, CI too; when everything is installed it only
# checks, in milliseconds:
#   versitygw  — an S3-compatible server that checks SigV4 signatures
# The tests find it through internal/testservers (same version, same cache:
# $CORAL_CACHE/tools, /var/cache/coral/tools by default).
# Registries for the tests come from Debian's docker-registry (install-deps.sh).
set -euo pipefail
cache=${CORAL_CACHE:-/var/cache/coral}/tools
VERSITYGW_VERSION=v1.8.0

dir="$cache/versitygw-$VERSITYGW_VERSION"
if [ ! -x "$dir/versitygw" ]; then
  if ! mkdir -p "$dir" 2>/dev/null || [ ! -w "$dir" ]; then
    echo "[install-test-servers] cannot write $cache: run as root, or set CORAL_CACHE to a directory of yours (e.g. CORAL_CACHE=\$HOME/.cache/coral)" >&2
    exit 1
  fi
  command -v go >/dev/null || { echo "[install-test-servers] needs Go on PATH to build versitygw" >&2; exit 1; }
  echo "[install-test-servers] building versitygw $VERSITYGW_VERSION into $dir (a few minutes, once)" >&2
  GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -ldflags='-s -w' \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
echo "$dir/versitygw"
