"""What every benchmark shares: the repo's broker launchers and result files."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
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
