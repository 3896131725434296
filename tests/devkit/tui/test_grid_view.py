"""The TUI's live grid view: the model on its own, then the screen in Textual's pilot.

* `GridModel`: applying snapshots and deltas, sort (numeric-aware, incremental), filter,
  changed-cell tracking and flashes, pause; checked against a brute-force oracle too.
* `GridScreen` against a real `aerogrid run` app on the embedded broker: the rows shown are
  exactly the grid, they follow new orders, sort and filter by key presses, survive an app
  restart; an unknown grid or a dead endpoint reads as an error and `escape` still leaves.
* Snapshots (pytest-textual-snapshot) of the screen fed from a fixed in-process source,
  with a frozen clock so flashes and the updates/s figure are the same on every run.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Input, Static

from aerogrid.client import GridUpdate
from aerogrid_devkit.tui.grid.cells import format_cell, sort_value
from aerogrid_devkit.tui.grid.feed import ConnectionState, FeedEvent, GridSchema
from aerogrid_devkit.tui.grid.model import GridModel
from aerogrid_devkit.tui.grid.screen import GridScreen
from aerogrid_devkit.tui.grid.table import GridTable
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker, free_port

SnapCompare = Callable[..., bool]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def snapshot(rows: dict[str, dict[str, Any]], seq: int = 1) -> GridUpdate:
    return GridUpdate(seq, True, rows, [], "epoch")


def delta(
    upserts: dict[str, dict[str, Any]], deletes: list[str] | None = None, seq: int = 2
) -> GridUpdate:
    return GridUpdate(seq, False, upserts, deletes or [], "epoch")


def keys(model: GridModel) -> list[str]:
    return model.visible_keys()


# -- GridModel --------------------------------------------------------------------------


def test_applies_snapshots_and_deltas() -> None:
    model = GridModel(["price", "qty"])
    assert (
        model.apply(snapshot({"a": {"price": 1.5, "qty": 2}, "b": {"price": 2.0, "qty": 1}})) == 0
    )
    assert keys(model) == ["a", "b"]
    assert model.text("a") == ("1.5", "2")
    changed = model.apply(
        delta({"a": {"price": 1.5, "qty": 3}, "c": {"price": None, "qty": 0}}, ["b"])
    )
    assert changed == 1 + 2  # a's qty, and both cells of the new row c
    assert keys(model) == ["a", "c"]
    assert dict(model.rows) == {"a": {"price": 1.5, "qty": 3}, "c": {"price": None, "qty": 0}}
    assert model.updates_total == 3 and model.cells_total == 3
    # a new snapshot replaces everything
    model.apply(snapshot({"z": {"price": 9, "qty": 9}}, seq=3))
    assert keys(model) == ["z"] and len(model) == 1
    # deleting what is not there is no error
    model.apply(delta({}, ["nope"]))
    assert len(model) == 1


def test_tracks_changed_cells_and_flashes_them_for_a_second() -> None:
    clock = Clock()
    model = GridModel(["price", "qty"], clock=clock)
    model.apply(snapshot({"a": {"price": 1, "qty": 1}, "b": {"price": 2, "qty": 2}}))
    first = model.drain()
    assert first.layout and first.cells == 0  # a first load lights nothing
    assert not model.flashing("a")

    clock.now = 101.0
    model.apply(delta({"a": {"price": 5, "qty": 1}}))
    model.apply(delta({"b": {"price": 2, "qty": 2}}))  # same values: not a change
    changes = model.drain()
    assert changes.rows == {"a"} and changes.cells == 1 and not changes.layout
    assert model.flash_level("a", 0, 101.0) == 1.0
    assert model.flash_level("a", 0, 101.5) == pytest.approx(0.5)
    assert model.flash_level("a", 1, 101.0) == 0.0  # qty did not change
    assert not model.flashing("b")

    clock.now = 101.4
    assert not model.drain()  # nothing new, the flash is still on
    assert model.flashing("a")
    clock.now = 102.1
    expired = model.drain()
    assert not model.flashing("a")
    assert expired.rows == {"a"}  # drawn once more, unlit
    # a re-snapshot (after a reconnect) lights only what differs
    clock.now = 103.0
    model.apply(snapshot({"a": {"price": 5, "qty": 1}, "b": {"price": 7, "qty": 2}}, seq=9))
    assert model.drain().cells == 1
    assert model.flash_level("b", 0, 103.0) == 1.0 and not model.flash_level("a", 0, 103.0)


def test_sorts_by_key_or_any_column_numbers_as_numbers() -> None:
    model = GridModel(["price", "venue"])
    model.apply(
        snapshot(
            {
                "item-10": {"price": 9.5, "venue": "b"},
                "item-9": {"price": 10, "venue": "A"},
                "item-1": {"price": None, "venue": "c"},
                "Item-2": {"price": Decimal("2.25"), "venue": "a"},
            }
        )
    )
    assert keys(model) == ["item-1", "Item-2", "item-9", "item-10"]  # natural, case-blind
    model.sort_by("price")
    assert keys(model) == ["Item-2", "item-10", "item-9", "item-1"]  # None last
    model.sort_by("price", descending=True)
    assert keys(model) == ["item-1", "item-9", "item-10", "Item-2"]
    model.sort_by("venue")
    assert keys(model) == ["Item-2", "item-9", "item-10", "item-1"]  # a, A (tie: key), b, c
    with pytest.raises(KeyError):
        model.sort_by("nope")
    # s cycles key → each column → key, ascending; S flips
    model.sort_by(None)
    assert model.cycle_sort() == "price" and not model.descending
    assert model.cycle_sort() == "venue"
    assert model.cycle_sort() is None
    model.reverse_sort()
    assert keys(model) == ["item-10", "item-9", "Item-2", "item-1"]


def test_sort_values_order_every_cell_type() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    values: list[Any] = ["b10", None, 3, "b9", when, 2.5, float("nan"), True, Decimal("-1")]
    ordered = sorted(values, key=sort_value)
    assert ordered[:4] == [Decimal("-1"), True, 2.5, 3]
    assert ordered[4:7] == [when, "b9", "b10"]
    assert format_cell(True) == "true" and format_cell(None) == "" and format_cell(0.1) == "0.1"
    assert format_cell("two\nlines") == "two lines"


def test_filters_case_blind_by_word_and_by_column() -> None:
    model = GridModel(["product", "units"])
    model.apply(
        snapshot(
            {
                "o1": {"product": "Green Tea", "units": 12},
                "o2": {"product": "coffee", "units": 3},
                "o3": {"product": "black tea", "units": 120},
                "tea-o4": {"product": "water", "units": 1},
            }
        )
    )
    model.set_filter("TEA")
    assert keys(model) == ["o1", "o3", "tea-o4"]  # the key counts too
    model.set_filter("product:tea")
    assert keys(model) == ["o1", "o3"]
    model.set_filter("key:tea")
    assert keys(model) == ["tea-o4"]
    model.set_filter("tea units:12")
    assert keys(model) == ["o1", "o3"]  # 12 and 120; every word must match
    model.set_filter("nowhere:tea")  # not a column: the whole word is searched for
    assert keys(model) == []
    # rows move in and out of the filter as they change
    model.set_filter("tea")
    model.apply(
        delta({"o2": {"product": "iced tea", "units": 3}, "o1": {"product": "x", "units": 0}})
    )
    assert keys(model) == ["o2", "o3", "tea-o4"]
    model.set_filter("")
    assert len(keys(model)) == 4


def test_incremental_order_matches_a_full_sort() -> None:
    """Random updates, deletes, sorts and filters: the kept order equals a fresh sort."""
    rng = random.Random(7)
    model = GridModel(["price", "venue"])
    model.apply(
        snapshot(
            {
                f"k{i}": {
                    "price": rng.choice([None, rng.random(), rng.randrange(50)]),
                    "venue": "x",
                }
                for i in range(300)
            }
        )
    )
    for step in range(60):
        if step % 10 == 0:
            model.sort_by(rng.choice([None, "price", "venue"]), descending=rng.random() < 0.5)
            model.set_filter(rng.choice(["", "1", "venue:y", "k2"]))
        upserts = {
            f"k{rng.randrange(400)}": {
                "price": rng.choice([None, rng.random(), rng.randrange(50)]),
                "venue": rng.choice("xyz"),
            }
            for _ in range(20)
        }
        model.apply(delta(upserts, [f"k{rng.randrange(400)}" for _ in range(3)]))
        kept = keys(model)
        order = list(kept)
        fresh = GridModel(["price", "venue"])
        fresh.apply(snapshot({key: dict(row) for key, row in model.rows.items()}))
        fresh.sort_by(model.sort_column, model.descending)
        fresh.set_filter(model.filter_text)
        assert order == keys(fresh)
        assert [model.visible_index(k) for k in kept] == list(range(len(kept)))
        assert model.visible_keys(5, 9) == kept[5:9]


def test_pause_holds_updates_and_resume_applies_the_latest() -> None:
    model = GridModel(["n"])
    model.apply(snapshot({"a": {"n": 1}, "b": {"n": 1}}))
    model.pause()
    model.apply(delta({"a": {"n": 2}}))
    model.apply(delta({"a": {"n": 3}, "c": {"n": 1}}, ["b"]))
    assert model.row("a") == {"n": 1} and "c" not in model  # frozen
    assert model.held_updates == 4 and model.updates_total == 4  # but counted
    model.resume()
    assert dict(model.rows) == {"a": {"n": 3}, "c": {"n": 1}}
    assert model.held_updates == 0 and not model.paused


def test_learns_columns_from_rows_and_counts_a_rate() -> None:
    clock = Clock(50.0)
    model = GridModel(clock=clock)
    model.apply(snapshot({"a": {"x": 1}}))
    assert model.columns == ("x",)
    model.apply(delta({"b": {"x": 2, "y": "new"}}))
    assert list(model.columns) == ["x", "y"]
    assert model.text("a") == ("1", "")
    model.apply(delta({f"r{i}": {"x": i} for i in range(20)}))
    assert model.rate() == 21.0
    clock.now = 51.5
    assert model.rate() == 0.0


# -- the screen, in the pilot -----------------------------------------------------------


class Host(App[None]):
    """A stand-in for the devkit's app: it pushes the grid screen over its own."""

    def __init__(self, screen: GridScreen) -> None:
        super().__init__()
        self.grid_screen = screen

    def compose(self) -> ComposeResult:
        yield Static("host", id="host")

    def on_mount(self) -> None:
        self.push_screen(self.grid_screen)


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


