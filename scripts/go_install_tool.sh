#!/usr/bin/env bash
# Build one Go command from the Go module proxy into the cache, once per version:
#   scripts/go_install_tool.sh NAME PACKAGE VERSION
# installs PACKAGE@VERSION into ~/.cache/aerogrid/NAME-VERSION/bin/ and prints that bin folder
# as the last line of stdout (everything else goes to stderr).
#
# Go's caches are ~/.cache/aerogrid/go/{build,mod} (shared with scripts/build_k8s.sh), so a
# clean clone reuses downloads. Idempotent: a present binary is reused; a lock serialises
# concurrent runs. Exit 3: no Go on PATH (the tests that need the tool skip locally and fail
# under CI=true). Environment: AEROGRID_CACHE (default ~/.cache/aerogrid).
set -euo pipefail

NAME="$1" PACKAGE="$2" VERSION="$3"
CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"
OUT="$CACHE_ROOT/$NAME-$VERSION/bin"
BINARY="$OUT/$(basename "$PACKAGE")"

export GOCACHE="$CACHE_ROOT/go/build"
export GOMODCACHE="$CACHE_ROOT/go/mod"
export GOFLAGS="-modcacherw -buildvcs=false"
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GO111MODULE=on

if [ -x "$BINARY" ]; then
    echo "$OUT"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "go_install_tool.sh: 'go' not found on PATH ($NAME is built from the Go module proxy)" >&2
    exit 3
fi
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/$NAME-$VERSION.lock"
flock 9
if [ ! -x "$BINARY" ]; then
    echo "go_install_tool.sh: building $PACKAGE@$VERSION (once)" >&2
    TMP_OUT="$OUT.partial"
    rm -rf "$TMP_OUT"
    mkdir -p "$TMP_OUT"
    GOBIN="$TMP_OUT" go install "$PACKAGE@$VERSION" >&2
    mkdir -p "$(dirname "$OUT")"
    rm -rf "$OUT"
    mv "$TMP_OUT" "$OUT"
fi
echo "$OUT"
