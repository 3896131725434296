"""The devkit's local loop: how long a developer waits.

* Demo start: `aerogrid demo --headless` from process start to the first grid update
  line on its stdout (the embedded broker, the orders app under the supervisor, the local
  endpoint, the feed, a subscriber through the endpoint). The first run is reported
  apart (cold caches); the goal (under 3 s) is for warm runs. Side by side: the floor,
  `aerogrid run` of the same app alone on an already running broker, process start to
  its ready file.
* Save to serving: an app runs under the supervisor; its file is saved with a new grid;
  timed from the save to the new grid listed by the running app (goal: under 2 s).
  Side by side: a cold `aerogrid run` start, which a reload cannot beat by much.

    .venv/bin/python -m benchmarks.devkit_loop            # 5 runs each
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aerogrid.client import GridClient
from aerogrid_devkit.dev_loop import bundled_python
from aerogrid_devkit.embedded import EmbeddedBroker
from aerogrid_devkit.supervisor import Supervisor
from benchmarks._common import REPO, seconds_summary, write_result

EXAMPLE = REPO / "examples" / "ordersapp" / "app.py"


def demo_first_update(
    aerogrid: Sequence[str] = (sys.executable, "-m", "aerogrid"),
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """Seconds from spawning `aerogrid demo --headless` to its first-update line.

    `aerogrid` is the command (this venv's by default; the binary's in benchmarks.binary).
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        [*aerogrid, "demo", "--headless", "--port", "0"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("first grid update"):
                return time.monotonic() - started
        raise RuntimeError(f"{' '.join(aerogrid)} demo ended without a grid update")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_ready(bootstrap: str) -> float:
    """Seconds from spawning `aerogrid run` of the orders app to its ready file."""
    with tempfile.TemporaryDirectory() as tmp:
        ready = Path(tmp) / "ready.json"
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aerogrid", "run", str(EXAMPLE), "--port", "0"),
                *("--ready-file", str(ready), "--broker", bootstrap, "--log-level", "WARNING"),
            ],
            env={**os.environ, "AEROGRID_BROKER": bootstrap},
        )
        try:
            while not ready.exists():
                if proc.poll() is not None:
                    raise RuntimeError("aerogrid run exited")
                time.sleep(0.005)
            return time.monotonic() - started
        finally:
            proc.terminate()
            proc.wait(30)


APP_TEMPLATE = """
import aerogrid

app = aerogrid.App("reloaded")
orders = app.topic("bench-orders", value_type=dict)
{grids}

@app.stream(orders)
async def count(records):
    async for record in records:
        g0["n"] = {{"n": 1}}
"""


async def save_to_serving(bootstrap: str, runs: int) -> list[float]:
    """Seconds from saving an app file to the running app listing the grid it added."""
    with tempfile.TemporaryDirectory() as tmp:
        app_file = Path(tmp) / "app.py"
        app_file.write_text(APP_TEMPLATE.format(grids='g0 = app.Grid("g0", columns=["n"])'))
        supervisor = Supervisor({"reloaded": app_file}, bootstrap, python_for=bundled_python)
        await supervisor.start()
        app = supervisor.apps["reloaded"]
        times: list[float] = []
        try:
            await _until(lambda: app.status == "running", 60)
            await asyncio.sleep(1.0)  # let the watcher settle
            for run in range(1, runs + 1):
                grids = "\n".join(f'g{i} = app.Grid("g{i}", columns=["n"])' for i in range(run + 1))
                saved = time.monotonic()
                app_file.write_text(APP_TEMPLATE.format(grids=grids))
                want = f"g{run}"
                while True:
                    port = app.ports.get("grpc") if app.status == "running" else None
                    if port is not None and await _lists_grid(port, want):
                        break
                    if time.monotonic() - saved > 30:
                        raise RuntimeError("the saved app did not serve its new grid")
                    await asyncio.sleep(0.01)
                times.append(time.monotonic() - saved)
                await asyncio.sleep(0.5)
        finally:
            await supervisor.stop()
        return times


async def _lists_grid(port: int, grid: str) -> bool:
    try:
        async with GridClient(f"127.0.0.1:{port}") as client:
            apps = await client.apps()
    except Exception:
        return False
    return any(g.name == grid for a in apps for g in a.grids)


async def _until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        await asyncio.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    demo = [demo_first_update() for _ in range(args.runs + 1)]
    cold, warm = demo[0], demo[1:]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(0, log_file=Path(tmp) / "b.log") as b:
        bare = [run_ready(b.bootstrap) for _ in range(args.runs)]
        reload = asyncio.run(save_to_serving(b.bootstrap, args.runs))

    result: dict[str, Any] = {
        "demo_first_update": {"first_run_s": round(cold, 3), **seconds_summary(warm)},
        "aerogrid_run_ready": seconds_summary(bare),
        "save_to_serving": seconds_summary(reload),
        "ratios": {
            "demo_first_update_over_run_ready": round(
                statistics.median(warm) / statistics.median(bare), 2
            ),
            "save_to_serving_over_run_ready": round(
                statistics.median(reload) / statistics.median(bare), 2
            ),
        },
        "goals": {"demo_first_update_warm_s": 3.0, "save_to_serving_s": 2.0},
    }
    path = write_result("devkit_loop", result)
    print(f"demo --headless to first grid update: first {cold:.2f}s, warm {seconds_summary(warm)}")
    print(f"aerogrid run to ready (the floor):    {seconds_summary(bare)}")
    print(f"save to serving:                      {seconds_summary(reload)}")
    print(f"ratios: {result['ratios']}  -> {path}")
    ok = statistics.median(warm) < 3.0 and statistics.median(reload) < 2.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
