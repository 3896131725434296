#!/usr/bin/env bash
# Builds the desktop binary with PyInstaller (packaging/aerogrid.spec).
#   scripts/build_binary.sh [onedir|onefile ...]     default: onedir
# Output: dist/binary/onedir/aerogrid/aerogrid (a folder) and dist/binary/onefile/aerogrid.
# The runtime's wheel goes inside (apps with requirements install it into their venv), so
# it is built first, into dist/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$root/.venv/bin}
uv=${UV:-uv}
modes=("$@")
[ ${#modes[@]} -eq 0 ] && modes=(onedir)
cd "$root"
mkdir -p dist
"$uv" build --quiet --wheel --out-dir dist runtime
for mode in "${modes[@]}"; do
  AEROGRID_BUNDLE=$mode AEROGRID_WHEELS=$root/dist "$bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "dist/binary/$mode" --workpath "build/pyinstaller/$mode" packaging/aerogrid.spec
done
