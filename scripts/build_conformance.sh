#!/usr/bin/env bash
# The Connect conformance runner (connectrpc.com/conformance), built once from the Go module
# proxy into ~/.cache/aerogrid/conformance-VERSION/bin/connectconformance, with the module's
# protos beside it (../proto: connectrpc/conformance/v1/*.proto) for the conformance server
# in tests/runtime/conformance/. Prints the bin folder as the last line of stdout.
# Exit 3: no Go (the conformance test skips locally, fails under CI=true).
set -euo pipefail
VERSION="v1.0.7"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$("$REPO_ROOT/scripts/go_install_tool.sh" conformance connectrpc.com/conformance/cmd/connectconformance "$VERSION" | tail -1)"
CACHE_ROOT="${AEROGRID_CACHE:-$HOME/.cache/aerogrid}"
PROTO="$(dirname "$BIN")/proto"
if [ ! -d "$PROTO/connectrpc" ]; then
    SRC="$CACHE_ROOT/go/mod/connectrpc.com/conformance@$VERSION/proto"
    rm -rf "$PROTO.partial"
    cp -r "$SRC" "$PROTO.partial"
    chmod -R u+w "$PROTO.partial"
    mv "$PROTO.partial" "$PROTO"
fi
echo "$BIN"
