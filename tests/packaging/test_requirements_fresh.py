"""packaging/requirements/*.txt are what scripts/export_requirements.sh makes of uv.lock.

The images install exactly these files; a lock change without a fresh export would ship
images with other versions than the ones the tests ran.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.paths import REPO
from support.uv import find_uv


def test_image_requirements_match_the_lock(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "UV": find_uv()}
    subprocess.run(
        ["bash", str(REPO / "scripts" / "export_requirements.sh")], env=env, check=True, timeout=120
    )
    for name in ("runtime.txt", "platform.txt"):
        committed = REPO / "packaging" / "requirements" / name
        if (tmp_path / name).read_text() != committed.read_text():
            pytest.fail(f"{committed} is stale: run scripts/export_requirements.sh", pytrace=False)
