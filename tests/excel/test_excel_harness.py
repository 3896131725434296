"""The Excel add-in's functions in headless Chromium: harness.html, served by the devkit.

Excel cannot run here. `excel/harness.html` loads the add-in's own bundle
(`functions.js`, the single script Excel loads) and calls `AEROGRID.GRID` with a
stand-in for Excel's StreamingInvocation, drawing each spilled result as a sheet does.
The devkit's LocalServer serves that page at /addin/ and the apps' grids on the same
origin, as it does for Excel; `excel/test-live/harness_chromium.mjs` drives Debian's
Chromium (puppeteer-core, no browser download) and reports what the page shows.

Real app processes run under a real Supervisor on the embedded broker; one test restarts
its app while the page is subscribed. Needs Chromium (scripts/install_chromium.sh) and
excel/node_modules: skipped without them, failed when CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import pytest_asyncio

from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.supervisor import Supervisor
from support.apps import produce, write_orders_app
from support.brokers import Broker
from support.ci import unavailable
from support.excel import EXCEL, RUNNING_ON_EMBEDDED, built_addin
from support.workspace import supervised_endpoint, wait_for

pytestmark = [pytest.mark.node, pytest.mark.asyncio(loop_scope="module")]

HARNESS = EXCEL / "test-live" / "harness_chromium.mjs"
GRID = "product_sum"
Matrix = list[list[Any]]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's Chromium (scripts/install_chromium.sh) and puppeteer-core in excel/."""
    path = os.environ.get("AEROGRID_CHROMIUM") or shutil.which("chromium")
    if path is None or not os.access(path, os.X_OK):
        unavailable(f"chromium is not installed ({path}): run scripts/install_chromium.sh")
    if shutil.which("node") is None:
        unavailable("node is not installed")
    if not (EXCEL / "node_modules" / "puppeteer-core").is_dir():
        unavailable("excel/node_modules is missing: run `make excel`")
    assert path is not None
    return path


@dataclass
class Workspace:
    supervisor: Supervisor
    endpoint: LocalServer
    bootstrap: str
    #: workspace key -> the app's declared name
    names: dict[str, str]
    #: workspace key -> its orders topic
    topics: dict[str, str]

    def page(self, app: str, grid: str = GRID, options: str = "interval=100", **more: str) -> str:
        """The harness page on the endpoint's own origin (so the endpoint is the default)."""
        query = urlencode({"app": app, "grid": grid, "options": options, **more})
        return f"http://127.0.0.1:{self.endpoint.port}/addin/harness.html?{query}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ws(
    tansu: Broker, chromium: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Workspace]:
    """Orders apps behind one LocalServer, one per test that changes a grid (so the tests
    do not depend on their order)."""
    bundle = built_addin()  # excel/dist/addin, built when stale: what the endpoint serves
    base = tmp_path_factory.mktemp("harness")
    tag = uuid.uuid4().hex[:8]
    files: dict[str, Path] = {}
    names: dict[str, str] = {}
    topics: dict[str, str] = {}
    for key in ("shop", "value", "restart", "other"):
        (base / key).mkdir()
        names[key] = f"{key}-{tag}"
        topics[key] = f"{key}-{tag}-orders"
        files[key] = write_orders_app(base / key, names[key], topics[key], partitions=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AEROGRID_ADDIN_DIR", str(bundle))
        async with supervised_endpoint(
            files,
            tansu.bootstrap,
            running=names,
            tls=False,  # the harness needs http only
        ) as (supervisor, endpoint):
            yield Workspace(supervisor, endpoint, tansu.bootstrap, names, topics)


def orders(
    prefix: str, rows: dict[str, tuple[int, int]]
) -> list[tuple[bytes | None, bytes | None]]:
    """`count` orders of `quantity` per product, keyed uniquely by `prefix`."""
    out: list[tuple[bytes | None, bytes | None]] = []
    for product, (count, quantity) in rows.items():
        value = json.dumps({"product": product, "quantity": quantity}).encode()
        out += [(f"{prefix}-{product}-{i}".encode(), value) for i in range(count)]
    return out


def as_text(matrix: Matrix) -> list[list[str]]:
    """What the sheet shows for a matrix of text and integers."""
    return [[str(cell) for cell in row] for row in matrix]


def live_in_group(pgid: int) -> list[int]:
    """Processes (zombies aside) still in a process group: a browser must leave none."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(stat.parent.name))
    return alive


class Harness:
    """harness_chromium.mjs as a subprocess, read line by line (progress, then the result)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, chromium: str, url: str, *args: str) -> Harness:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(HARNESS),
            url,
            "--chromium",
            chromium,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, f"the harness ended early: {await self.stderr()}"
        parsed: dict[str, Any] = json.loads(raw)
        return parsed

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        with contextlib.suppress(TimeoutError):
            return (await asyncio.wait_for(self.proc.stderr.read(), 5)).decode(errors="replace")
        return ""

    async def result(self, timeout: float) -> tuple[int, dict[str, Any]]:
        """The final JSON line and the exit code; the browser's process group must be gone."""
        out = await self.line(timeout)
        code = await asyncio.wait_for(self.proc.wait(), 15)
        if out.get("browser_pid"):
            assert live_in_group(out["browser_pid"]) == [], "chromium outlived the harness"
        return code, out

    async def close(self) -> None:
        """SIGTERM (the script closes its browser), then SIGKILL."""
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@contextlib.asynccontextmanager
async def harness(chromium: str, url: str, *args: str) -> AsyncIterator[Harness]:
    run = await Harness.start(chromium, url, *args)
    try:
        yield run
    finally:
        await run.close()


