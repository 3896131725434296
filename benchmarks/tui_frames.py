"""TUI frames: the grid view's frame time with 10,000 rows under 1,000 cell changes/s.

The product issue asks for a grid view that stays smooth at 10,000 rows with 1,000 cell
changes per second, and for its frame time. What runs, all in this process, headless
(`App.run_test` at a fixed terminal size, 160x50 by default):

* a fake feed: a 10,000-row snapshot (price float, qty int, venue str, seq int), then
  deltas every `--batch-ms` (50 ms, the grid server's default coalescing) carrying
  `--rate` changes/s in total, each a whole row with one cell changed (uniform random
  keys and columns), paced against the clock so the offered rate is exact;
* contenders, one after another on the same feed for `--duration` seconds each:
  - `GridScreen` (aerogrid_devkit.tui.grid), sorted by key: the model applies the deltas, a
    15 Hz timer redraws the changed visible lines of its Line API `GridTable`;
  - `GridScreen` sorted by price descending: every price change moves its row;
  - the naive baseline: Textual's `DataTable` holding the rows, one `update_cell` per
    changed cell as it arrives (no sorting, no flashing).

Measured per contender over the same window:

* frame time: wall time of each compositor update (Textual's `Screen._on_timer_update`:
  layout, rendering the dirty lines of every widget, and here also encoding the update
  as terminal output, which headless mode would skip), p50/p99/max and frames/s;
* the grid view's tick (drain the model, pick the lines to redraw, title), p50/p99/max;
* event-loop lag: a ticker asks for 5 ms sleeps and records how late it wakes, which is
  what a key press would wait (all work in the loop counts: applying deltas, ticks and
  frames);
* cell changes applied per second, and the process's CPU %.

    .venv/bin/python -m benchmarks.tui_frames                    # 10,000 rows, 1,000/s, 10 s
    .venv/bin/python -m benchmarks.tui_frames --rate 5000 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import sys
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import RenderableType
from textual import work
from textual._compositor import CompositorUpdate
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable

from aerogrid.client import GridUpdate
from aerogrid_devkit.tui.grid.feed import FeedEvent, GridSchema
from aerogrid_devkit.tui.grid.model import GridModel
from aerogrid_devkit.tui.grid.screen import GridScreen
from benchmarks._common import REPO, write_result
from benchmarks._procstats import source_state

COLUMNS = ("price", "qty", "venue", "seq")
VENUES = ("XNAS", "XNYS", "BATS", "ARCX", "XLON", "XPAR", "XETR", "XAMS")


@dataclass
class Probe:
    """What one contender's run recorded."""

    frames: list[float] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    full_gcs: list[float] = field(default_factory=list)
    cells: int = 0
    recording: bool = False
    _gc_started: float = 0.0

    def reset(self) -> None:
        self.frames.clear()
        self.ticks.clear()
        self.lag.clear()
        self.full_gcs.clear()
        self.cells = 0
        self.recording = True

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        """Time full collections: they, not the view, make the slowest frames."""
        if info["generation"] != 2:
            return
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self.recording:
            self.full_gcs.append(time.perf_counter() - self._gc_started)


def summary(samples: list[float]) -> dict[str, float]:
    """Milliseconds: p50, p99, max, and the count."""
    if not samples:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
    }


class Feed:
    """A snapshot, then paced deltas once `go` is set; identical for every contender."""

    def __init__(self, rows: int, rate: int, batch_ms: int, seed: int = 5) -> None:
        self.rate = rate
        self.interval = batch_ms / 1000
        self.rng = random.Random(seed)
        self.keys = [f"pos-{i:05d}" for i in range(rows)]
        self.rows: dict[str, dict[str, Any]] = {
            key: {
                "price": round(self.rng.uniform(1, 500), 2),
                "qty": self.rng.randrange(1, 100_000),
                "venue": self.rng.choice(VENUES),
                "seq": 0,
            }
            for key in self.keys
        }
        self.go = asyncio.Event()
        self.sent = 0

    def _change(self) -> tuple[str, dict[str, Any]]:
        key = self.rng.choice(self.keys)
        row = dict(self.rows[key])
        column = self.rng.choice(COLUMNS)
        if column == "price":
            row["price"] = round(row["price"] * self.rng.uniform(0.98, 1.02) + 0.01, 2)
        elif column == "qty":
            row["qty"] += self.rng.randrange(1, 100)
        elif column == "venue":
            row["venue"] = VENUES[(VENUES.index(row["venue"]) + 1) % len(VENUES)]
        else:
            row["seq"] += 1
        self.rows[key] = row
        return key, row

    async def events(self) -> AsyncGenerator[FeedEvent, None]:
        yield GridSchema(COLUMNS)
        yield GridUpdate(1, True, {k: dict(r) for k, r in self.rows.items()}, [], "bench")
        await self.go.wait()
        started = time.perf_counter()
        seq = 1
        while True:
            due = int((time.perf_counter() - started) * self.rate) - self.sent
            upserts: dict[str, dict[str, Any]] = {}
            for _ in range(max(0, due)):
                key, row = self._change()  # two changes of one row conflate, as on the wire
                upserts[key] = row
            self.sent += max(0, due)
            if upserts:
                seq += 1
                yield GridUpdate(seq, False, upserts, [], "bench")
            next_at = started + (self.sent / self.rate) + self.interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


