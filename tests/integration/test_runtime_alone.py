"""The runtime installed alone, as in an app container: a fresh venv with only the
`aerogrid` distribution runs `python -m aerogrid run` and pulls in no devkit or cloud
libraries (Textual, docker, kubernetes, kopf)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from aerogrid.client import GridClient
from support.apps import EXAMPLE_APP, REPO, RunningApp
from support.brokers import Broker

FORBIDDEN = {"textual", "docker", "kubernetes", "kopf"}


def find_uv() -> str:
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


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = find_uv()
    venv = tmp_path_factory.mktemp("runtime-alone") / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run(
        [uv, "venv", "--quiet", "--python", "python3.11", str(venv)], check=True, env=env
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), str(REPO / "runtime")],
        check=True,
        env=env,
        timeout=600,
    )
    return python


def test_runtime_alone_pulls_in_no_devkit_or_cloud_libraries(runtime_python: Path) -> None:
    uv = find_uv()
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(runtime_python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {line.split("==")[0].lower() for line in listed.splitlines() if line}
    assert "aerogrid" in installed and "aiokafka" in installed
    assert not installed & FORBIDDEN


async def test_python_m_aerogrid_run_with_the_runtime_alone(
    runtime_python: Path, tansu: Broker
) -> None:
    app = RunningApp(EXAMPLE_APP, tansu.bootstrap, python=str(runtime_python))
    with app:
        async with GridClient(app.target) as client:
            apps = await client.apps()
        assert [a.name for a in apps] == ["ordersapp"]
        assert app.terminate() == 0
