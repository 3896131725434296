"""The grid view marks a grid stale while its app says so, and unmarks it when it recovers.

The screen is fed from an in-process source of `GridUpdate`s (what `GridClient` yields
when the server's heartbeats carry `Stale`; see tests/runtime/unit/test_stale.py for that part),
and read in Textual's pilot: the title bar says "stale" and why, and the rows stay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable

from rich.cells import cell_len
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Static

from aerogrid.client import GridUpdate
from aerogrid_devkit.tui.grid.feed import ConnectionState, FeedEvent, GridSchema
from aerogrid_devkit.tui.grid.model import GridModel
from aerogrid_devkit.tui.grid.screen import GridScreen

REASON = "broker localhost:9092 unreachable since 10:42:05"


class Host(App[None]):
    def __init__(self, screen: GridScreen) -> None:
        super().__init__()
        self.grid_screen = screen

    def compose(self) -> ComposeResult:
        yield Static("host")

    def on_mount(self) -> None:
        self.push_screen(self.grid_screen)


def beat(seq: int, stale: str | None) -> GridUpdate:
    return GridUpdate(seq, False, {}, [], "e", heartbeat=True, stale_reason=stale)


def test_the_model_keeps_the_latest_word_even_while_paused() -> None:
    model = GridModel(["n"])
    model.apply(GridUpdate(1, True, {"a": {"n": 1}}, [], "e"))
    assert model.stale is None
    model.pause()
    model.apply(beat(1, REASON))
    assert model.stale == REASON
    model.apply(GridUpdate(2, False, {"a": {"n": 2}}, [], "e", stale_reason=REASON))
    model.resume()
    assert model.stale == REASON and dict(model.rows) == {"a": {"n": 2}}
    model.apply(beat(2, None))
    assert model.stale is None


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def test_the_title_says_stale_and_why_then_live_again() -> None:
    go = [asyncio.Event(), asyncio.Event()]

    async def source() -> AsyncGenerator[FeedEvent, None]:
        yield GridSchema(("n",))
        yield GridUpdate(1, True, {"a": {"n": 1}}, [], "e")
        await go[0].wait()
        yield beat(1, REASON)
        await go[1].wait()
        yield beat(1, None)
        await asyncio.Event().wait()

    screen = GridScreen(
        "test:1", "ordersapp", "prices", source=source, model=GridModel(measure=cell_len)
    )

    def title() -> str:
        return str(screen.title_bar.render())

    async with Host(screen).run_test(size=(120, 10)) as pilot:
        await until(pilot, lambda: "● live" in title())
        go[0].set()
        await until(pilot, lambda: f"⚠ stale: {REASON}" in title())
        assert "● live" not in title()
        assert screen.displayed_rows() == [["a", "1"]]  # the last values stay on screen
        go[1].set()
        await until(pilot, lambda: "● live" in title())
        assert "stale" not in title()
        assert screen.state == ConnectionState("live")
