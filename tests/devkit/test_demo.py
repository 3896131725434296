"""`aerogrid demo` end to end: embedded broker, the orders app, the local endpoint, a feed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from aerogrid_devkit.demo import MENU, ORDERS_APP
from support.apps import EXAMPLE_APP


def test_the_demo_ships_the_design_app_to_the_letter() -> None:
    """examples/ordersapp is the one source; the devkit's package data is a checked copy.

    A copy, not a build step: the editable install imports aerogrid_devkit from devkit/src,
    where a file that only the wheel build copies in would be missing.
    """
    source, copy = EXAMPLE_APP.parent, ORDERS_APP.parent

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts
        }

    assert files(copy) == files(source), f"copy {source} to {copy} again: they differ"


def test_headless_demo_prints_the_grid_live_and_ends_with_the_exact_final_grid() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "aerogrid",
            "demo",
            "--headless",
            "--duration",
            "6",
            "--json",
            "--port",
            "0",
            "--rate",
            "80",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    final = json.loads(out.strip().splitlines()[-1])
    assert list(final) == ["product_sum"]
    grid = final["product_sum"]
    summary = re.search(r"(\d+) orders sent \((\d+) malformed.*?\); (\d+) units in the grid", out)
    assert summary is not None, out
    sent, malformed, units = map(int, summary.groups())
    assert sent > 100 and malformed == sent // 97 >= 1
    assert sum(row["units_sold"] for row in grid.values()) == units > sent - malformed - 1
    assert set(grid) <= set(MENU) and len(grid) >= 5
    assert re.search(r"first grid update \d+\.\d+s after start", out)
    assert out.count("-- product_sum  seq") >= 2  # printed live, as it changed
    assert "local endpoint on http://localhost:" in out


def test_json_needs_a_duration() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "aerogrid", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--duration" in done.stderr


async def test_the_demo_tui_shows_the_grid_live_and_quits_cleanly() -> None:
    """The TUI mode of `aerogrid demo`, run under Textual's pilot (no terminal here)."""
    from aerogrid_devkit.demo import Demo, DemoOptions
    from aerogrid_devkit.tui.app import AeroGridApp
    from aerogrid_devkit.tui.grid.screen import GridScreen

    seen: list[dict[str, str]] = []
    lines: list[str] = []

    async def run_tui(tui: AeroGridApp) -> None:
        async with tui.run_test(size=(120, 40)) as pilot:
            for _ in range(600):
                await pilot.pause(0.05)
                screen = tui.screen
                if isinstance(screen, GridScreen) and screen.model.rows:
                    seen.append({key: screen.model.text(key)[0] for key in screen.model.rows})
                if len(seen) > 40:
                    break
            await pilot.press("q")  # leaves the grid screen
            await pilot.press("q")  # quits the TUI

    options = DemoOptions(duration=60, as_json=True, endpoint_port=0, rate=100, seed=3)
    code = await Demo(options, lines.append, run_tui=run_tui).run()
    assert code == 0, lines
    final = json.loads(lines[-1])["product_sum"]
    assert len(seen) > 40 and len(seen[-1]) >= 5
    assert seen[0] != seen[-1]  # it changed on screen while orders streamed in
    assert set(seen[-1]) <= set(final)


def test_the_demos_private_broker_dies_with_the_demo_even_when_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no finally clause to run: the kernel's parent-death signal stops tansu.

    Nor does it remove the demo's temporary folder: TMPDIR puts that in the test's own.
    """
    import signal

    import psutil  # type: ignore[import-untyped]

    demo = subprocess.Popen(
        [sys.executable, "-m", "aerogrid", "demo", "--headless", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.startswith("first grid update"):
                break
        brokers = [
            child
            for child in psutil.Process(demo.pid).children(recursive=True)
            if "tansu" in child.name() or "tansu" in " ".join(child.cmdline())
        ]
        assert len(brokers) == 1, brokers
        demo.send_signal(signal.SIGKILL)
        demo.wait(10)
        _, alive = psutil.wait_procs(brokers, timeout=10)
        assert not alive, f"the demo's broker outlived it: {alive}"
        assert list(tmp_path.glob("aerogrid-demo-*")), "the demo's folder is not under TMPDIR"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
