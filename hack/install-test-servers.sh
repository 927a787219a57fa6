#!/usr/bin/env bash
# Installs the real servers the integration tests start on loopback, cached
# by version outside the repository (CI and fresh machines run it; a second
# run does nothing):
#   versitygw  — an S3-compatible server that checks SigV4 signatures
# Registries for the tests come from Debian's docker-registry (install-deps.sh).
set -euo pipefail
cache=${CORAL_CACHE:-/var/cache/coral}/tools
VERSITYGW_VERSION=v1.8.0

dir="$cache/versitygw-$VERSITYGW_VERSION"
if [ ! -x "$dir/versitygw" ]; then
  echo "[install-test-servers] building versitygw $VERSITYGW_VERSION (a few minutes, once)" >&2
  mkdir -p "$dir"
  GOBIN="$dir" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -ldflags='-s -w' \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
fi
echo "$dir/versitygw"
