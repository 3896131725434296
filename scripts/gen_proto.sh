#!/usr/bin/env bash
# Regenerates the Python code of the wire contract (proto/) into the runtime package.
# The generated files are committed so that installing the runtime needs no protoc.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
out=${OUT:-$root/runtime/src/aerogrid}  # OUT: elsewhere, e.g. to check the committed copy
"$py" -m grpc_tools.protoc -I "$root/proto" \
  --python_out="$out" --grpc_python_out="$out" --mypy_out="$out" --mypy_grpc_out="$out" \
  "$root"/proto/aerogrid/v1/*.proto
# protoc writes into aerogrid/v1 under the output root; move it up one level.
rm -rf "$out/v1"
mv "$out/aerogrid/v1" "$out/v1"
rmdir "$out/aerogrid"
touch "$out/v1/__init__.py"
