"""The live grid view: `GridScreen` shows one grid of one app, `GridTable` draws it.

How it stays smooth at 10,000 rows and 1,000 cell changes a second: the rows live in a
`GridModel` outside the widget, which the subscription worker feeds as updates arrive,
never touching the widget. A timer (15 Hz by default) drains the model's changes and asks
the widget to redraw only the visible lines they touched, plus those still fading from a
flash. `GridTable` is a Line API widget (a `ScrollView` with `render_line`): it renders
nothing but the lines on screen, straight from the model, so its cost per frame depends on
the terminal's height, not on the grid's size or its update rate. A `DataTable` would hold
a second copy of every row, and each `update_cell` invalidates its whole line cache and
repaints every visible line (see `benchmarks/tui_frames.py` for the difference).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import ClassVar

import grpc
from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import getters, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.content import Content
from textual.geometry import Region, Size
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Input, Label, Static

from aerogrid.backoff import Backoff
from aerogrid.client import GridClient, GridClientError
from aerogrid_devkit.tui.grid_model import (
    KEY_COLUMN,
    ConnectionState,
    FeedEvent,
    GridModel,
    GridSchema,
    is_numeric,
)

__all__ = ["GridScreen", "GridSource", "GridTable", "grid_feed"]

#: A feed of one grid: its schema, its updates and its connection state, as events.
GridSource = Callable[[], AsyncGenerator[FeedEvent, None]]

#: Failures worth retrying: the endpoint is down or restarting, the network blinked, or the
#: server dropped this stream for falling behind.
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

#: A flash fades in this many steps: enough to read as a fade, few enough to cache.
_FLASH_STEPS = 4

#: A line never painted (so any row on it must be drawn).
_UNPAINTED = "\0unpainted"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(exc: GridClientError, endpoint: str) -> str:
    if exc.code == grpc.StatusCode.UNAVAILABLE:
        return f"cannot reach {endpoint} ({_one_line(exc.message, 120)})"
    return f"{exc.code.name}: {_one_line(exc.message)}"


async def grid_feed(
    endpoint: str,
    app: str,
    grid: str,
    *,
    token: str | None = None,
    retry_delay: float = 0.5,
    max_retry_delay: float = 5.0,
) -> AsyncGenerator[FeedEvent, None]:
    """Follow one grid over gRPC, saying what state the connection is in.

    `GridClient.subscribe` can resume on its own, but silently; this loop resumes the
    same way (from the last epoch and sequence) so the screen can show "reconnecting…"
    and why. The grid's columns come from the catalog first, so an unknown app or grid
    is a clear error and an empty grid still has its header. Retries back off from
    `retry_delay` to `max_retry_delay`, jittered, and start over once the feed is live.
    """
    epoch, seq = "", 0
    columns: tuple[str, ...] | None = None
    backoff = Backoff(initial=retry_delay, maximum=max_retry_delay)
    async with GridClient(endpoint, token) as client:
        yield ConnectionState("connecting", f"connecting to {endpoint}…")
        while True:
            try:
                if columns is None:
                    found = [g for g in await client.grids(app) if g.name == grid]
                    if not found:
                        yield ConnectionState("error", f"app {app!r} has no grid named {grid!r}")
                        return
                    columns = tuple(found[0].columns)
                    yield GridSchema(columns)
                live = False
                async for update in client.subscribe(
                    app, grid, resume_epoch=epoch, resume_seq=seq, reconnect=False
                ):
                    if not live:
                        live = True
                        backoff.reset()
                        yield ConnectionState("live")
                    epoch, seq = update.epoch, update.seq
                    yield update
                detail = "the server ended the stream"
            except GridClientError as exc:
                if exc.code not in _RETRYABLE:
                    yield ConnectionState("error", _describe(exc, endpoint))
                    return
                detail = _describe(exc, endpoint)
            delay = backoff.next_delay()
            yield ConnectionState("reconnecting", f"{detail}; retrying in {delay:.1f}s")
            await asyncio.sleep(delay)


def _fit(text: str, width: int, right: bool) -> str:
    """Pad or cut `text` to exactly `width` cells (cut text ends with an ellipsis)."""
    if text.isascii():
        if len(text) > width:
            return text[: width - 1] + "…" if width > 0 else ""
        return text.rjust(width) if right else text.ljust(width)
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - length)
    return pad + text if right else text + pad


class GridTable(ScrollView, can_focus=True):
    """A grid drawn from a `GridModel`, one line per visible row under a fixed header.

    It never copies rows: `render_line` reads the model for the lines on screen only.
    Call `sync()` at a bounded rate to redraw what changed in the model since.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "grid-table--header",
        "grid-table--sorted",
        "grid-table--key",
        "grid-table--flash",
    }

    DEFAULT_CSS = """
    GridTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .grid-table--header {
            background: $panel;
            color: $foreground;
            text-style: bold;
        }
        & > .grid-table--sorted {
            color: $text-accent;
        }
        & > .grid-table--key {
            color: $text-primary;
        }
        & > .grid-table--flash {
            background: $warning 55%;
        }
    }
    """

    def __init__(
        self,
        model: GridModel,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.model = model
        self._widths: list[int] = []
        self._key_width = 0
        self._styles: _Palette | None = None
        # what each line of the widget shows now: a row key, or None (blank)
        self._painted: dict[int, str | None] = {}
        self._painted_header: tuple[object, ...] = ()

    # -- drawing what changed -----------------------------------------------------------

    def sync(self) -> int:
        """Redraw what changed in the model since the last call; returns lines redrawn.

        Each visible line is compared with what was last painted there: a line is
        redrawn when another row now sits on it, when its row changed, or while its row
        is flashing. Rows moving elsewhere in a sorted grid cost nothing on screen. New
        widths, a new sort or a new row count redraw the screenful.
        """
        model = self.model
        changes = model.drain()
        width, height = self.size
        if changes.layout:
            self._measure()
            virtual = Size(self._key_width + 2 + self._cells_width(), model.visible_count + 1)
            if virtual != self.virtual_size:
                self.virtual_size = virtual  # a new extent repaints the whole widget
                return height
            if self._header_signature() != self._painted_header:
                self.refresh()
                return height
        first = round(self.scroll_y)
        keys = model.visible_keys(first, first + height - 1)
        painted, rows = self._painted, changes.rows
        redrawn = 0
        for line in range(1, height):
            key = keys[line - 1] if line <= len(keys) else None
            if painted.get(line, _UNPAINTED) != key or (
                key is not None and (key in rows or model.flashing(key))
            ):
                self.refresh(Region(0, line, width, 1))
                redrawn += 1
        return redrawn

    def _measure(self) -> None:
        """Column widths: the model's, widened so a header with its sort arrow fits."""
        model = self.model
        self._key_width = max(model.key_width, cell_len(KEY_COLUMN) + 2)
        self._widths = [
            max(width, cell_len(name) + 2)
            for width, name in zip(model.widths, model.columns, strict=True)
        ]

    def _header_signature(self) -> tuple[object, ...]:
        """What the header line (and every line's layout) was drawn from."""
        model = self.model
        return (model.columns, self._key_width, *self._widths, model.sort_column, model.descending)

    # -- Line API -----------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None  # a new theme: work the styles out again, and repaint
        self.refresh()

    def _palette(self) -> _Palette:
        if self._styles is None:
            base = self.rich_style
            flash = self.get_component_styles("grid-table--flash")
            background = self.background_colors[1]
            lit = background + flash.background
            fades = [
                base
                + Style.from_color(bgcolor=background.blend(lit, step / _FLASH_STEPS).rich_color)
                for step in range(1, _FLASH_STEPS + 1)
            ]
            header = self.get_component_rich_style("grid-table--header")
            self._styles = _Palette(
                base=base,
                header=header,
                sorted=header + self.get_component_rich_style("grid-table--sorted", partial=True),
                key=base + self.get_component_rich_style("grid-table--key", partial=True),
                fades=fades,
            )
        return self._styles

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        palette = self._palette()
        model = self.model
        if not model.columns and not model.visible_count:
            self._painted[y] = None
            return Strip.blank(width, palette.base)  # nothing known yet: no bare header
        if len(self._widths) != len(model.columns):
            self._measure()  # columns arrived since the last sync
        if y == 0:
            self._painted_header = self._header_signature()
            fixed, cells, style = *self._header(palette), palette.header
        else:
            index = scroll_y + y - 1
            if index >= model.visible_count:
                self._painted[y] = None
                return Strip.blank(width, palette.base)
            key = model.visible_key(index)
            self._painted[y] = key
            fixed, cells, style = *self._row(key, palette), palette.base
        # the key column stays put; the cells scroll sideways beside it
        cells = cells.crop(scroll_x, scroll_x + max(0, width - fixed.cell_length))
        return Strip.join([fixed, cells]).crop_extend(0, width, style)

    def _header(self, palette: _Palette) -> tuple[Strip, Strip]:
        model = self.model
        arrow = " ▼" if model.descending else " ▲"
        key_style, key_label = palette.header, KEY_COLUMN
        if model.sort_column is None:
            key_style, key_label = palette.sorted, KEY_COLUMN + arrow
        fixed = Segment(f" {_fit(key_label, self._key_width, False)} ", key_style)
        segments = []
        for name, width in zip(model.columns, self._widths, strict=False):
            if name == model.sort_column:
                segments.append(Segment(f" {_fit(name + arrow, width, False)} ", palette.sorted))
            else:
                segments.append(Segment(f" {_fit(name, width, False)} ", palette.header))
        return Strip([fixed], self._key_width + 2), Strip(segments, self._cells_width())

    def _row(self, key: str, palette: _Palette) -> tuple[Strip, Strip]:
        model = self.model
        text = model.text(key)
        row = model.row(key)
        now, fades = model.clock(), palette.fades
        fixed = Segment(f" {_fit(key, self._key_width, False)} ", palette.key)
        lit = model.flashing(key)
        segments = []
        for i, (name, width) in enumerate(zip(model.columns, self._widths, strict=False)):
            cell = f" {_fit(text[i], width, is_numeric(row.get(name)))} "
            style = palette.base
            if lit:
                level = model.flash_level(key, i, now)
                if level > 0:
                    style = fades[math.ceil(level * _FLASH_STEPS) - 1]
            segments.append(Segment(cell, style))
        return Strip([fixed], self._key_width + 2), Strip(segments, self._cells_width())

    def _cells_width(self) -> int:
        return sum(self._widths) + 2 * len(self._widths)


class _Palette:
    """The rich styles of one theme, worked out once rather than per cell."""

    __slots__ = ("base", "fades", "header", "key", "sorted")

    def __init__(
        self, *, base: Style, header: Style, sorted: Style, key: Style, fades: list[Style]
    ) -> None:
        self.base = base
        self.header = header
        self.sorted = sorted
        self.key = key
        self.fades = fades


class GridScreen(Screen[None]):
    """One grid of one app, live: sort, filter, pause, and back to where you came from.

    `GridScreen(endpoint, app, grid)` follows the grid over gRPC (`grid_feed`); pass
    `source=` to feed it from anything else (tests, benchmarks), `model=` to share or
    pre-fill the model, and `refresh_rate=` to change how often changes are drawn.
    """

    DEFAULT_CSS = """
    GridScreen {
        layout: vertical;
        #grid-title {
            height: 1;
            width: 1fr;
            padding: 0 1;
            background: $panel;
            color: $foreground;
        }
        #grid-filter-bar {
            display: none;
            height: 1;
            background: $boost;
            &.-shown {
                display: block;
            }
            Label {
                padding: 0 1;
                color: $text-accent;
                text-style: bold;
            }
            Input {
                width: 1fr;
                height: 1;
                border: none;
                padding: 0;
                background: transparent;
            }
        }
        #grid-message {
            display: none;
            padding: 1 2;
            height: auto;
            color: $text-muted;
            background: $surface;
            &.-error {
                color: $text-error;
            }
            &.-shown {
                display: block;
            }
        }
    }
    """

    table = getters.query_one("#grid-table", GridTable)
    filter_input = getters.query_one("#grid-filter", Input)
    filter_bar = getters.query_one("#grid-filter-bar", Horizontal)
    title_bar = getters.query_one("#grid-title", Static)
    message_box = getters.query_one("#grid-message", Static)

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse"),
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("escape,q", "back", "Back"),
    ]

    def __init__(
        self,
        endpoint: str,
        app: str,
        grid: str,
        *,
        token: str | None = None,
        source: GridSource | None = None,
        model: GridModel | None = None,
        refresh_rate: float = 15.0,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.endpoint = endpoint
        self.app_name = app
        self.grid_name = grid
        self.model = model if model is not None else GridModel(measure=cell_len)
        self.refresh_rate = refresh_rate
        self.state = ConnectionState("connecting", f"connecting to {endpoint}…")
        self._source: GridSource = source or (lambda: grid_feed(endpoint, app, grid, token=token))
        self._title = Content()

    def compose(self) -> ComposeResult:
        yield Static(id="grid-title")
        with Horizontal(id="grid-filter-bar"):
            yield Label("filter")
            yield Input(placeholder="words to find, or column:text", id="grid-filter")
        yield Static(id="grid-message")
        yield GridTable(self.model, id="grid-table")
        yield Footer()

    def on_mount(self) -> None:
        self.title = f"{self.app_name} / {self.grid_name}"  # for a Header, if the app has one
        self.table.focus()
        self._show_state()
        self.set_interval(1 / self.refresh_rate, self.refresh_view, name="grid-refresh")
        self._follow()

    # -- the feed -----------------------------------------------------------------------

    @work(exclusive=True, group="grid-feed", exit_on_error=False)
    async def _follow(self) -> None:
        """Feed the model from the source; the widget is left to the refresh timer."""
        model = self.model
        try:
            async with aclosing(self._source()) as events:
                async for event in events:
                    if isinstance(event, ConnectionState):
                        self._set_state(event)
                    elif isinstance(event, GridSchema):
                        model.set_columns(event.columns)
                    else:
                        if self.state.phase != "live":
                            self._set_state(ConnectionState("live"))
                        model.apply(event)
        except Exception as exc:
            self._set_state(ConnectionState("error", f"{type(exc).__name__}: {exc}"))
        else:
            if self.state.phase != "error":
                self._set_state(ConnectionState("ended", "the stream ended"))

    def _set_state(self, state: ConnectionState) -> None:
        self.state = state
        self._show_state()

    def _show_state(self) -> None:
        """Connection trouble before any row arrived gets the table's place, in words."""
        message = self.message_box
        phase = self.state.phase
        quiet = phase == "live" or (len(self.model) and phase in ("reconnecting", "ended"))
        message.set_class(not quiet, "-shown")
        message.set_class(phase == "error", "-error")
        if not quiet:
            hint = "escape: back" if phase in ("error", "ended") else ""
            message.update(Content.assemble(self.state.detail or phase, "\n", hint))
        self.refresh_view()

    # -- drawing ------------------------------------------------------------------------

    def refresh_view(self) -> int:
        """Draw the model's changes (the timer calls this); returns the lines redrawn."""
        redrawn = self.table.sync()
        title = self._title_content()
        if title != self._title:
            self._title = title
            # one line of fixed size: a repaint, never a layout of the screen
            self.title_bar.update(title, layout=False)
        return redrawn

    def _title_content(self) -> Content:
        model, state = self.model, self.state
        parts: list[str | tuple[str, str]] = [
            (self.app_name, "bold"),
            " / ",
            (self.grid_name, "bold"),
            f"  {len(model):,} rows",
        ]
        if model.filter_text:
            parts.append(f" ({model.visible_count:,} shown)")
        parts.append(f"  {model.rate():,.0f} updates/s")
        sort = model.sort_column or KEY_COLUMN
        parts.append(f"  by {sort} {'▼' if model.descending else '▲'}")
        if model.paused:
            parts.append(("  paused", "bold $text-warning"))
            parts.append(f" ({model.held_updates:,} updates since)")
        if state.phase == "live" and model.stale is not None:
            # The app serves its last state but cannot update it (its broker is down).
            parts.append((f"  ⚠ stale: {_one_line(model.stale, 120)}", "bold $text-warning"))
        elif state.phase == "live":
            parts.append(("  ● live", "$text-success"))
        elif state.phase == "error":
            parts.append(("  ✖ error", "bold $text-error"))  # the words are in the message
        elif state.phase == "reconnecting":
            parts.append((f"  ↻ reconnecting… {state.detail}", "$text-warning"))
        else:
            parts.append((f"  {state.phase}…" if state.phase == "connecting" else "  ended", ""))
        return Content.assemble(*parts)

    # -- actions ------------------------------------------------------------------------

    def action_filter(self) -> None:
        """Show the filter box and put the cursor in it."""
        self.filter_bar.add_class("-shown")
        self.filter_input.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "grid-filter":
            self.model.set_filter(event.value)
            self.table.scroll_home(animate=False, immediate=True)
            self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "grid-filter":
            if not event.value:
                self.filter_bar.remove_class("-shown")
            self.table.focus()

    def _clear_filter(self) -> None:
        self.filter_input.value = ""
        self.filter_bar.remove_class("-shown")
        self.model.set_filter("")
        self.table.focus()
        self.refresh_view()

    def action_back(self) -> None:
        """Escape clears a filter first; otherwise (and `q`) leave the screen."""
        if self.filter_input.has_focus or self.model.filter_text:
            self._clear_filter()
        else:
            self.app.pop_screen()

    def action_sort_next(self) -> None:
        self.model.cycle_sort()
        self.refresh_view()

    def action_sort_reverse(self) -> None:
        self.model.reverse_sort()
        self.refresh_view()

    def action_pause(self) -> None:
        """Freeze the rows on screen; updates keep being counted and are held."""
        self.model.pause()
        self.refresh_bindings()
        self.refresh_view()

    def action_resume(self) -> None:
        """Apply what arrived while paused (the latest of each row) and go on."""
        self.model.resume()
        self.refresh_bindings()
        self.refresh_view()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`p` pauses or resumes; while typing a filter, letters are text, not commands."""
        del parameters
        commands = ("sort_next", "sort_reverse", "pause", "resume", "filter")
        if action in commands and self.filter_input.has_focus:
            return False
        if action == "pause":
            return not self.model.paused
        if action == "resume":
            return self.model.paused
        return True

    def displayed_rows(self) -> list[list[str]]:
        """The visible rows as drawn (key, then cells), for tests and debugging."""
        model = self.model
        return [[key, *model.text(key)] for key in model.visible_keys()]
