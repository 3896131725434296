"""The Excel add-in's functions, built (excel/dist), against a real app on the embedded broker.

Excel cannot run here: `excel/test-live/grid_live.mjs` runs the add-in's own
`=AEROGRID.GRID` code in Node, with a stand-in for Excel's `StreamingInvocation` that
records every `setResult`, over the same connect-web transport the add-in uses in Excel.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker

pytestmark = pytest.mark.node

EXCEL = Path(__file__).resolve().parents[2] / "excel"
GRID_LIVE = EXCEL / "test-live" / "grid_live.mjs"


@pytest.fixture(scope="module")
def excel_dist() -> Path:
    """excel/dist, rebuilt with tsc when older than excel/src (`make excel` builds it too)."""
    tsc = EXCEL / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        reason = "excel/node_modules is missing: run `make excel`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    built = EXCEL / "dist" / "functions.js"
    newest = max(p.stat().st_mtime for p in (EXCEL / "src").rglob("*.ts"))
    if not built.exists() or built.stat().st_mtime < newest:
        subprocess.run([str(tsc), "-p", "tsconfig.json"], cwd=EXCEL, check=True, timeout=300)
    return built


async def run_grid_live(node: str, *args: str) -> tuple[int, dict[str, Any], str]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(GRID_LIVE),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    lines = stdout.decode().strip().splitlines()
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    assert proc.returncode is not None
    return proc.returncode, result, stderr.decode()


def orders(prefix: str, count: int, product: str, quantity: int) -> list[tuple[bytes, bytes]]:
    value = json.dumps({"product": product, "quantity": quantity}).encode()
    return [(f"{prefix}{i}".encode(), value) for i in range(count)]


async def test_grid_spills_the_exact_live_grid(
    node: str, excel_dist: Path, tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    """=AEROGRID.GRID spills header + rows by key, and follows orders produced while it runs.

    Excel cannot run here: a stand-in invocation records every result of the built
    add-in's function, and the last one must equal the exact grid.
    """
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    expected = [
        ["key", "units_sold", "orders"],
        ["apple", 6, 3],
        ["kiwi", 8, 2],
        ["pear", 10, 10],
        ["tea", 35, 5],
    ]
    with RunningApp(path, tansu.bootstrap) as app:
        await produce(
            tansu.bootstrap,
            topic,
            [*orders("a", 3, "apple", 2), *orders("p", 10, "pear", 1), *orders("t", 5, "tea", 7)],
        )
        args = ("--base-url", app.http, "--app", unique_name, "--grid", "product_sum")
        run = asyncio.create_task(
            run_grid_live(
                node,
                *args,
                "--options",
                "interval=100",
                "--duration",
                "40",
                "--expect",
                json.dumps(expected),
            )
        )
        await asyncio.sleep(2.0)  # the formula shows the first three products
        await produce(tansu.bootstrap, topic, orders("k", 2, "kiwi", 4))  # a live delta
        code, result, stderr = await run
    assert code == 0, f"{stderr}\nlast matrix: {result.get('matrix')}"
    assert result["matrix"] == expected
    assert result["matched"] is True
    assert result["results"] >= 2  # kiwi arrived as a later result, not in the first one
    assert result["open_streams"] == 0  # Excel's cancel closed the shared stream


async def test_unknown_grid_shows_a_readable_error(
    node: str, excel_dist: Path, tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    """An unknown grid ends in one line of text in the cell, quickly, not in a hang.

    Excel cannot run here: a stand-in invocation records what the cell would show.
    """
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    with RunningApp(path, tansu.bootstrap) as app:
        code, result, stderr = await run_grid_live(
            node,
            "--base-url",
            app.http,
            "--app",
            unique_name,
            "--grid",
            "no_such_grid",
            "--duration",
            "5",
        )
    assert code == 0, stderr
    matrix = result["matrix"]
    assert isinstance(matrix, list) and len(matrix) == 1 and len(matrix[0]) == 1, matrix
    text = matrix[0][0]
    assert text.startswith("AeroGrid: not found"), text
    assert "no_such_grid" in text
    assert result["results"] == 1  # one final error, no retry loop


async def test_value_and_apps_follow_the_app(
    node: str, excel_dist: Path, tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    """=AEROGRID.VALUE shows one live cell; =AEROGRID.APPS lists the app from the catalog watch.

    Excel cannot run here: a stand-in invocation records what each cell would show.
    """
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    with RunningApp(path, tansu.bootstrap) as app:
        await produce(tansu.bootstrap, topic, orders("t", 3, "tea", 4))
        args = ("--base-url", app.http, "--app", unique_name, "--grid", "product_sum")
        code, cell, stderr = await run_grid_live(
            node,
            *args,
            "--function",
            "value",
            "--row-key",
            "tea",
            "--column",
            "units_sold",
            "--duration",
            "30",
            "--expect",
            "12",
        )
        assert code == 0, f"{stderr}\nlast value: {cell.get('matrix')}"
        expected_row = [unique_name, "default", "running", "product_sum"]
        expected = [["name", "tenant", "status", "grids"], expected_row]  # one app per runner
        code, listed, stderr = await run_grid_live(
            node, *args, "--function", "apps", "--duration", "20", "--expect", json.dumps(expected)
        )
    assert code == 0, f"{stderr}\nlast matrix: {listed.get('matrix')}"
    assert listed["matrix"] == expected
