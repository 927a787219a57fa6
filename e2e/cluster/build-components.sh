#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the components of the local e2e cluster from the Go module proxy, at the
# versions pinned in versions.env, and caches them outside the repository:
#
#   $CORAL_CACHE/k8s-<version>/{kube-apiserver,kube-controller-manager,kube-scheduler,kubelet}
#   $CORAL_CACHE/containerd-<version>/{containerd,containerd-shim-runc-v2}
#   $CORAL_CACHE/k8s-<version>/kubectl (only with the argument 'kubectl')
#   $CORAL_CACHE/crictl-<version>/crictl
#
# A binary that is already cached is never rebuilt. Prints the cache directory.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${CORAL_CACHE:-/var/cache/coral}
mkdir -p "$cache"
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[build-components] %s\n' "$*" >&2; }

build_kubernetes() {
  local out="$cache/k8s-$K8S_VERSION" staging="v0.${K8S_VERSION#v1.}"
  local want=(kube-apiserver kube-controller-manager kube-scheduler kubelet) missing=()
  [ "${1:-}" = kubectl ] && want=(kubectl)
  for b in "${want[@]}"; do [ -x "$out/$b" ] || missing+=("$b"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  mkdir -p "$out"
  local mod="$cache/k8s-$K8S_VERSION.src"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.sum" ]; then
    log "preparing a module that requires k8s.io/kubernetes $K8S_VERSION"
    # kubernetes' own go.mod replaces its staging modules with local paths; a module
    # that depends on it must replace them with the published versions instead.
    local kgomod
    kgomod=$(cd "$mod" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
      sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
    {
      echo "module coral.local/k8sbuild"
      echo
      echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      echo "replace ("
      grep -oE '^[[:space:]]*k8s\.io/[a-z0-9-]+ => \./staging/src/k8s\.io/[a-z0-9-]+' "$kgomod" |
        awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } >"$mod/go.mod"
    printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kubelet/app"\n\nfunc main() {}\n' >"$mod/main.go"
    (cd "$mod" && go mod tidy >&2)
  fi
  local major=${K8S_VERSION#v} minor
  minor=${major#*.}; minor=${minor%%.*}; major=${major%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  for b in "${missing[@]}"; do
    log "building $b $K8S_VERSION (cold builds take minutes; cached afterwards)"
    (cd "$mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags="$ld" -o "$out/$b.tmp" "k8s.io/kubernetes/cmd/$b")
    mv "$out/$b.tmp" "$out/$b"
  done
}

build_containerd() {
  # The runc shim is built from the same release and kept beside containerd:
  # containerd 2.x must not fall back to an older shim found on PATH.
  local out="$cache/containerd-$CONTAINERD_VERSION" b
  local ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  for b in containerd containerd-shim-runc-v2; do
    [ -x "$out/$b" ] && continue
    mkdir -p "$out"
    log "building $b $CONTAINERD_VERSION"
    GOBIN="$out/.gobin" go install -trimpath -tags no_btrfs,no_devmapper,no_zfs -ldflags="$ld" \
      "github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION"
    mv "$out/.gobin/$b" "$out/$b"
    rmdir "$out/.gobin"
  done
}

build_crictl() {
  local out="$cache/crictl-$CRICTL_VERSION"
  [ -x "$out/crictl" ] && return 0
  mkdir -p "$out"
  log "building crictl $CRICTL_VERSION"
  GOBIN="$out/.gobin" go install -trimpath -ldflags="-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  mv "$out/.gobin/crictl" "$out/crictl"
  rmdir "$out/.gobin"
}

what=${1:-all}
case "$what" in
  all) build_crictl; build_containerd; build_kubernetes ;;
  kubernetes) build_kubernetes ;;
  kubectl) build_kubernetes kubectl ;;
  containerd) build_containerd ;;
  crictl) build_crictl ;;
  *) echo "usage: $0 [all|kubernetes|containerd|crictl|kubectl]" >&2; exit 2 ;;
esac
echo "$cache"
