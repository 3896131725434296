"""`GridModel`: a live grid as the TUI shows it, in plain Python (no Textual).

The grid view keeps its data here, outside the widget, so the stream can change it at any
rate while the widget only reads it: a timer drains the changes at a bounded rate and
redraws the few visible lines they touched. The model keeps, per row, the raw cells (for
sorting) and their display text (for drawing, filtering and column widths), the visible
order under the current sort and filter, and when each cell last changed (for flashing).

The visible order (`order.VisibleOrder`) is kept sorted incrementally: an update moves
only the rows whose sort value changed, and a full re-sort happens only when the user
changes the sort or the filter, or a snapshot replaces the grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aerogrid_devkit.tui.grid.cells import format_cell, natural, sort_value
from aerogrid_devkit.tui.grid.feed import UpdateLike
from aerogrid_devkit.tui.grid.filter import RowFilter
from aerogrid_devkit.tui.grid.flashes import Flashes
from aerogrid_devkit.tui.grid.incoming import HeldUpdates, UpdateRate
from aerogrid_devkit.tui.grid.order import SortKey, VisibleOrder

__all__ = ["KEY_COLUMN", "Changes", "GridModel"]

#: The name the row key goes by in the header, in sorting and in `key:` filters.
KEY_COLUMN = "key"


@dataclass
class Changes:
    """What changed since the last `GridModel.drain()`.

    `rows` are the keys whose cells changed (visible or not); `layout` says the visible
    order, the row count, the columns or their widths changed, so every visible line and
    the scroll extent must be redrawn, not just the changed rows.
    """

    rows: set[str] = field(default_factory=set)
    layout: bool = False
    cells: int = 0

    def __bool__(self) -> bool:
        return self.layout or bool(self.rows)


# -- the model --------------------------------------------------------------------------


class GridModel:
    """Rows by key, their visible order under a sort and a filter, and what changed.

    Feed it with `apply()` (or `set_columns`, `replace`, `upsert`, `delete`); read it
    with `visible_count`, `visible_keys()`, `text()` and `flash_level()`; call `drain()`
    at the view's pace to learn what to redraw.
    """

    def __init__(
        self,
        columns: Sequence[str] = (),
        *,
        flash_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        measure: Callable[[str], int] = len,
        max_width: int = 40,
    ) -> None:
        self.clock = clock
        self.measure = measure
        self.max_width = max_width
        self.columns: tuple[str, ...] = ()
        self._column_index: dict[str, int] = {}
        self._rows: dict[str, Mapping[str, Any]] = {}
        self._text: dict[str, tuple[str, ...]] = {}
        # the visible rows, ascending by their sort key; descending reads it backwards
        self._order = VisibleOrder()
        self.sort_column: str | None = None
        self.descending = False
        self.filter_text = ""
        self._filter = RowFilter("", (), KEY_COLUMN)
        # display widths: the key's, then each column's (grow-only between snapshots)
        self.key_width = len(KEY_COLUMN)
        self.widths: list[int] = []
        # changes since the last drain, and when each cell last changed
        self._changed_rows: set[str] = set()
        self._layout_changed = True
        self._changed_cells = 0
        self._flashes = Flashes(flash_seconds)
        # counters: row updates received (held ones too) and cells actually changed
        self.updates_total = 0
        self.cells_total = 0
        self.snapshots = 0
        self._rate = UpdateRate()
        # pause: updates are held (conflated per row) instead of applied
        self.paused = False
        self._held = HeldUpdates()
        #: Why the app says these values may be out of date (None: they are current).
        self.stale: str | None = None
        if columns:
            self.set_columns(columns)

    # -- reading ------------------------------------------------------------------------

    @property
    def flash_seconds(self) -> float:
        """How long a changed cell stays lit (fading) after its change."""
        return self._flashes.seconds

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    @property
    def rows(self) -> Mapping[str, Mapping[str, Any]]:
        """Every row by key (the raw cells), filtered or not."""
        return self._rows

    @property
    def visible_count(self) -> int:
        return len(self._order)

    def visible_key(self, index: int) -> str:
        """The key of the `index`th visible row, in the current sort direction."""
        return self._order.at(index, self.descending)

    def visible_keys(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The keys of visible rows `start` to `stop` (a window costs its own length)."""
        return self._order.window(start, stop, self.descending)

    def visible_index(self, key: str) -> int | None:
        """Where a row is in the visible order (None when filtered out or absent)."""
        return self._order.index(key, self.descending)

    def text(self, key: str) -> tuple[str, ...]:
        """A row's cells as display text, in column order."""
        return self._text[key]

    def row(self, key: str) -> Mapping[str, Any]:
        return self._rows[key]

    def flash_level(self, key: str, column: int, now: float) -> float:
        """How bright a cell's change flash is: 1.0 just changed, 0.0 not (any more)."""
        return self._flashes.level(key, column, now)

    def flashing(self, key: str) -> bool:
        """Whether any cell of the row has a flash that `drain()` has not expired yet."""
        return key in self._flashes

    def rate(self, now: float | None = None) -> float:
        """Row updates received per second, over the last second."""
        return self._rate.per_second(self.clock() if now is None else now)

    # -- feeding ------------------------------------------------------------------------

    def set_columns(self, columns: Iterable[str]) -> None:
        """Set the grid's columns (from its schema); rows keep their cells by name."""
        columns = tuple(columns)
        if columns == self.columns:
            return
        self.columns = columns
        self._column_index = {name: i for i, name in enumerate(columns)}
        if self.sort_column is not None and self.sort_column not in self._column_index:
            self.sort_column = None
        self._filter = RowFilter(self.filter_text, columns, KEY_COLUMN)
        self._text = {key: self._format(row) for key, row in self._rows.items()}
        self._flashes.clear()
        self._measure_all()
        self._rebuild()

    def apply(self, update: UpdateLike) -> int:
        """Apply a snapshot (replaces every row) or a delta; returns the cells changed.

        While paused, the update is held instead (the latest value of each row) and
        applied on `resume()`; it is counted either way. Whether the app says its values
        are stale is taken from every update, paused or not.
        """
        self.stale = update.stale_reason
        if not update.snapshot:
            received = len(update.upserts) + len(update.deletes)
            self.updates_total += received
            if received:
                self._rate.count(received, self.clock())
        else:
            self.snapshots += 1
        if self.paused:
            self._held.hold(update)
            return 0
        if update.snapshot:
            return self.replace(update.upserts)
        changed = 0
        for key, row in update.upserts.items():
            changed += self.upsert(key, row)
        for key in update.deletes:
            self.delete(key)
        return changed

    def replace(self, rows: Mapping[str, Mapping[str, Any]]) -> int:
        """Replace every row (a snapshot): cells that differ from before flash."""
        self._learn_columns(rows.values())
        old_text = self._text
        self._rows = dict(rows)
        self._text = {key: self._format(row) for key, row in self._rows.items()}
        now = self.clock()
        changed = 0
        if old_text:  # a first load lights nothing; a re-snapshot lights what differs
            for key, text in self._text.items():
                before = old_text.get(key)
                if before is None:
                    changed += self._flashes.light(key, range(len(text)), now)
                elif before != text:
                    changed += self._flashes.light(
                        key, [i for i, t in enumerate(text) if before[i] != t], now
                    )
            for key in old_text.keys() - self._text.keys():
                self._flashes.forget(key)
        self.cells_total += changed
        self._changed_cells += changed
        self._measure_all()
        self._rebuild()
        return changed

    def upsert(self, key: str, row: Mapping[str, Any]) -> int:
        """Insert or replace one row; returns how many of its cells changed."""
        if len(row) > len(self.columns) or any(c not in self._column_index for c in row):
            self._learn_columns((row,))
        text = self._format(row)
        before = self._text.get(key)
        if before is None:
            changed_columns: Sequence[int] = range(len(text))
        else:
            changed_columns = [i for i, t in enumerate(text) if before[i] != t]
            if not changed_columns:
                self._rows[key] = row
                return 0
        self._rows[key] = row
        self._text[key] = text
        changed = self._flashes.light(key, changed_columns, self.clock())
        self.cells_total += changed
        self._changed_cells += changed
        self._changed_rows.add(key)
        self._grow_widths(key, text, changed_columns, new=before is None)
        self._place(key, row, text, moved=before is None or self._sort_moved(changed_columns))
        return changed

    def delete(self, key: str) -> bool:
        """Remove one row; False when it was not there."""
        if self._rows.pop(key, None) is None:
            return False
        self._text.pop(key, None)
        self._flashes.forget(key)
        self._changed_rows.discard(key)
        if key in self._order:
            self._order.remove(key)
            self._layout_changed = True
        return True

    # -- sort and filter ----------------------------------------------------------------

    def sort_by(self, column: str | None, descending: bool = False) -> None:
        """Sort by a column (None or `KEY_COLUMN`: by row key), ascending or not."""
        if column == KEY_COLUMN and KEY_COLUMN not in self._column_index:
            column = None
        if column is not None and column not in self._column_index:
            raise KeyError(f"no column named {column!r}")
        if column != self.sort_column:
            self.sort_column = column
            self._rebuild()
        if descending != self.descending:
            self.descending = descending
            self._layout_changed = True

    def cycle_sort(self) -> str | None:
        """Sort by the next column (key, then each column in turn), ascending."""
        order: list[str | None] = [None, *self.columns]
        following = order[(order.index(self.sort_column) + 1) % len(order)]
        self.sort_by(following, descending=False)
        return following

    def reverse_sort(self) -> None:
        self.sort_by(self.sort_column, descending=not self.descending)

    def set_filter(self, text: str) -> None:
        """Show only rows matching every word of `text` (case-blind substrings).

        A word `column:text` looks in that column only (`key:` in the row key).
        """
        if text == self.filter_text:
            return
        self.filter_text = text
        self._filter = RowFilter(text, self.columns, KEY_COLUMN)
        self._rebuild()

    # -- pause --------------------------------------------------------------------------

    @property
    def held_updates(self) -> int:
        """Row updates received since the pause, waiting for `resume()`."""
        return self._held.count

    def pause(self) -> None:
        """Freeze the rows: updates are counted and held, not applied."""
        self.paused = True

    def resume(self) -> int:
        """Apply what was held while paused (one change per row at most)."""
        self.paused = False
        snapshot, upserts, deletes = self._held.take()
        changed = self.replace(snapshot) if snapshot is not None else 0
        for key, row in upserts.items():
            changed += self.upsert(key, row)
        for key in deletes:
            self.delete(key)
        return changed

    # -- draining -----------------------------------------------------------------------

    def drain(self) -> Changes:
        """What changed since the last drain; also ends flashes older than the flash."""
        self._changed_rows.update(self._flashes.expire(self.clock()))  # redraw them unlit
        changes = Changes(self._changed_rows, self._layout_changed, self._changed_cells)
        self._changed_rows = set()
        self._layout_changed = False
        self._changed_cells = 0
        return changes

    # -- internals ----------------------------------------------------------------------

    def _format(self, row: Mapping[str, Any]) -> tuple[str, ...]:
        get = row.get
        return tuple(format_cell(get(name)) for name in self.columns)

    def _learn_columns(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Columns a row has that the schema did not announce join at the end."""
        extra: dict[str, None] = {}
        for row in rows:
            for name in row:
                if name not in self._column_index:
                    extra[name] = None
        if extra:
            self.set_columns((*self.columns, *extra))

    def _sort_key(self, key: str, row: Mapping[str, Any]) -> SortKey:
        """Unique per row (the key breaks ties), so a row can always be found by it."""
        if self.sort_column is None:
            return (natural(key), key)
        return (sort_value(row.get(self.sort_column)), natural(key), key)

    def _sort_moved(self, changed_columns: Sequence[int]) -> bool:
        if self.sort_column is None:
            return False
        return self._column_index[self.sort_column] in changed_columns

    def _place(self, key: str, row: Mapping[str, Any], text: tuple[str, ...], moved: bool) -> None:
        """Keep one row's place in the visible order right after it changed."""
        visible = key in self._order
        wanted = not self._filter or self._filter.matches(key, text)
        if visible and not wanted:
            self._order.remove(key)
        elif wanted and (not visible or moved):
            if visible:
                self._order.remove(key)
            self._order.insert(key, self._sort_key(key, row))
        else:
            return
        self._layout_changed = True

    def _rebuild(self) -> None:
        """Sort and filter every row from scratch (a new sort, filter or snapshot)."""
        rows, text = self._rows, self._text
        keys: Iterable[str] = rows
        if self._filter:
            keys = [key for key in rows if self._filter.matches(key, text[key])]
        self._order.reset({key: self._sort_key(key, rows[key]) for key in keys})
        self._layout_changed = True

    def _measure_all(self) -> None:
        measure, cap = self.measure, self.max_width
        self.key_width = min(cap, max([len(KEY_COLUMN), *map(measure, self._rows)]))
        widths = [measure(name) for name in self.columns]
        for text in self._text.values():
            for i, cell in enumerate(text):
                width = measure(cell)
                if width > widths[i]:
                    widths[i] = width
        self.widths = [min(cap, w) for w in widths]
        self._layout_changed = True

    def _grow_widths(
        self, key: str, text: tuple[str, ...], columns: Iterable[int], *, new: bool
    ) -> None:
        measure, cap, widths = self.measure, self.max_width, self.widths
        if new and self.key_width < cap:
            width = min(cap, measure(key))
            if width > self.key_width:
                self.key_width = width
                self._layout_changed = True
        for i in columns:
            if widths[i] < cap:
                width = min(cap, measure(text[i]))
                if width > widths[i]:
                    widths[i] = width
                    self._layout_changed = True