async def test_page_spills_the_exact_grid_as_orders_stream_in(ws: Workspace, chromium: str) -> None:
    """harness.html shows the exact grid (header + rows by key), then the next exact grid."""
    app, topic = ws.names["shop"], ws.topics["shop"]
    first: Matrix = [
        ["key", "units_sold", "orders"],
        ["apple", 6, 3],
        ["pear", 10, 10],
        ["tea", 35, 5],
    ]
    second: Matrix = [
        ["key", "units_sold", "orders"],
        ["apple", 6, 3],
        ["kiwi", 8, 2],
        ["pear", 10, 10],
        ["tea", 42, 6],
    ]
    await produce(
        ws.bootstrap, topic, orders("r1", {"apple": (3, 2), "pear": (10, 1), "tea": (5, 7)})
    )
    sequence = json.dumps([first, second])
    async with harness(
        chromium, ws.page(app), "--expect-sequence", sequence, "--duration", "60"
    ) as run:
        progress = await run.line(90)  # longer than --duration: the final line, if not this
        assert progress.get("event") == "matched" and progress["index"] == 0, progress
        await produce(ws.bootstrap, topic, orders("r2", {"kiwi": (2, 4), "tea": (1, 7)}))
        code, out = await run.result(90)
    assert code == 0, out
    assert out["matrix"] == second
    assert out["table"] == as_text(second)  # what the page draws, cell by cell
    assert out["state"] == "ok" and out["stale_results"] == 0
    assert out["results"] >= 2
    assert out["open_streams"] == 0  # Excel's cancel closed the shared stream
    assert out["errors"] == []


async def test_page_runs_value_and_apps_too(ws: Workspace, chromium: str) -> None:
    """function=value shows one live cell; function=apps the workspace's apps, live."""
    app, topic = ws.names["value"], ws.topics["value"]
    await produce(ws.bootstrap, topic, orders("v", {"lime": (3, 5)}))
    url = ws.page(app, function="value", row_key="lime", column="units_sold")
    async with harness(chromium, url, "--expect", "15", "--duration", "30") as run:
        code, out = await run.result(45)
    assert code == 0, out
    assert out["table"] == [["15"]]  # one cell, no header row

    listed: Matrix = [["name", "tenant", "status", "grids"]]
    listed += [[ws.names[k], "default", RUNNING_ON_EMBEDDED, GRID] for k in sorted(ws.names)]
    url = ws.page(app, function="apps")
    async with harness(chromium, url, "--expect", json.dumps(listed), "--duration", "30") as run:
        code, out = await run.result(45)
    assert code == 0, out
    assert out["table"] == listed
    assert out["open_streams"] == 0