class BenchApp(App[None]):
    """Headless, but pays for encoding each update as terminal output like a real one."""

    def __init__(self, screen: Screen[None], probe: Probe) -> None:
        super().__init__()
        self.bench_screen = screen
        self.probe = probe

    def on_mount(self) -> None:
        self.push_screen(self.bench_screen)

    def _display(self, screen: Screen[Any], renderable: RenderableType | None) -> None:
        if isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.console)
        super()._display(screen, renderable)


class MeasuredGridScreen(GridScreen):
    """`GridScreen` with its frames and ticks timed."""

    def __init__(self, feed: Feed, probe: Probe, sort: str | None, descending: bool) -> None:
        model = GridModel(COLUMNS, measure=cell_len)
        model.sort_by(sort, descending)
        super().__init__("bench", "bench", "positions", source=feed.events, model=model)
        self.probe = probe
        self._cells_at_start = 0

    def _on_timer_update(self) -> None:
        started = time.perf_counter()
        super()._on_timer_update()
        if self.probe.recording:
            self.probe.frames.append(time.perf_counter() - started)

    def refresh_view(self) -> int:
        started = time.perf_counter()
        redrawn = super().refresh_view()
        if self.probe.recording:
            self.probe.ticks.append(time.perf_counter() - started)
            self.probe.cells = self.model.cells_total - self._cells_at_start
        else:
            self._cells_at_start = self.model.cells_total
        return redrawn


class NaiveScreen(Screen[None]):
    """The obvious way: a DataTable with every row, one `update_cell` per change."""

    def __init__(self, feed: Feed, probe: Probe) -> None:
        super().__init__()
        self.feed = feed
        self.probe = probe
        self.copy: dict[str, dict[str, Any]] = {}
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield DataTable[Any](id="naive")

    def on_mount(self) -> None:
        self._follow()

    @work(exclusive=True)
    async def _follow(self) -> None:
        table = self.query_one(DataTable)
        async with aclosing(self.feed.events()) as events:
            async for event in events:
                if isinstance(event, GridSchema):
                    for column in event.columns:
                        table.add_column(column, key=column)
                elif isinstance(event, GridUpdate) and event.snapshot:
                    for key, row in event.upserts.items():
                        table.add_row(*(row[c] for c in COLUMNS), key=key)
                    self.copy = {k: dict(r) for k, r in event.upserts.items()}
                    self.loaded = True
                elif isinstance(event, GridUpdate):
                    for key, row in event.upserts.items():
                        old = self.copy[key]
                        for column, value in row.items():
                            if old.get(column) != value:
                                table.update_cell(key, column, value)
                                self.probe.cells += self.probe.recording
                        self.copy[key] = dict(row)

    def _on_timer_update(self) -> None:
        started = time.perf_counter()
        super()._on_timer_update()
        if self.probe.recording:
            self.probe.frames.append(time.perf_counter() - started)


async def _ticker(probe: Probe, stop: asyncio.Event, period: float = 0.005) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(period)
        if probe.recording:
            probe.lag.append(max(0.0, time.perf_counter() - started - period))


