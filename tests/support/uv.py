"""Finding uv for tests that build venvs or wheels (make install keeps one in ~/.cache/aerogrid)."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import pytest


def find_uv() -> str:
    """uv's path; skips (fails under CI=true) when there is none."""
    found = os.environ.get("AEROGRID_UV") or shutil.which("uv")
    if not found:
        candidates = sorted(glob.glob(str(Path.home() / ".cache/aerogrid/uv-*/bin/uv")))
        found = candidates[-1] if candidates else None
    if not found:
        reason = "uv not found (make install puts it in ~/.cache/aerogrid)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found
