#!/usr/bin/env bash
# One version for everything: scripts/set_version.sh 0.2.0
# Writes it into every pyproject, the runtime's __version__ (what `aerogrid --version`
# prints, and the default image tags) and the add-in's package.json; tests/packaging/test_version.py
# fails when they disagree.
set -euo pipefail
version=${1:?usage: scripts/set_version.sh VERSION}
root=$(cd "$(dirname "$0")/.." && pwd)
for file in pyproject.toml runtime/pyproject.toml devkit/pyproject.toml cloud/pyproject.toml; do
  sed -i -E "0,/^version = \".*\"/s//version = \"$version\"/" "$root/$file"
done
sed -i -E "s/^__version__ = \".*\"/__version__ = \"$version\"/" "$root/runtime/src/aerogrid/__init__.py"
(cd "$root/excel" && npm version "$version" --no-git-tag-version --allow-same-version >/dev/null)
echo "version $version; now: uv lock, scripts/export_requirements.sh, make dist"
