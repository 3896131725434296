"""The Excel add-in's functions, built (excel/dist), against a real app on the embedded broker.

Excel cannot run here: `excel/test-live/grid_live.mjs` runs the add-in's own
`=AEROGRID.GRID` code in Node, with a stand-in for Excel's `StreamingInvocation` that
records every `setResult`, over the same connect-web transport the add-in uses in Excel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aerogrid_devkit.supervisor import Supervisor
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker
from support.excel import EXCEL, RUNNING_ON_EMBEDDED, built_addin
from support.workspace import supervised_endpoint, wait_for

pytestmark = pytest.mark.node

GRID_LIVE = EXCEL / "test-live" / "grid_live.mjs"
GRID_RESTART = EXCEL / "test-live" / "grid_restart.mjs"


@pytest.fixture(scope="module")
def excel_dist() -> Path:
    """The add-in bundle's functions.js (excel/dist/addin), built when stale."""
    return built_addin() / "functions.js"


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
        expected_row = [unique_name, "default", RUNNING_ON_EMBEDDED, "product_sum"]
        expected = [["name", "tenant", "status", "grids"], expected_row]  # one app per runner
        code, listed, stderr = await run_grid_live(
            node, *args, "--function", "apps", "--duration", "20", "--expect", json.dumps(expected)
        )
    assert code == 0, f"{stderr}\nlast matrix: {listed.get('matrix')}"
    assert listed["matrix"] == expected


@contextlib.asynccontextmanager
async def supervised(app_file: Path, bootstrap: str) -> AsyncIterator[tuple[Supervisor, str]]:
    """One app under the devkit's Supervisor behind a LocalServer: the endpoint's URL stays
    the same across the app's restarts, as it does for Excel."""
    async with supervised_endpoint(
        {"app": app_file},
        bootstrap,
        running=["app"],
        tls=False,  # http is all Node needs
    ) as (supervisor, endpoint):
        yield supervisor, f"http://127.0.0.1:{endpoint.port}"


async def test_grid_keeps_stale_cells_across_an_app_restart_then_recovers(
    node: str, excel_dist: Path, tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    """The app restarts while =AEROGRID.GRID is subscribed: the cells keep their last values
    with the header reading `key (stale: …; reconnecting)`, then show the exact grid again.

    Excel cannot run here: grid_restart.mjs runs the built bundle with a stand-in invocation.
    """
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=1)
    before = [["key", "units_sold", "orders"], ["apple", 6, 3], ["tea", 14, 2]]
    after = [["key", "units_sold", "orders"], ["apple", 6, 3], ["fig", 5, 1], ["tea", 21, 3]]
    async with supervised(path, tansu.bootstrap) as (supervisor, url):
        await produce(
            tansu.bootstrap, topic, [*orders("a", 3, "apple", 2), *orders("t", 2, "tea", 7)]
        )
        proc = await asyncio.create_subprocess_exec(
            node,
            str(GRID_RESTART),
            "--base-url",
            url,
            "--app",
            unique_name,
            "--grid",
            "product_sum",
            "--options",
            "interval=100",
            "--bundle",
            str(excel_dist),
            "--duration",
            "90",
            "--expect-sequence",
            json.dumps([before, after]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        try:
            first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120) or b"{}")
            assert first.get("event") == "matched" and first["index"] == 0, first
            app = supervisor.apps["app"]
            old = app.process
            supervisor.restart_app("app")
            await wait_for(lambda: app.process is not old and app.status == "running", 60)
            await produce(
                tansu.bootstrap, topic, [*orders("f", 1, "fig", 5), *orders("u", 1, "tea", 7)]
            )
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            code = await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stderr = (await proc.stderr.read()).decode(errors="replace")
    result = json.loads(line or b"{}")
    assert code == 0, f"{stderr}\n{result}"
    assert result["matrix"] == after
    assert result["stale_between"][0] >= 1, "no stale marker while the app was down"
    header = result["stale_headers"][0]
    assert header.startswith("key (stale: ") and header.endswith("; reconnecting)"), header
    assert result["first_stale"][1:] == before[1:]  # the cells kept their last values
    assert result["open_streams"] == 0
