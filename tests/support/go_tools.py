"""Third-party clients built from the Go module proxy by scripts/build_*.sh, cached.

A test that needs one asks for it here: the script runs (a no-op once built, so a test
session started without `make test` builds it too), and a machine without Go skips the
test, or fails it under CI=true (`ci.unavailable`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.ci import unavailable
from support.paths import REPO

#: scripts/go_install_tool.sh's exit code for "no Go on PATH".
_NO_GO = 3


def go_tool(script: str, binary: str, timeout: float = 900) -> Path:
    """The `binary` that scripts/`script` builds (it prints its bin folder last)."""
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"scripts/{script} failed: {exc}")
        raise
    if done.returncode != 0:
        why = "no Go on PATH" if done.returncode == _NO_GO else done.stderr.strip()[-2000:]
        unavailable(f"{binary} is not built (scripts/{script}: {why})")
    lines = done.stdout.strip().splitlines()
    path = Path(lines[-1] if lines else "") / binary
    if not path.is_file():
        unavailable(f"scripts/{script} printed no folder holding {binary}: {done.stdout!r}")
    return path
