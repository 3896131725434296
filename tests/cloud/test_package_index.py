"""The test bed's package index (tests/support/package_index.py) serves what pip installs.

pip is the build Job's own client, with the environment the Job's `requirements` step
gets (render/build.py): an http:// index is trusted by being configured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aerogrid_cloud.model import AppSpec
from aerogrid_cloud.render import build_for, build_objects
from aerogrid_cloud.settings import PlatformSettings
from support.package_index import MODULE, VERSION, PackageIndex

pytestmark = pytest.mark.timeout(300)


def _job_pip_env(index_url: str) -> dict[str, str]:
    """The environment the rendered Job gives pip, over this process's (PIP_* dropped)."""
    settings = PlatformSettings(package_index=index_url)
    spec = AppSpec.model_validate(
        {
            "runtimeVersion": "0.1.0",
            "files": {"app.py": "x = 1\n", "requirements.txt": "tabulate\n"},
        }
    )
    build = build_for(spec, settings)
    assert build is not None
    _, job = build_objects(build, settings)
    (pip,) = job["spec"]["template"]["spec"]["initContainers"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({e["name"]: e["value"] for e in pip["env"] if e["name"].startswith("PIP_")})
    return env


def test_pip_installs_the_wheel_from_the_index(tmp_path: Path) -> None:
    venv = tmp_path / "venv"  # pip from ensurepip: no download
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-input"]
    target = tmp_path / "site-packages"
    with PackageIndex() as index:
        env = _job_pip_env(index.url)
        assert env["PIP_TRUSTED_HOST"] == "127.0.0.1"
        subprocess.run(
            [*pip, "--only-binary=:all:", "--target", str(target), index.requirement],
            env=env,
            check=True,
            timeout=120,
        )
        missing = subprocess.run(
            [*pip, "--target", str(tmp_path / "nothing"), "no-such-package==1.0"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    imported = subprocess.run(
        [sys.executable, "-c", f"import {MODULE}; print({MODULE}.__version__)"],
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == VERSION
    # What the build's status will carry: pip's own line (--quiet leaves only errors).
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0] == (
        "ERROR: Could not find a version that satisfies the requirement no-such-package==1.0"
        " (from versions: none)"
    )
