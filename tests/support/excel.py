"""The Excel add-in's built bundle for the live tests (Node and headless Chromium)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

from support.ci import unavailable

EXCEL = Path(__file__).resolve().parents[2] / "excel"
#: The status APPS() shows for an app on the embedded broker, which has no transactions.
RUNNING_ON_EMBEDDED = (
    "running: checkpointed, not exactly-once: the broker refused a transactional producer "
    "(UnknownError: [Error -1] UnknownError)"
)
ADDIN = EXCEL / "dist" / "addin"


def built_addin() -> Path:
    """excel/dist/addin, rebuilt with `npm run build` when missing or older than its sources.

    `make excel` builds it too; test modules running side by side build it once, under a lock.
    """
    npm = shutil.which("npm")
    if npm is None or not (EXCEL / "node_modules" / ".bin" / "tsc").exists():
        unavailable("npm or excel/node_modules is missing: run `make excel`")
    assert npm is not None
    functions = ADDIN / "functions.js"
    sources = [
        *(EXCEL / "src").rglob("*"),
        *(EXCEL / "pages").rglob("*"),
        *(EXCEL / "scripts").rglob("*"),
        EXCEL / "harness.html",
        EXCEL / "package.json",
        EXCEL / "package-lock.json",
    ]
    with open(EXCEL / "node_modules" / ".aerogrid-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        newest = max(p.stat().st_mtime for p in sources if p.is_file())
        if not functions.exists() or functions.stat().st_mtime < newest:
            subprocess.run([npm, "run", "build"], cwd=EXCEL, check=True, timeout=600)
    for name in ("functions.js", "functions.json", "taskpane.html", "harness.html", "harness.js"):
        assert (ADDIN / name).is_file(), f"`npm run build` did not write {name}"
    return ADDIN
