"""The apps view of an app with several replicas: each one's id, pid, status, role and lag,
and `K` (after a yes) SIGKILLs the active one, the failover demo.

The loop is a fake (tests/support/tui_fakes.py) whose replicas carry the roles the
supervisor reads from each replica's `GET /replica`; the active replica is a real
process in its own session, so the kill is a real SIGKILL. Reading roles from real
replicas is tested in tests/devkit/test_replicas.py.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import DataTable, Static

from aerogrid_devkit.supervisor import AppProcess
from aerogrid_devkit.tui.app import AeroGridApp
from aerogrid_devkit.tui.apps.screen import AppsScreen
from aerogrid_devkit.tui.screens.confirm import ConfirmScreen
from support.tui_fakes import FakeBroker, FakeLoop

SIZE = (120, 40)


@pytest.fixture
async def shop() -> AsyncIterator[AppProcess]:
    """`shop` with three replicas: an active (a real process), a standby, one starting."""
    app = AppProcess("shop", Path("/work/apps/shop/app.py"), replicas=3)
    active, standby, starting = app.replicas
    active.process = await asyncio.create_subprocess_exec("sleep", "120", start_new_session=True)
    active.status, active.role, active.lag = "running", "active", 0
    standby.status, standby.role, standby.lag = "running", "standby", 7
    starting.status = "starting"
    try:
        yield app
    finally:
        if active.process.returncode is None:
            active.process.kill()
        await active.process.wait()


def shown(widget: Static) -> str:
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def line_of(text: str, replica: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if line.split()[:1] == [replica]]
    return line.split()


async def test_apps_view_lists_replicas_with_roles_and_kills_the_active(
    shop: AppProcess,
) -> None:
    tui = AeroGridApp(FakeLoop([shop]), broker=FakeBroker())
    active = shop.replicas[0]
    assert active.process is not None
    pid = active.process.pid
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(tui.screen, AppsScreen)
        panel = tui.screen.query_one(".app-replicas", Static)
        assert panel.display
        text = shown(panel)
        assert line_of(text, "shop-1") == ["shop-1", str(pid), "●", "running", "active", "0", "0"]
        assert line_of(text, "shop-2")[3:6] == ["running", "standby", "7"]
        assert line_of(text, "shop-3") == ["shop-3", "–", "●", "starting", "?", "–", "0"]
        assert "2/3 replicas" in str(tui.screen.query_one(DataTable).get_cell("shop", "info"))

        # K asks first: no leaves it running
        await pilot.press("K")
        await pilot.pause()
        assert isinstance(tui.screen, ConfirmScreen)
        await pilot.press("n")
        await pilot.pause()
        assert active.process.returncode is None

        # ... yes sends SIGKILL to the active replica's process
        await pilot.press("K")
        await pilot.pause()
        await pilot.press("y")
        assert await asyncio.wait_for(active.process.wait(), 10) == -signal.SIGKILL


async def test_a_single_replica_app_shows_no_replica_panel() -> None:
    app = AppProcess("solo", Path("/work/apps/solo/app.py"))
    app.replicas[0].status = "running"
    tui = AeroGridApp(FakeLoop([app]), broker=FakeBroker())
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert not tui.screen.query_one(".app-replicas", Static).display
        await pilot.press("K")  # no active replica known: a warning, nothing killed
        await pilot.pause()
        assert not isinstance(tui.screen, ConfirmScreen)
