#!/usr/bin/env bash
# Installs the Debian packages the local cluster needs (run by .ci/run, and by
# up.sh when something is missing). Idempotent: does nothing when all are there.
# Kubernetes, containerd 2.x and crictl are built from the Go module proxy by
# build-components.sh instead.
set -euo pipefail

packages=(
  containerd                  # Debian's 1.6: coral-node-3's runtime (an older one)
  runc                        # the OCI runtime of every node
  containernetworking-plugins # bridge, host-local, loopback
  etcd-server                 # 3.4 (kube-apiserver runs with WatchList=false)
  docker-registry             # CNCF distribution: the local registries
  apache2-utils               # htpasswd for the auth registry
  openssl                     # the cluster's certificates
  curl                        # health checks
  iproute2                    # ss (free ports), ip (node address, bridges)
  util-linux                  # setsid, mount/umount
  procps
)

log() { printf '[install-deps] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { log "must run as root"; exit 1; }

missing=()
for p in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "all packages present"
  exit 0
fi

log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The packages' own services cannot start without systemd; policy-rc.d keeps
# their init scripts from starting anything on default ports either.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  created_policy=1
fi
trap 'if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
log "installed: ${missing[*]}"