async def run_contender(
    name: str,
    make: Callable[[Feed, Probe], tuple[Screen[None], Callable[[], bool]]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    feed = Feed(args.rows, args.rate, args.batch_ms)
    probe = Probe()
    screen, loaded = make(feed, probe)
    width, height = args.size
    app = BenchApp(screen, probe)
    started = time.perf_counter()
    async with app.run_test(size=(width, height)) as pilot:
        while not loaded():
            await pilot.pause(0.05)
        await pilot.pause(0.5)
        load_seconds = time.perf_counter() - started
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(probe, stop))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        probe.reset()
        gc.callbacks.append(probe.on_gc)
        feed.go.set()
        try:
            await asyncio.sleep(args.duration)
        finally:
            probe.recording = False
            gc.callbacks.remove(probe.on_gc)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        stop.set()
        await ticker
    frames = summary(probe.frames)
    result: dict[str, Any] = {
        "contender": name,
        "load_seconds": round(load_seconds, 2),
        "seconds": round(wall, 2),
        "frame": frames,
        "frames_per_second": round(frames["count"] / wall, 1),
        "render_ms_per_second": round(sum(probe.frames) * 1000 / wall, 1),
        "tick": summary(probe.ticks),
        "loop_lag": summary(probe.lag),
        "changes_offered_per_second": round(feed.sent / wall, 1),
        "changes_applied_per_second": round(probe.cells / wall, 1),
        "cpu_percent": round(100 * cpu / wall, 1),
        "full_gc": summary(probe.full_gcs),
    }
    print(
        f"{name:>24}: frame p50 {frames['p50_ms']:.2f} ms, p99 {frames['p99_ms']:.2f} ms, "
        f"max {frames['max_ms']:.2f} ms, {result['frames_per_second']} frames/s; "
        f"loop lag p99 {result['loop_lag']['p99_ms']:.2f} ms; "
        f"{result['changes_applied_per_second']:,.0f} changes/s applied; "
        f"CPU {result['cpu_percent']}%; {len(probe.full_gcs)} full GCs, "
        f"longest {result['full_gc']['max_ms']:.1f} ms",
        flush=True,
    )
    return result


def grid_screen(sort: str | None, descending: bool) -> Callable[..., Any]:
    def make(feed: Feed, probe: Probe) -> tuple[Screen[None], Callable[[], bool]]:
        screen = MeasuredGridScreen(feed, probe, sort, descending)
        model: GridModel = screen.model
        return screen, lambda: len(model) == len(feed.keys)

    return make


def naive_screen(feed: Feed, probe: Probe) -> tuple[Screen[None], Callable[[], bool]]:
    screen = NaiveScreen(feed, probe)
    return screen, lambda: screen.loaded


def _size(text: str) -> tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=1_000, help="cell changes per second")
    parser.add_argument("--batch-ms", type=int, default=50, help="time between deltas")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per contender")
    parser.add_argument("--size", type=_size, default=(160, 50), help="terminal, WxH")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--out", default="tui_frames")
    args = parser.parse_args(argv)

    contenders: list[tuple[str, Callable[..., Any]]] = [
        ("GridTable, by key", grid_screen(None, False)),
        ("GridTable, by price desc", grid_screen("price", True)),
    ]
    if not args.skip_baseline:
        contenders.append(("DataTable, update_cell", naive_screen))
    print(
        f"{args.rows:,} rows, {args.rate:,} cell changes/s in deltas every {args.batch_ms} ms, "
        f"{args.size[0]}x{args.size[1]}, {args.duration:g} s each",
        flush=True,
    )
    results = [asyncio.run(run_contender(name, make, args)) for name, make in contenders]
    ratios: dict[str, float] = {}
    if not args.skip_baseline:
        ours, naive = results[0], results[-1]

        def ratio(a: float, b: float) -> float:
            return round(a / b, 1) if b else 0.0

        ratios = {
            "frame_p99_naive_over_gridtable": ratio(
                naive["frame"]["p99_ms"], ours["frame"]["p99_ms"]
            ),
            "frame_p50_naive_over_gridtable": ratio(
                naive["frame"]["p50_ms"], ours["frame"]["p50_ms"]
            ),
            "render_time_naive_over_gridtable": ratio(
                naive["render_ms_per_second"], ours["render_ms_per_second"]
            ),
            "loop_lag_p99_naive_over_gridtable": ratio(
                naive["loop_lag"]["p99_ms"], ours["loop_lag"]["p99_ms"]
            ),
            "cpu_naive_over_gridtable": ratio(naive["cpu_percent"], ours["cpu_percent"]),
        }
        print("naive / GridTable: " + ", ".join(f"{k} {v}×" for k, v in ratios.items()))
    path = write_result(
        args.out,
        {
            "benchmark": "tui_frames",
            "source": source_state(),
            "command": " ".join(["python -m benchmarks.tui_frames", *(argv or sys.argv[1:])]),
            "config": {
                "rows": args.rows,
                "rate": args.rate,
                "batch_ms": args.batch_ms,
                "duration": args.duration,
                "size": f"{args.size[0]}x{args.size[1]}",
                "refresh_hz": 15,
            },
            "results": results,
            "ratios": ratios,
        },
    )
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
