#!/usr/bin/env bash
# Regenerates gen/ (protobuf-es code for proto/aerogrid/v1/*.proto) used by stream_grid.mjs.
# The output is committed so running the client needs only `npm ci`, not protoc; the
# Python test checks that it is up to date. Needs `npm ci` here and the workspace venv
# (its grpc_tools ships protoc). Usage: tests/node/gen.sh [OUT_DIR] (default: gen/).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
out=${1:-$here/gen}
plugin=$here/node_modules/.bin/protoc-gen-es
if [[ ! -x $plugin ]]; then
  echo "gen.sh: $plugin is missing; run 'npm ci' in $here first" >&2
  exit 1
fi
rm -rf "$out"
mkdir -p "$out"
"$py" -m grpc_tools.protoc -I "$root/proto" \
  --plugin=protoc-gen-es="$plugin" \
  --es_out="$out" --es_opt=target=js+dts,import_extension=js \
  "$root"/proto/aerogrid/v1/*.proto