def rendered(screen: GridScreen) -> list[list[str]]:
    """The table's lines as painted (header excluded), split into cells."""
    table = screen.query_one(GridTable)
    lines = [table.render_line(y).text.split() for y in range(1, table.size.height)]
    return [line for line in lines if line]


def order(key: str, product: str, quantity: int) -> tuple[bytes, bytes]:
    return key.encode(), json.dumps({"product": product, "quantity": quantity}).encode()


def expected(orders: list[tuple[bytes, bytes]]) -> dict[str, list[str]]:
    sums: dict[str, list[int]] = {}
    for _, value in orders:
        record = json.loads(value)
        row = sums.setdefault(record["product"], [0, 0])
        row[0] += record["quantity"]
        row[1] += 1
    return {product: [product, str(units), str(n)] for product, (units, n) in sums.items()}


async def test_shows_a_live_grid_sorts_and_filters(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    products = ["tea", "coffee", "water", "p2", "p10", "juice"]
    rng = random.Random(3)
    orders = [order(f"o{i}", rng.choice(products), rng.randint(1, 9)) for i in range(120)]
    with RunningApp(path, tansu.bootstrap) as running:
        await produce(tansu.bootstrap, topic, orders)
        # flashes last long enough here that a slow machine still sees them
        model = GridModel(flash_seconds=60, measure=cell_len)
        screen = GridScreen(running.target, unique_name, "product_sum", model=model)
        host = Host(screen)
        async with host.run_test(size=(100, 20)) as pilot:
            want = expected(orders)
            await until(pilot, lambda: sorted(screen.displayed_rows()) == sorted(want.values()))
            await until(pilot, lambda: rendered(screen) == screen.displayed_rows())
            # sorted by key, naturally: p2 before p10
            assert [row[0] for row in rendered(screen)] == [
                "coffee", "juice", "p2", "p10", "tea", "water",
            ]  # fmt: skip
            assert screen.state.phase == "live"
            title = str(screen.query_one("#grid-title", Static).render())
            assert f"{unique_name} / product_sum" in title and "6 rows" in title

            # a new order changes one row live, and its cells flash
            await produce(tansu.bootstrap, topic, [order("o-new", "tea", 1000)])
            units = str(int(want["tea"][1]) + 1000)
            await until(
                pilot, lambda: ["tea", units, str(int(want["tea"][2]) + 1)] in rendered(screen)
            )
            now = screen.model.clock()
            assert screen.model.flash_level("tea", 0, now) > 0

            # s: by units_sold ascending; S: descending (tea has the most now)
            await pilot.press("s")
            await pilot.pause()
            shown = rendered(screen)
            assert [int(r[1]) for r in shown] == sorted(int(r[1]) for r in shown)
            await pilot.press("S")
            await pilot.pause()
            assert rendered(screen)[0][0] == "tea"
            header = screen.query_one(GridTable).render_line(0).text
            assert "units_sold ▼" in header

            # /: type to filter live; escape clears it and keeps the screen
            await pilot.press("slash", "p")
            assert screen.query_one("#grid-filter", Input).has_focus
            assert {r[0] for r in rendered(screen)} == {"p2", "p10"}  # still by units, down
            await pilot.press("1", "0")
            assert [r[0] for r in rendered(screen)] == ["p10"]
            await pilot.press("enter")  # keep the filter, back to the table
            assert screen.query_one(GridTable).has_focus and screen.model.filter_text == "p10"
            await pilot.press("escape")
            assert len(rendered(screen)) == 6 and host.screen is screen
            # p: paused rows stay put while updates keep being counted
            await pilot.press("p")
            assert screen.model.paused
            await produce(tansu.bootstrap, topic, [order("o-paused", "water", 5)])
            await until(pilot, lambda: screen.model.held_updates >= 1)
            assert want["water"] in rendered(screen)
            await pilot.press("p")
            await until(
                pilot,
                lambda: (
                    ["water", str(int(want["water"][1]) + 5)] in [r[:2] for r in rendered(screen)]
                ),
            )
            # escape (no filter): back to the host's screen, and the subscription ends
            await pilot.press("escape")
            assert host.screen is not screen
            assert host.screen.query_one("#host", Static)
            await until(pilot, lambda: not [w for w in host.workers if w.node is screen])


async def test_follows_the_app_through_a_restart(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    ports = ("--port", str(free_port()), "--http-port", str(free_port()))
    app = RunningApp(path, tansu.bootstrap, extra_args=ports).start()
    try:
        await produce(tansu.bootstrap, topic, [order("o1", "tea", 2)])
        screen = GridScreen(app.target, unique_name, "product_sum")
        async with Host(screen).run_test(size=(100, 20)) as pilot:
            await until(pilot, lambda: rendered(screen) == [["tea", "2", "1"]])
            app.stop()
            await until(pilot, lambda: screen.state.phase == "reconnecting")
            title = str(screen.query_one("#grid-title", Static).render())
            assert "reconnecting" in title
            assert rendered(screen) == [["tea", "2", "1"]]  # the last rows stay on screen
            app.start()
            await produce(tansu.bootstrap, topic, [order("o2", "tea", 3)])
            await until(pilot, lambda: rendered(screen) == [["tea", "5", "2"]], timeout=60)
            assert screen.state.phase == "live"
    finally:
        app.stop()


async def test_an_unknown_grid_or_app_is_an_error_and_escape_still_works(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    with RunningApp(path, tansu.bootstrap) as running:
        await shows_error_then_leaves(
            GridScreen(running.target, unique_name, "nope"),
            f"app '{unique_name}' has no grid named 'nope'",
        )
        await shows_error_then_leaves(
            GridScreen(running.target, "noapp", "product_sum"),
            "NOT_FOUND: no app named 'noapp' here",
        )


async def shows_error_then_leaves(screen: GridScreen, error: str) -> None:
    host = Host(screen)
    async with host.run_test(size=(100, 20)) as pilot:
        await until(pilot, lambda: screen.state.phase == "error")
        assert screen.state.detail == error
        message = screen.query_one("#grid-message", Static)
        assert message.display and error in str(message.render())
        assert "error" in str(screen.query_one("#grid-title", Static).render())
        await pilot.press("s", "p", "slash", "x", "escape")  # harmless on an empty grid
        await pilot.press("escape")
        assert host.screen is not screen


async def test_a_dead_endpoint_reads_as_retrying_and_escape_still_works() -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    screen = GridScreen(endpoint, "ordersapp", "product_sum")
    host = Host(screen)
    async with host.run_test(size=(100, 20)) as pilot:
        await until(pilot, lambda: screen.state.phase == "reconnecting")
        message = str(screen.query_one("#grid-message", Static).render())
        assert f"cannot reach {endpoint}" in message and "retrying in" in message
        await pilot.press("q")
        assert host.screen is not screen


async def idle_source() -> AsyncGenerator[FeedEvent, None]:
    yield ConnectionState("live")
    await asyncio.Event().wait()


async def test_redraws_only_lines_whose_content_changed() -> None:
    """The work per tick is bounded by the screen, not by the grid or its update rate."""
    clock = Clock()
    model = GridModel(["n"], clock=clock, measure=cell_len)
    model.apply(snapshot({f"r{i:03d}": {"n": i} for i in range(500)}))
    # a timer far slower than the test: the test calls sync() itself
    screen = GridScreen("test:1", "a", "g", source=idle_source, model=model, refresh_rate=0.01)
    async with Host(screen).run_test(size=(60, 14)) as pilot:
        table = screen.query_one(GridTable)
        lines = table.size.height

        async def sync() -> int:
            redrawn = table.sync()
            await pilot.pause(0.05)  # let the compositor paint what was asked
            return redrawn

        await sync()
        assert await sync() == 0
        model.apply(delta({"r400": {"n": -1}}))  # a row far below the window
        assert await sync() == 0
        model.apply(delta({"r002": {"n": 99}}))  # a visible row: its line only
        assert await sync() == 1
        assert await sync() == 1  # still flashing
        clock.now += 2
        assert await sync() == 1  # drawn once more, unlit
        assert await sync() == 0
        model.sort_by("n", descending=True)  # a new header: everything
        assert await sync() == lines
        model.apply(delta({"r100": {"n": 50}}))  # moves, but far from the window
        assert await sync() == 0
        model.apply(delta({"r498": {"n": 600}}))  # swaps places with r499 at the top
        assert await sync() == 2
        assert rendered(screen)[:3] == [["r498", "600"], ["r499", "499"], ["r497", "497"]]
        model.apply(delta({"r497": {"n": 1000}}))  # a wider number: new widths, everything
        assert await sync() == lines


async def test_the_key_column_stays_while_cells_scroll_sideways() -> None:
    screen = fixed_screen()
    async with Host(screen).run_test(size=(40, 12)) as pilot:
        await until(pilot, lambda: "zucchini-0" in screen.model)
        await pilot.pause()
        table = screen.query_one(GridTable)
        assert "price" in table.render_line(0).text and "active" not in table.render_line(0).text
        await pilot.press(*["right"] * 30)
        await pilot.pause()
        assert table.scroll_x == table.max_scroll_x > 0
        header = table.render_line(0).text
        assert header.startswith(" key ▲") and "active" in header and "price" not in header
        assert rendered(screen)[0][0] == "apple-0" and rendered(screen)[0][-1] == "false"


# -- snapshots --------------------------------------------------------------------------

PRODUCTS = ["apple", "banana", "cherry", "date", "elderberry", "fig", "grape", "kiwi"]
VENUES = ["XNAS", "XLON", "XPAR", "XETR"]


def fixed_source(clock: Clock, *, end: str = "") -> Callable[[], AsyncGenerator[FeedEvent, None]]:
    """A snapshot of 24 rows, then changes at known times; the clock stops at 100.0."""

    async def source() -> AsyncGenerator[FeedEvent, None]:
        yield ConnectionState("connecting", "connecting to test…")
        yield GridSchema(("price", "qty", "venue", "active"))
        rows = {
            f"{product}-{n}": {
                "price": round(1.5 + i * 3.25 + n * 0.5, 2),
                "qty": (i * 37 + n * 11) % 100,
                "venue": VENUES[(i + n) % len(VENUES)],
                "active": (i + n) % 3 != 0,
            }
            for i, product in enumerate(PRODUCTS)
            for n in range(3)
        }
        clock.now = 99.0
        yield snapshot(rows)
        clock.now = 99.5  # half faded by 100.0
        yield delta({"banana-1": {**rows["banana-1"], "price": 42.0}})
        clock.now = 100.0  # fully lit
        yield delta({"cherry-0": {**rows["cherry-0"], "qty": 7, "venue": "XNYS"}}, ["date-2"])
        yield delta({"zucchini-0": {"price": None, "qty": 1, "venue": "XNAS", "active": False}})
        if end:
            yield ConnectionState("error", end)
            return
        await asyncio.Event().wait()

    return source


def fixed_screen(*, end: str = "") -> GridScreen:
    clock = Clock()
    model = GridModel(clock=clock, measure=cell_len)
    return GridScreen(
        "test:1", "ordersapp", "prices", source=fixed_source(clock, end=end), model=model
    )


def settle(screen: GridScreen, *keys: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    async def run_before(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: "zucchini-0" in screen.model)
        if keys:
            await pilot.press(*keys)
        screen.refresh_view()
        await pilot.pause()

    return run_before


def test_snapshot_live_grid_with_flashes(snap_compare: SnapCompare) -> None:
    screen = fixed_screen()
    assert snap_compare(Host(screen), terminal_size=(90, 30), run_before=settle(screen))


def test_snapshot_sorted_descending_and_filtered(snap_compare: SnapCompare) -> None:
    screen = fixed_screen()
    keys_pressed = ("s", "S", "slash", *"xnas", "enter")
    assert snap_compare(
        Host(screen), terminal_size=(90, 20), run_before=settle(screen, *keys_pressed)
    )


def test_snapshot_paused(snap_compare: SnapCompare) -> None:
    screen = fixed_screen()
    assert snap_compare(Host(screen), terminal_size=(90, 12), run_before=settle(screen, "p"))


def test_snapshot_error(snap_compare: SnapCompare) -> None:
    screen = GridScreen(
        "test:1",
        "ordersapp",
        "nope",
        source=lambda: error_source("app 'ordersapp' has no grid named 'nope'"),
        model=GridModel(measure=cell_len),
    )

    async def run_before(pilot: Pilot[None]) -> None:
        await until(pilot, lambda: screen.state.phase == "error")
        await pilot.pause()

    assert snap_compare(Host(screen), terminal_size=(90, 12), run_before=run_before)


async def error_source(detail: str) -> AsyncGenerator[FeedEvent, None]:
    yield ConnectionState("connecting", "connecting to test…")
    yield ConnectionState("error", detail)
