"""`GridTable`: a grid drawn from a `GridModel`, only the lines on screen.

It is a Line API widget (a `ScrollView` with `render_line`): it renders nothing but the
lines on screen, straight from the model, so its cost per frame depends on the terminal's
height, not on the grid's size or its update rate. A `DataTable` would hold a second copy
of every row, and each `update_cell` invalidates its whole line cache and repaints every
visible line (see `benchmarks/tui_frames.py` for the difference).
"""

from __future__ import annotations

import math
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from aerogrid_devkit.tui.grid.cells import is_numeric
from aerogrid_devkit.tui.grid.model import KEY_COLUMN, GridModel

__all__ = ["GridTable"]

#: A flash fades in this many steps: enough to read as a fade, few enough to cache.
_FLASH_STEPS = 4

#: A line never painted (so any row on it must be drawn).
_UNPAINTED = "\0unpainted"


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
