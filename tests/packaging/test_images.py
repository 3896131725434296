"""The container images, built for real and run as an App's pod runs them.

`make images` (scripts/build_images.sh) builds aerogrid-runtime, aerogrid-platform and
aerogrid-builder with buildah from packaging/*.Dockerfile. Their bases here are **stand-ins**
for the public ``python:3.11-slim-bookworm`` and ``debian:bookworm-slim`` (no registry is
reachable on the test machine): Debian bookworm from debootstrap with Debian's python3.11,
labelled ``org.aerogrid.stand-in-for``. Users build from the public images (the Dockerfiles'
default). The containers run under podman (support/containers.py: why podman, why runc) with
the pod's constraints: UID 10001, read-only root with only /tmp writable, no capabilities, no
privilege escalation.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers
from support.apps import produce, write_orders_app
from support.brokers import ApacheKafka, free_port
from support.ci import unavailable
from support.containers import PodmanSandbox, wait_ready
from support.images import (
    BUILDER,
    PLATFORM,
    RUNTIME,
    STAND_IN_LABEL,
    BuiltImage,
)
from support.orders import converged, expected_sums, orders

#: What a compiler is called on Debian (gcc, its cc/c++ alternatives, clang).
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc")
BIN_DIRS = ("usr/bin", "usr/local/bin", "bin", "usr/sbin", "sbin", "opt/aerogrid/bin")
#: Size budgets (unpacked): what the stand-in bases and the locked dependencies come to, with room.
SIZE_BUDGET = {RUNTIME: 260_000_000, PLATFORM: 300_000_000, BUILDER: 200_000_000}
PUBLIC_BASE = {
    RUNTIME: "docker.io/library/python:3.11-slim-bookworm",
    PLATFORM: "docker.io/library/python:3.11-slim-bookworm",
    BUILDER: "docker.io/library/debian:bookworm-slim",
}


@pytest.fixture(scope="module")
def podman(images: dict[str, BuiltImage]) -> Iterator[PodmanSandbox]:
    reason = containers.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    with PodmanSandbox() as sandbox:
        for image in images.values():
            sandbox.load(image)
        yield sandbox


def test_every_image_is_built_on_a_labelled_stand_in(
    images: dict[str, BuiltImage], podman: PodmanSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    assert set(images) == {RUNTIME, PLATFORM, BUILDER}
    for name, image in images.items():
        labels = podman.podman(
            "image", "inspect", "--format={{json .Labels}}", image.reference
        ).stdout
        assert f'"{STAND_IN_LABEL}":"{PUBLIC_BASE[name]}"' in labels, labels
        assert image.archive.is_file() and image.archive.stat().st_size == image.archive_bytes
        assert 0 < image.size_bytes < SIZE_BUDGET[name], (name, image.size_bytes)
    with capsys.disabled():
        for image in images.values():
            print(
                f"\nimage {image.name}:{image.tag}: {image.size_bytes / 1e6:.0f} MB unpacked, "
                f"{image.archive_bytes / 1e6:.0f} MB as an OCI archive (base: {image.base})",
                end="",
            )


@pytest.mark.parametrize("name", [RUNTIME, PLATFORM, BUILDER])
def test_image_holds_no_compiler_package_cache_or_tests(
    name: str, images: dict[str, BuiltImage], podman: PodmanSandbox
) -> None:
    with podman.image_files(images[name].reference) as root:
        compilers = [
            f"/{folder}/{tool}"
            for folder in BIN_DIRS
            for tool in COMPILERS
            if os.path.lexists(root / folder / tool)
        ]
        assert compilers == []
        found: dict[str, list[str]] = {"tests": [], "pip cache": [], "wheels": [], "tmp": []}
        for folder, dirs, files in os.walk(root):
            relative = "/" + str(Path(folder).relative_to(root)).lstrip(".")
            for entry in dirs:
                if entry in ("test", "tests", "idle_test"):
                    found["tests"].append(f"{relative}/{entry}")
                if entry == "pip" and relative.endswith("/.cache"):
                    found["pip cache"].append(f"{relative}/{entry}")
            for entry in files:
                # pytest's conftest.py, or its bytecode (__pycache__/conftest.cpython-311.pyc)
                if entry.startswith("conftest.") and entry.endswith((".py", ".pyc")):
                    found["tests"].append(f"{relative}/{entry}")
                # The venv module's pip and setuptools (Debian's python3.11-venv): the base's.
                if entry.endswith(".whl") and relative != "/usr/share/python-wheels":
                    found["wheels"].append(f"{relative}/{entry}")
            if relative in ("/tmp", "/var/tmp"):
                found["tmp"] += [f"{relative}/{entry}" for entry in [*dirs, *files]]
        assert found == {"tests": [], "pip cache": [], "wheels": [], "tmp": []}
        apt_lists = [p.name for p in (root / "var/lib/apt/lists").glob("*") if p.name != "partial"]
        apt_cache = [  # apt's empty lock file is no cache
            p.name for p in (root / "var/cache/apt").rglob("*") if p.is_file() and p.name != "lock"
        ]
        assert apt_lists == [] and apt_cache == []


def test_platform_image_imports_the_operator_and_the_catalog_locked_down(
    images: dict[str, BuiltImage], podman: PodmanSandbox
) -> None:
    done = podman.run(
        images[PLATFORM].reference,
        ["-c", "import os, aerogrid_cloud.operator, aerogrid_cloud.catalog; print(os.getuid())"],
        entrypoint="python",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "10001"


def _process_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def _root_mount_options(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            return fields[5].split(",")
    raise AssertionError(f"process {pid} has no root mount")


def test_runtime_image_serves_the_seed_app_locked_down(
    images: dict[str, BuiltImage],
    podman: PodmanSandbox,
    apache_kafka: ApacheKafka,
    unique_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`aerogrid run` of the seed app, read-only at /app as the pod mounts it, on the host's
    network (the test Kafka listens on 127.0.0.1): /readyz, then the exact sums over gRPC."""
    app_file = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    app_file.chmod(0o644)
    grpc_port, http_port = free_port(), free_port()
    container = podman.create(
        images[RUNTIME].reference,
        [
            "/app/app.py",
            "--broker",
            apache_kafka.bootstrap,
            "--host",
            "127.0.0.1",
            "--port",
            str(grpc_port),
            "--http-port",
            str(http_port),
        ],
        volumes=[f"{app_file}:/app/app.py:ro"],
        host_network=True,
    )
    started = time.monotonic()
    podman.podman("start", container)
    ready_after = _wait_ready(podman, container, f"http://127.0.0.1:{http_port}/readyz")
    pid = int(podman.podman("inspect", "--format={{.State.Pid}}", container).stdout)
    status = _process_status(pid)
    assert status["Uid"].split() == ["10001"] * 4 and status["Gid"].split() == ["10001"] * 4
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "0" * 16
    assert status["NoNewPrivs"] == "1"
    assert "ro" in _root_mount_options(pid)

    records = orders(120, seed=15)
    want = expected_sums(records)
    asyncio.run(produce(apache_kafka.bootstrap, f"{unique_name}-orders", records))
    got = asyncio.run(converged(f"127.0.0.1:{grpc_port}", unique_name, "product_sum", want))
    assert got == want, podman.logs(container)[-3000:]
    with capsys.disabled():
        cold_start = ready_after - started
        print(f"\nruntime image cold start (podman start to /readyz 200): {cold_start:.2f} s")
    podman.podman("stop", "--time=10", container)
    assert podman.podman("inspect", "--format={{.State.ExitCode}}", container).stdout.strip() == "0"
    podman.remove(container)


def _wait_ready(podman: PodmanSandbox, container: str, url: str, timeout: float = 60.0) -> float:
    """The monotonic time /readyz first answered 200; fails with the container's log."""

    def running() -> bool:
        state = podman.podman("inspect", "--format={{.State.Running}}", container).stdout
        return state.strip() == "true"

    try:
        return wait_ready(url, running, timeout)
    except RuntimeError as exc:
        raise AssertionError(f"{exc}:\n{podman.logs(container)[-3000:]}") from None
