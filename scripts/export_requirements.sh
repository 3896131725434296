#!/usr/bin/env bash
# Writes packaging/requirements/{runtime,platform}.txt from uv.lock: the exact, hashed
# third-party dependencies of the runtime image and of the operator/catalog image. The
# images install these with --require-hashes, then the project's own wheels with
# --no-deps, so an image holds what the lock says and nothing else.
#   OUT=DIR  write elsewhere (the tests compare a fresh export with the committed one)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$root/packaging/requirements}
uv=${UV:-uv}
mkdir -p "$out"
export_one() {  # PACKAGE FILE
  (cd "$root" && "$uv" export --frozen --quiet --package "$1" --no-dev --no-emit-workspace \
    --no-header --no-annotate --format requirements.txt) >"$out/$2"
}
export_one aerogrid runtime.txt
export_one aerogrid-cloud platform.txt