async def test_page_shows_a_readable_error_for_an_unknown_grid(
    ws: Workspace, chromium: str
) -> None:
    """An unknown grid is one readable line in the cell (and the status bar), at once."""
    app = ws.names["shop"]
    async with harness(chromium, ws.page(app, grid="no_such_grid"), "--duration", "4") as run:
        code, out = await run.result(30)
    assert code == 0, out
    text = f"AeroGrid: not found (app '{app}' has no grid named 'no_such_grid')"
    assert out["matrix"] == [[text]]
    assert out["table"] == [[text]]
    assert out["state"] == "error"
    assert text in out["status"]
    assert out["results"] == 1  # one final error, no retry loop


async def test_page_keeps_stale_cells_across_an_app_restart_then_recovers(
    ws: Workspace, chromium: str
) -> None:
    """The app restarts while the page is subscribed: stale marker, then the exact grid again."""
    key = "restart"
    app, topic = ws.names[key], ws.topics[key]
    before: Matrix = [["key", "units_sold", "orders"], ["apple", 4, 2], ["tea", 9, 3]]
    after: Matrix = [
        ["key", "units_sold", "orders"],
        ["apple", 4, 2],
        ["fig", 5, 1],
        ["tea", 12, 4],
    ]
    await produce(ws.bootstrap, topic, orders("r1", {"apple": (2, 2), "tea": (3, 3)}))
    sequence = json.dumps([before, after])
    process = ws.supervisor.apps[key]
    async with harness(
        chromium, ws.page(app), "--expect-sequence", sequence, "--duration", "90"
    ) as run:
        progress = await run.line(120)
        assert progress.get("event") == "matched" and progress["index"] == 0, progress
        old = process.process
        ws.supervisor.restart_app(key)
        await wait_for(lambda: process.process is not old and process.status == "running", 60)
        await produce(ws.bootstrap, topic, orders("r2", {"fig": (1, 5), "tea": (1, 3)}))
        code, out = await run.result(120)
    assert code == 0, out
    assert out["matrix"] == after
    assert out["table"] == as_text(after)
    assert out["stale_results"] >= 1, "the page never showed the stale marker"
    stale = out["stale_table"]  # the sheet while the app was down: the last values, marked
    assert stale[0][0].startswith("key (stale: ") and stale[1:] == as_text(before)[1:], stale
    assert out["last_stale"].startswith("key (stale: "), out["last_stale"]
    assert out["last_stale"].endswith("; reconnecting)"), out["last_stale"]
    assert out["state"] == "ok"
    assert out["open_streams"] == 0


async def test_script_closes_chromium_when_the_page_fails_or_it_is_stopped(
    ws: Workspace, chromium: str
) -> None:
    """harness_chromium.mjs leaves no Chromium behind: a page that is not there, or SIGTERM."""
    missing = f"http://127.0.0.1:{ws.endpoint.port}/addin/no-such-page.html"
    async with harness(chromium, missing, "--duration", "20") as run:
        code, out = await run.result(30)
    assert code == 3, out
    assert "HTTP 404" in out["error"]
    assert out["browser_pid"]  # result() checked its process group is gone

    app = ws.names["shop"]
    never: Matrix = [["never"]]
    async with harness(
        chromium, ws.page(app), "--expect-sequence", json.dumps([None, never]), "--duration", "60"
    ) as run:
        await asyncio.sleep(3)  # the page runs, its stream open
        run.proc.terminate()
        code, out = await run.result(30)
    assert code == 130, out
    assert out["error"] == "stopped by SIGTERM"
    assert out["results"] >= 1  # it did show the grid before it was stopped


async def test_page_on_another_origin_reaches_the_endpoint(ws: Workspace, chromium: str) -> None:
    """A page from another local origin (the add-in's https://localhost:PORT/addin/ against
    the http endpoint, a dev server on :3000) subscribes too: CORS lets it send its headers."""
    app, topic = ws.names["other"], ws.topics["other"]
    expected: Matrix = [["key", "units_sold", "orders"], ["plum", 6, 2]]
    await produce(ws.bootstrap, topic, orders("r1", {"plum": (2, 3)}))
    # Same port, another host name: another origin, still a local one (no token needed).
    url = ws.page(app, endpoint=f"http://localhost:{ws.endpoint.port}")
    async with harness(chromium, url, "--expect", json.dumps(expected), "--duration", "6") as run:
        code, out = await run.result(30)
    assert code == 0, out
    assert out["table"] == as_text(expected)
