#!/usr/bin/env bash
# Builds Coral's release: one archive per platform, their checksums and the
# krew manifest, under _output/release/. Run it through make:
#
#   make release VERSION=v0.1.0
#
#   coral_<VERSION>_<os>_<arch>.tar.gz   linux, darwin × amd64, arm64
#   coral_<VERSION>_windows_<arch>.zip   windows × amd64, arm64
#       kubectl-coral[.exe]  the plugin (CGO_ENABLED=0, -trimpath, version stamped)
#       kubectl_complete-coral[.cmd]  lets kubectl (1.26+) complete `kubectl coral …`
#       LICENSE, README.md
#   sha256sums.txt   sha256sum format, lowercase
#   coral.yaml       krew/.krew.yaml rendered for these archives (release URIs, sha256)
#
# Archives are reproducible: entries sorted, owned by 0:0, stamped with the
# commit's time. Platforms build one after another (the machine is shared).
#
# Environment: VERSION (required, vX.Y.Z[-pre]), COMMIT, LDFLAGS (from make),
# GO, OUT (default: _output/release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'release: %s\n' "$*" >&2; exit 2; }
log() { printf '[release] %s\n' "$*" >&2; }

GO=${GO:-go}
OUT=${OUT:-_output/release}
PLATFORMS="linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64"
PKG=github.com/coral-dev/coral
VERSION=${VERSION:-}
# krew requires a semantic version with a leading v; so do the worker image tags.
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
[[ $VERSION =~ $semver ]] ||
  die "VERSION must be a semantic version with a leading v (got '${VERSION}'): make release VERSION=v0.1.0"
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
LDFLAGS=${LDFLAGS:-"-s -w -X $PKG/pkg/version.Version=$VERSION -X $PKG/pkg/version.Commit=$COMMIT"}
case $LDFLAGS in
  *"pkg/version.Version=$VERSION "*) ;;
  *) die "LDFLAGS do not stamp version $VERSION: $LDFLAGS" ;;
esac
# Every entry gets the commit's time, so the same commit gives the same archives.
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  log "warning: the work tree has uncommitted changes; the binaries say commit $COMMIT but hold them"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/coral-release.XXXXXX")
trap 'rm -rf "$work"' EXIT
rm -rf "$OUT"
mkdir -p "$OUT"

export CGO_ENABLED=0
"$GO" build -o "$work/archive" ./hack/release/archive
"$GO" build -o "$work/krewmanifest" ./hack/release/krewmanifest

start=$SECONDS
for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  exe='' completion=hack/release/kubectl_complete-coral ext=tar.gz
  if [ "$os" = windows ]; then
    exe=.exe completion=hack/release/kubectl_complete-coral.cmd ext=zip
  fi
  bin="$work/$os-$arch/kubectl-coral$exe"
  t=$SECONDS
  GOOS=$os GOARCH=$arch "$GO" build -trimpath -ldflags "$LDFLAGS" -o "$bin" ./cmd/kubectl-coral
  archive="$OUT/coral_${VERSION}_${os}_${arch}.$ext"
  "$work/archive" -o "$archive" -mtime "$SOURCE_DATE_EPOCH" "$bin" "$completion" LICENSE README.md
  log "$(basename "$archive") ($(du -h "$archive" | cut -f1), $((SECONDS - t))s)"
done

(cd "$OUT" && sha256sum -- coral_"${VERSION}"_* > sha256sums.txt)
"$work/krewmanifest" -template krew/.krew.yaml -tag "$VERSION" -dist "$OUT" -o "$OUT/coral.yaml"
log "sha256sums.txt, coral.yaml"
log "built $VERSION (commit $COMMIT) for $(wc -w <<<"$PLATFORMS") platforms in $((SECONDS - start))s: $OUT"
