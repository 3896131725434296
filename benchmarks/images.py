"""The built images: their sizes, and the runtime image's cold start beside a bare process.

Images from `make images` (tests/support/images.py: buildah, stand-in bases for the public
ones, see there). Sizes are read from the build's record (unpacked: the sum of the layers;
the OCI archive: gzip layers, what a registry stores).

Cold start, `--runs` times, interleaved, each on a new app (its own topic, consumer group and
changelog on a real Apache Kafka) so no run finds another's state:

* **container**: `podman start` of a created runtime container, locked down as a pod runs it
  (support.containers: UID 10001, read-only root, no capabilities, runc, host network), to
  the first `/readyz` 200 of the seed app — and `podman create` + `start` together;
* **process**: `python -m aerogrid run` of the same app from this virtualenv, spawn to the
  first `/readyz` 200: the floor, what the container adds is the difference.

    .venv/bin/python -m benchmarks.images --runs 5     # root: podman's vfs storage and runc
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks._common import seconds_summary, write_result
from support.apps import write_orders_app
from support.brokers import ApacheKafka, free_port
from support.containers import PodmanSandbox, unavailable_reason, wait_ready
from support.images import RUNTIME, BuiltImage, built_images


def sizes(images: dict[str, BuiltImage]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "reference": f"{image.name}:{image.tag}",
            "base": image.base,
            "unpacked_mb": round(image.size_bytes / 1e6, 1),
            "archive_mb": round(image.archive_bytes / 1e6, 1),
        }
        for name, image in images.items()
    }


def app_args(kafka: ApacheKafka, grpc_port: int, http_port: int) -> list[str]:
    return [
        *("--broker", kafka.bootstrap, "--host", "127.0.0.1"),
        *("--port", str(grpc_port), "--http-port", str(http_port)),
    ]


def container_start(
    podman: PodmanSandbox, runtime: BuiltImage, kafka: ApacheKafka, root: Path
) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    app_file = write_orders_app(root / name, name, f"{name}-orders")
    app_file.chmod(0o644)
    grpc_port, http_port = free_port(), free_port()
    created = time.monotonic()
    container = podman.create(
        runtime.reference,
        ["/app/app.py", *app_args(kafka, grpc_port, http_port)],
        volumes=[f"{app_file}:/app/app.py:ro"],
        host_network=True,
    )
    started = time.monotonic()
    podman.podman("start", container)

    def alive() -> bool:
        state = podman.podman("inspect", "--format={{.State.Running}}", container).stdout
        return state.strip() == "true"

    try:
        ready = wait_ready(f"http://127.0.0.1:{http_port}/readyz", alive)
    finally:
        podman.podman("stop", "--time=10", container, check=False)
        podman.remove(container)
    return {"start_to_ready": ready - started, "create_to_ready": ready - created}


def process_start(kafka: ApacheKafka, root: Path) -> float:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    (root / name).mkdir()
    app_file = write_orders_app(root / name, name, f"{name}-orders")
    grpc_port, http_port = free_port(), free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aerogrid",
            "run",
            str(app_file),
            *app_args(kafka, grpc_port, http_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = wait_ready(f"http://127.0.0.1:{http_port}/readyz", lambda: proc.poll() is None)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return ready - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    images = built_images()
    container: list[dict[str, float]] = []
    process: list[float] = []
    with (
        ApacheKafka(heap="1g") as kafka,
        PodmanSandbox() as podman,
        tempfile.TemporaryDirectory() as tmp,
    ):
        runtime = images[RUNTIME]
        podman.load(runtime)
        process_start(kafka, Path(tmp))  # warm-up: the broker's first topics, page cache
        for run in range(args.runs):
            container.append(container_start(podman, runtime, kafka, Path(tmp)))
            process.append(process_start(kafka, Path(tmp)))
            print(f"run {run}: container {container[-1]}, process {process[-1]:.2f} s", flush=True)
    start = seconds_summary([c["start_to_ready"] for c in container])
    floor = seconds_summary(process)
    results = {
        "images": sizes(images),
        "runs": args.runs,
        "container_start_to_readyz": start,
        "container_create_and_start_to_readyz": seconds_summary(
            [c["create_to_ready"] for c in container]
        ),
        "process_spawn_to_readyz": floor,
        "container_vs_process_p50": round(start["p50_s"] / floor["p50_s"], 2),
    }
    path = write_result("images", results)
    print(json.dumps(results, indent=2))
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
