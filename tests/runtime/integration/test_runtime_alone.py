"""The runtime installed alone, as `packaging/runtime.Dockerfile` installs it in the app
image: the locked, hashed requirements (`packaging/requirements/runtime.txt`), then the
runtime's own wheel with --no-deps, into a fresh venv. It must hold exactly those
distributions (no devkit or cloud libraries: Textual, docker, kubernetes, kopf), and
`python -m aerogrid run` must serve the example app from it.

No Docker engine runs here, so the image itself is not built; this is the part of it that
can be proved."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from aerogrid.client import GridClient
from support.apps import EXAMPLE_APP, REPO, RunningApp
from support.brokers import Broker
from support.uv import find_uv

FORBIDDEN = {"textual", "docker", "kubernetes", "kopf"}
REQUIREMENTS = REPO / "packaging" / "requirements" / "runtime.txt"


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = find_uv()
    venv = tmp_path_factory.mktemp("runtime-alone") / "venv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run(
        [uv, "venv", "--quiet", "--python", "python3.11", str(venv)], check=True, env=env
    )
    python = venv / "bin" / "python"
    wheels = venv.parent / "wheels"
    subprocess.run(
        [uv, "build", "--quiet", "--wheel", "--out-dir", str(wheels), str(REPO / "runtime")],
        check=True,
        env=env,
        timeout=600,
    )
    install = [uv, "pip", "install", "--quiet", "--python", str(python)]
    subprocess.run(
        [*install, "--require-hashes", "--only-binary", ":all:", "-r", str(REQUIREMENTS)],
        check=True,
        env=env,
        timeout=600,
    )
    (wheel,) = wheels.glob("aerogrid-*.whl")
    subprocess.run([*install, "--no-deps", str(wheel)], check=True, env=env, timeout=600)
    return python


def locked_names(requirements: Path) -> set[str]:
    """The distribution names a requirements export pins (`name==version \\`)."""
    names = set()
    for line in requirements.read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            names.add(line.split("==")[0].strip().lower().replace("_", "-"))
    return names


def test_runtime_alone_pulls_in_no_devkit_or_cloud_libraries(runtime_python: Path) -> None:
    uv = find_uv()
    listed = subprocess.run(
        [uv, "pip", "list", "--python", str(runtime_python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {
        line.split("==")[0].lower().replace("_", "-") for line in listed.splitlines() if line
    }
    assert "aerogrid" in installed and "aiokafka" in installed
    assert not installed & FORBIDDEN
    # Nothing beyond the lock's runtime closure, and all of it (pip itself aside).
    assert installed - {"pip"} == locked_names(REQUIREMENTS) | {"aerogrid"}


async def test_python_m_aerogrid_run_with_the_runtime_alone(
    runtime_python: Path, tansu: Broker
) -> None:
    app = RunningApp(EXAMPLE_APP, tansu.bootstrap, python=str(runtime_python))
    with app:
        async with GridClient(app.target) as client:
            apps = await client.apps()
        assert [a.name for a in apps] == ["ordersapp"]
        assert app.terminate() == 0
