#!/usr/bin/env bash
# The `buf` CLI (github.com/bufbuild/buf, for `buf curl`), built once from the Go module proxy
# into ~/.cache/aerogrid/buf-VERSION/bin/buf. Prints the bin folder as the last line of stdout.
# Exit 3: no Go (the interop tests skip locally, fail under CI=true).
set -euo pipefail
VERSION="v1.75.0"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$REPO_ROOT/scripts/go_install_tool.sh" buf github.com/bufbuild/buf/cmd/buf "$VERSION"
