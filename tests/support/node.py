"""The Node.js client of tests/excel/node (connect-es), installed with `npm ci` when stale.

Its protobuf code is the Excel add-in's (excel/dist/gen, from the add-in's build), so the
add-in is built first when it is missing or older than its sources.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from support.excel import built_addin

NODE_DIR = Path(__file__).resolve().parents[1] / "excel" / "node"
NPM_CACHE = Path.home() / ".cache" / "aerogrid" / "npm"
STREAM_GRID = NODE_DIR / "stream_grid.mjs"


class NodeUnavailable(RuntimeError):
    """node or npm is missing."""


def ensure_node_client() -> str:
    """The node binary, after `npm ci` in tests/excel/node when stale and the add-in's build."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise NodeUnavailable("node and npm are needed to run the connect-es client")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"  # npm's record of the install
    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    with open(NPM_CACHE / ".aerogrid-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs share the tree
        newest = max((NODE_DIR / f).stat().st_mtime for f in ("package.json", "package-lock.json"))
        if not installed.exists() or installed.stat().st_mtime < newest:
            subprocess.run(
                [npm, "ci", "--cache", str(NPM_CACHE), "--no-audit", "--no-fund"],
                cwd=NODE_DIR,
                check=True,
                timeout=600,
            )
    built_addin()  # excel/dist/gen, which stream_grid.mjs imports
    return node
