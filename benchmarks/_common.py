"""What every benchmark shares: the repo's broker launchers and result files."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "tests"))


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write benchmarks/results/NAME.json (the README quotes these files)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2, sort_keys=True) + "\n")
    return path


def seconds_summary(values: list[float]) -> dict[str, float]:
    """p50, max and min of a few timed runs, in seconds."""
    return {
        "p50_s": round(statistics.median(values), 3),
        "max_s": round(max(values), 3),
        "min_s": round(min(values), 3),
    }


@dataclass
class ExternalBroker:
    """A broker started elsewhere (`--bootstrap`): what the benchmarks use of a Broker."""

    kind: str
    bootstrap: str
    pid: int

    def __enter__(self) -> ExternalBroker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def recv_message(conn: Connection, timeout: float, what: str) -> Any:
    """The next message a benchmark's child process sends: `(kind, payload)`.

    A child reports its failure as `("error", traceback)`; that, or silence for `timeout`
    seconds, is raised here, naming `what` the child is.
    """
    if not conn.poll(timeout):
        raise TimeoutError(f"no answer from {what} in {timeout:.0f}s")
    message = conn.recv()
    if message[0] == "error":
        raise RuntimeError(f"{what} failed:\n{message[1]}")
    return message


def wait_metric(app: Any, name: str, labels: dict[str, str], value: float, timeout: float) -> bool:
    """Whether the app's metric `name{labels}` reaches `value` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.metric(name, labels) >= value:
            return True
        time.sleep(0.1)
    return False
