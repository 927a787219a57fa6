#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR/..
# Checks that a release installs the way users install it, offline:
#
#   1. `make release VERSION=v0.0.0-ci` into _output/release-check (all six platforms);
#   2. sha256sums.txt matches the archives, and the krew manifest passes
#      validate-krew-manifest -skip-install (krew v0.4.3);
#   3. every platform's archive installs with its manifest entry
#      (krew install --manifest --archive, KREW_OS/KREW_ARCH set): the layout
#      the manifest promises is the one the archive holds;
#   4. on this machine's platform, into a temporary KREW_ROOT:
#      kubectl krew install, kubectl coral version (through kubectl, names the
#      version), kubectl completion of `kubectl coral` through
#      kubectl_complete-coral, kubectl krew list, kubectl krew uninstall.
#
# krew and validate-krew-manifest are built once with `go install` and kept in
# $CORAL_CACHE/tools (default /var/cache/coral/tools). The real krew index
# cannot be cloned offline, so the temporary KREW_ROOT gets an empty git
# repository as its default index. Temporary directories are removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
VERSION=v0.0.0-ci
KREW_VERSION=v0.4.3
OUT=_output/release-check
tools=${CORAL_CACHE:-/var/cache/coral}/tools/krew-$KREW_VERSION

step() { printf '[release-check] %s\n' "$*" >&2; }
fail() {
  printf '[release-check] FAIL: %s\n' "$1" >&2
  [ -z "${2:-}" ] || printf '%s\n' "$2" | sed 's/^/    /' >&2
  exit 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/coral-release-check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
begin=$SECONDS

# --- tools ---------------------------------------------------------------
for tool in krew validate-krew-manifest; do
  if [ ! -x "$tools/$tool" ]; then
    step "installing $tool $KREW_VERSION into $tools"
    mkdir -p "$tools"
    GOBIN=$tools GOFLAGS=-buildvcs=false "$GO" install "sigs.k8s.io/krew/cmd/$tool@$KREW_VERSION" ||
      fail "go install sigs.k8s.io/krew/cmd/$tool@$KREW_VERSION failed (is the Go module proxy reachable?)"
  fi
done
if command -v kubectl >/dev/null 2>&1; then
  kubectl=$(command -v kubectl)
else
  step "no kubectl on PATH: building the e2e cluster's (cached)"
  bash e2e/cluster/build-components.sh kubectl >/dev/null || fail "could not build kubectl (e2e/cluster/build-components.sh kubectl)"
  kubectl=$(source e2e/cluster/versions.env && echo "${CORAL_CACHE:-/var/cache/coral}/k8s-$K8S_VERSION/kubectl")
fi
[ -x "$kubectl" ] || fail "kubectl not found at $kubectl"
krew=$tools/krew

# --- 1. build ------------------------------------------------------------
step "make release VERSION=$VERSION (six platforms, one after another)"
t=$SECONDS
OUT=$OUT make --no-print-directory release VERSION=$VERSION || fail "make release VERSION=$VERSION failed"
build_time=$((SECONDS - t))
manifest=$OUT/coral.yaml
[ -s "$manifest" ] || fail "make release wrote no krew manifest at $manifest"

# --- 2. checksums and manifest -------------------------------------------
step "sha256sums.txt and validate-krew-manifest"
out=$(cd "$OUT" && sha256sum --check --strict sha256sums.txt 2>&1) || fail "sha256sums.txt does not match the archives" "$out"
[ "$(wc -l <"$OUT/sha256sums.txt")" -eq 6 ] || fail "sha256sums.txt should list 6 archives" "$(cat "$OUT/sha256sums.txt")"
out=$("$tools/validate-krew-manifest" -manifest "$manifest" -skip-install 2>&1) ||
  fail "validate-krew-manifest rejected $manifest" "$out"
grep -q "^  version: $VERSION\$" "$manifest" || fail "$manifest does not say version $VERSION"

# new_krew_root DIR: an empty KREW_ROOT whose default index is a git repository.
new_krew_root() {
  mkdir -p "$1/index/default"
  git -C "$1/index/default" init -q
  git -C "$1/index/default" -c user.name=coral -c user.email=coral@localhost commit -q --allow-empty -m "offline index"
}

# --- 3. every platform's archive matches its manifest entry ----------------
for p in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64; do
  os=${p%/*} arch=${p#*/}
  ext=tar.gz exe=''
  [ "$os" = windows ] && ext=zip exe=.exe
  archive=$OUT/coral_${VERSION}_${os}_${arch}.$ext
  root=$tmp/krew-$os-$arch
  new_krew_root "$root"
  out=$(KREW_ROOT=$root KREW_OS=$os KREW_ARCH=$arch "$krew" install --manifest="$manifest" --archive="$archive" 2>&1) ||
    fail "krew install of $archive ($p) failed" "$out"
  store=$root/store/coral/$VERSION
  for f in "kubectl-coral$exe" LICENSE; do
    [ -f "$store/$f" ] || fail "$p: krew installed no $f" "$(ls -la "$store" 2>&1)"
  done
  [ -e "$root/bin/kubectl-coral$exe" ] || fail "$p: krew linked no bin/kubectl-coral$exe" "$(ls -la "$root/bin" 2>&1)"
done
step "all six archives install with their manifest entries"

# --- 4. install, run through kubectl, complete, list, uninstall -------------
os=$("$GO" env GOOS) arch=$("$GO" env GOARCH)
[ "$os" != windows ] || fail "run the release check on linux or darwin"
archive=$OUT/coral_${VERSION}_${os}_${arch}.tar.gz
export KREW_ROOT=$tmp/krew
new_krew_root "$KREW_ROOT"
# kubectl finds the plugin krew linked first, and krew itself as a plugin;
# nothing reads the user's kubeconfig.
mkdir -p "$tmp/bin"
ln -s "$krew" "$tmp/bin/kubectl-krew"
ln -s "$kubectl" "$tmp/bin/kubectl"
export KUBECONFIG=$tmp/kubeconfig PATH="$KREW_ROOT/bin:$tmp/bin:$PATH"
: >"$KUBECONFIG"
step "krew install --manifest --archive ($os/$arch) into a temporary KREW_ROOT"
out=$("$krew" install --manifest="$manifest" --archive="$archive" 2>&1) || fail "krew install failed" "$out"

out=$(kubectl coral version 2>&1) || fail "kubectl coral version failed" "$out"
grep -q "^Version: *$VERSION\$" <<<"$out" || fail "kubectl coral version does not name $VERSION" "$out"
out=$(kubectl coral version -o json 2>&1) || fail "kubectl coral version -o json failed" "$out"
grep -q "\"version\": \"$VERSION\"" <<<"$out" || fail "kubectl coral version -o json does not name $VERSION" "$out"
grep -q "\"workerImage\": \"ghcr.io/coral-dev/coral-worker:$VERSION\"" <<<"$out" ||
  fail "the default worker image is not tagged $VERSION" "$out"
step "kubectl coral version: $VERSION"

# kubectl completes `kubectl coral …` through kubectl_complete-coral on PATH;
# krew does not link it, so do what docs/install.md says.
cp "$KREW_ROOT/store/coral/$VERSION/kubectl_complete-coral" "$KREW_ROOT/bin/"
out=$(kubectl __complete coral "" 2>/dev/null) || fail "kubectl __complete coral failed" "$out"
for want in prefetch mirror version completion; do
  grep -q "^$want" <<<"$out" || fail "kubectl __complete coral '' does not offer $want" "$out"
done
out=$(kubectl __complete coral prefetch images --no 2>/dev/null) || fail "kubectl __complete coral prefetch images --no failed" "$out"
grep -q "^--nodes" <<<"$out" || fail "kubectl does not complete --nodes of kubectl coral prefetch images" "$out"
step "kubectl completes kubectl coral's commands and flags"

out=$(kubectl krew list 2>&1) || fail "kubectl krew list failed" "$out"
# A plugin installed from a manifest belongs to no index: "detached/coral".
grep -Eq '^([^/[:space:]]+/)?coral([[:space:]]|$)' <<<"$out" || fail "kubectl krew list does not show coral" "$out"
out=$(kubectl krew uninstall coral 2>&1) || fail "kubectl krew uninstall coral failed" "$out"
[ ! -e "$KREW_ROOT/bin/kubectl-coral" ] || fail "kubectl-coral is still linked after uninstall"
[ ! -e "$KREW_ROOT/store/coral" ] || fail "the store still holds coral after uninstall"
step "kubectl krew list shows coral; uninstall removes it"

step "OK in $((SECONDS - begin))s (release build ${build_time}s)"
