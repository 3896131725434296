#!/usr/bin/env bash
# grpcurl (github.com/fullstorydev/grpcurl), built once from the Go module proxy into
# ~/.cache/aerogrid/grpcurl-VERSION/bin/grpcurl, for the interop tests (reflection, health).
# Prints the bin folder as the last line of stdout.
# Exit 3: no Go (the interop tests skip locally, fail under CI=true).
set -euo pipefail
VERSION="v1.9.4"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec "$REPO_ROOT/scripts/go_install_tool.sh" grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$VERSION"
