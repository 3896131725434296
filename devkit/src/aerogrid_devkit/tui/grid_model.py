"""`GridModel`: a live grid as the TUI shows it, in plain Python (no Textual).

The grid view keeps its data here, outside the widget, so the stream can change it at any
rate while the widget only reads it: a timer drains the changes at a bounded rate and
redraws the few visible lines they touched. The model keeps, per row, the raw cells (for
sorting) and their display text (for drawing, filtering and column widths), the visible
order under the current sort and filter, and when each cell last changed (for flashing).

The visible order is a list kept sorted incrementally: an update moves only the rows whose
sort value changed (a binary search and one list insert each), so 1,000 changes a second
on 10,000 rows cost microseconds each, and a full re-sort happens only when the user
changes the sort or the filter, or a snapshot replaces the grid.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

__all__ = [
    "KEY_COLUMN",
    "Changes",
    "ConnectionState",
    "FeedEvent",
    "GridModel",
    "GridSchema",
    "UpdateLike",
    "format_cell",
    "is_numeric",
    "sort_value",
]

#: The name the row key goes by in the header, in sorting and in `key:` filters.
KEY_COLUMN = "key"

#: Characters that would break a one-line cell, shown as visible stand-ins instead.
_CONTROL = {i: " " for i in range(32)} | {0x7F: " "}
_DIGITS = re.compile(r"(\d+)")


class UpdateLike(Protocol):
    """What the model needs of an update: `aerogrid.client.GridUpdate` is one."""

    @property
    def snapshot(self) -> bool: ...

    @property
    def upserts(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def deletes(self) -> Sequence[str]: ...

    @property
    def stale_reason(self) -> str | None: ...


@dataclass(frozen=True)
class GridSchema:
    """The grid's columns, known before any row arrives (an empty grid has them too)."""

    columns: tuple[str, ...]


@dataclass(frozen=True)
class ConnectionState:
    """Where a feed stands; `detail` is text a user can act on (an error, a retry)."""

    phase: Literal["connecting", "live", "reconnecting", "error", "ended"]
    detail: str = ""


#: What a feed of a grid yields: its columns, its updates and its connection state.
FeedEvent = GridSchema | UpdateLike | ConnectionState


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


# -- cells ------------------------------------------------------------------------------


def format_cell(value: Any) -> str:
    """A cell as one line of text: what is drawn, measured and filtered on."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value.translate(_CONTROL)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value).translate(_CONTROL)


def is_numeric(value: Any) -> bool:
    """Numbers are right-aligned."""
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _natural(text: str) -> tuple[str | int, ...]:
    """`item-9` before `item-10`: digit runs compare as numbers, the rest case-blind.

    `re.split` with a group always alternates text and digits starting with text, so two
    such tuples compare str with str and int with int, position by position.
    """
    parts = _DIGITS.split(text.casefold())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


def sort_value(value: Any) -> tuple[int, Any]:
    """A total order over every cell type: numbers, then times, then text, then blanks.

    Numbers of any type compare by value (not as text); NaN and None sort last; a rank
    first keeps values of different types from ever being compared with each other.
    """
    if value is None:
        return (4, 0)
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, int):
        return (0, value)
    if isinstance(value, float):
        return (4, 0) if math.isnan(value) else (0, value)
    if isinstance(value, Decimal):
        return (4, 0) if value.is_nan() else (0, value)
    if isinstance(value, datetime):
        return (1, value.timestamp())
    if isinstance(value, date):
        return (1, datetime(value.year, value.month, value.day).timestamp())
    if isinstance(value, str):
        return (2, _natural(value))
    return (3, repr(value))


# -- the model --------------------------------------------------------------------------


class _Term:
    """One word of a filter: a case-blind substring, of one column or of any."""

    __slots__ = ("column", "needle")

    def __init__(self, needle: str, column: int | None) -> None:
        self.needle = needle
        #: None: key or any cell; -1: the key; n: cell n.
        self.column = column


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
        self.flash_seconds = flash_seconds
        self.clock = clock
        self.measure = measure
        self.max_width = max_width
        self.columns: tuple[str, ...] = ()
        self._column_index: dict[str, int] = {}
        self._rows: dict[str, Mapping[str, Any]] = {}
        self._text: dict[str, tuple[str, ...]] = {}
        # the visible rows, ascending by their sort key; descending reads it backwards
        self._order: list[str] = []
        self._sort_keys: dict[str, tuple[Any, ...]] = {}
        self.sort_column: str | None = None
        self.descending = False
        self.filter_text = ""
        self._terms: list[_Term] = []
        # display widths: the key's, then each column's (grow-only between snapshots)
        self.key_width = len(KEY_COLUMN)
        self.widths: list[int] = []
        # changes since the last drain, and when each cell last changed
        self._changed_rows: set[str] = set()
        self._layout_changed = True
        self._changed_cells = 0
        self._flash: dict[str, dict[int, float]] = {}
        self._flash_queue: deque[tuple[float, str, int]] = deque()
        # counters: row updates received (held ones too) and cells actually changed
        self.updates_total = 0
        self.cells_total = 0
        self.snapshots = 0
        self._rate_buckets: deque[tuple[int, int]] = deque()
        # pause: updates are held (conflated per row) instead of applied
        self.paused = False
        self.held_updates = 0
        self._held_snapshot: dict[str, Mapping[str, Any]] | None = None
        self._held_upserts: dict[str, Mapping[str, Any]] = {}
        self._held_deletes: set[str] = set()
        #: Why the app says these values may be out of date (None: they are current).
        self.stale: str | None = None
        if columns:
            self.set_columns(columns)

    # -- reading ------------------------------------------------------------------------

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
        return self._order[-1 - index] if self.descending else self._order[index]

    def visible_keys(self, start: int = 0, stop: int | None = None) -> list[str]:
        """The keys of visible rows `start` to `stop` (a window costs its own length)."""
        count = len(self._order)
        stop = count if stop is None else min(stop, count)
        start = max(0, start)
        if start >= stop:
            return []
        if not self.descending:
            return self._order[start:stop]
        return self._order[count - start - 1 : (count - stop - 1 if stop < count else None) : -1]

    def visible_index(self, key: str) -> int | None:
        """Where a row is in the visible order (None when filtered out or absent)."""
        sort_key = self._sort_keys.get(key)
        if sort_key is None:
            return None
        index = bisect.bisect_left(self._order, sort_key, key=self._sort_keys.__getitem__)
        return len(self._order) - 1 - index if self.descending else index

    def text(self, key: str) -> tuple[str, ...]:
        """A row's cells as display text, in column order."""
        return self._text[key]

    def row(self, key: str) -> Mapping[str, Any]:
        return self._rows[key]

    def flash_level(self, key: str, column: int, now: float) -> float:
        """How bright a cell's change flash is: 1.0 just changed, 0.0 not (any more)."""
        cells = self._flash.get(key)
        if cells is None:
            return 0.0
        changed = cells.get(column)
        if changed is None:
            return 0.0
        return min(1.0, max(0.0, 1.0 - (now - changed) / self.flash_seconds))

    def flashing(self, key: str) -> bool:
        """Whether any cell of the row has a flash that `drain()` has not expired yet."""
        return key in self._flash

    def rate(self, now: float | None = None) -> float:
        """Row updates received per second, over the last second."""
        now = self.clock() if now is None else now
        self._trim_rate(int(now * 10))
        return float(sum(n for _, n in self._rate_buckets))

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
        self._terms = self._parse_filter(self.filter_text)
        self._text = {key: self._format(row) for key, row in self._rows.items()}
        self._flash.clear()
        self._flash_queue.clear()
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
            self._count_rate(received)
        else:
            self.snapshots += 1
        if self.paused:
            self._hold(update)
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
                    changed += self._flash_cells(key, range(len(text)), now)
                elif before != text:
                    changed += self._flash_cells(
                        key, [i for i, t in enumerate(text) if before[i] != t], now
                    )
            for key in old_text.keys() - self._text.keys():
                self._flash.pop(key, None)
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
        changed = self._flash_cells(key, changed_columns, self.clock())
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
        self._flash.pop(key, None)
        self._changed_rows.discard(key)
        if key in self._sort_keys:
            self._remove(key)
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
        self._terms = self._parse_filter(text)
        self._rebuild()

    # -- pause --------------------------------------------------------------------------

    def pause(self) -> None:
        """Freeze the rows: updates are counted and held, not applied."""
        self.paused = True

    def resume(self) -> int:
        """Apply what was held while paused (one change per row at most)."""
        self.paused = False
        snapshot, upserts, deletes = self._held_snapshot, self._held_upserts, self._held_deletes
        self._held_snapshot, self._held_upserts, self._held_deletes = None, {}, set()
        self.held_updates = 0
        changed = self.replace(snapshot) if snapshot is not None else 0
        for key, row in upserts.items():
            changed += self.upsert(key, row)
        for key in deletes:
            self.delete(key)
        return changed

    # -- draining -----------------------------------------------------------------------

    def drain(self) -> Changes:
        """What changed since the last drain; also ends flashes older than the flash."""
        self._expire_flashes(self.clock())
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

    def _sort_key(self, key: str, row: Mapping[str, Any]) -> tuple[Any, ...]:
        """Unique per row (the key breaks ties), so a row can always be found by it."""
        if self.sort_column is None:
            return (_natural(key), key)
        return (sort_value(row.get(self.sort_column)), _natural(key), key)

    def _sort_moved(self, changed_columns: Sequence[int]) -> bool:
        if self.sort_column is None:
            return False
        return self._column_index[self.sort_column] in changed_columns

    def _matches(self, key: str, text: tuple[str, ...]) -> bool:
        for term in self._terms:
            needle, column = term.needle, term.column
            if column is None:
                if needle not in key.casefold() and not any(
                    needle in cell.casefold() for cell in text
                ):
                    return False
            elif column < 0:
                if needle not in key.casefold():
                    return False
            elif column >= len(text) or needle not in text[column].casefold():
                return False
        return True

    def _parse_filter(self, text: str) -> list[_Term]:
        terms = []
        lowered = {name.casefold(): i for i, name in enumerate(self.columns)}
        for word in text.split():
            name, colon, needle = word.partition(":")
            column: int | None = None
            if colon and name.casefold() in lowered:
                column = lowered[name.casefold()]
            elif colon and name.casefold() == KEY_COLUMN:
                column = -1
            else:
                needle = word
            terms.append(_Term(needle.casefold(), column))
        return terms

    def _place(self, key: str, row: Mapping[str, Any], text: tuple[str, ...], moved: bool) -> None:
        """Keep one row's place in the visible order right after it changed."""
        visible = key in self._sort_keys
        wanted = not self._terms or self._matches(key, text)
        if visible and not wanted:
            self._remove(key)
        elif wanted and (not visible or moved):
            if visible:
                self._remove(key)
            self._insert(key, self._sort_key(key, row))
        else:
            return
        self._layout_changed = True

    def _insert(self, key: str, sort_key: tuple[Any, ...]) -> None:
        self._sort_keys[key] = sort_key
        bisect.insort(self._order, key, key=self._sort_keys.__getitem__)

    def _remove(self, key: str) -> None:
        index = bisect.bisect_left(
            self._order, self._sort_keys[key], key=self._sort_keys.__getitem__
        )
        del self._order[index]
        del self._sort_keys[key]

    def _rebuild(self) -> None:
        """Sort and filter every row from scratch (a new sort, filter or snapshot)."""
        rows, text = self._rows, self._text
        keys: Iterable[str] = rows
        if self._terms:
            keys = [key for key in rows if self._matches(key, text[key])]
        self._sort_keys = {key: self._sort_key(key, rows[key]) for key in keys}
        self._order = sorted(self._sort_keys, key=self._sort_keys.__getitem__)
        self._layout_changed = True

    def _flash_cells(self, key: str, columns: Iterable[int], now: float) -> int:
        cells = self._flash.setdefault(key, {})
        count = 0
        for column in columns:
            cells[column] = now
            self._flash_queue.append((now, key, column))
            count += 1
        if not cells:
            del self._flash[key]
        return count

    def _expire_flashes(self, now: float) -> None:
        """Forget flashes that have faded, oldest first (each change is queued once)."""
        horizon = now - self.flash_seconds
        queue = self._flash_queue
        while queue and queue[0][0] <= horizon:
            changed, key, column = queue.popleft()
            cells = self._flash.get(key)
            if cells is not None and cells.get(column) == changed:
                del cells[column]
                if not cells:
                    del self._flash[key]
                    self._changed_rows.add(key)  # redraw it once more, unlit

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

    def _hold(self, update: UpdateLike) -> None:
        if update.snapshot:
            self._held_snapshot = dict(update.upserts)
            self._held_upserts.clear()
            self._held_deletes.clear()
        else:
            for key, row in update.upserts.items():
                self._held_upserts[key] = row
                self._held_deletes.discard(key)
            for key in update.deletes:
                self._held_upserts.pop(key, None)
                self._held_deletes.add(key)
            self.held_updates += len(update.upserts) + len(update.deletes)

    def _count_rate(self, count: int) -> None:
        if not count:
            return
        bucket = int(self.clock() * 10)
        buckets = self._rate_buckets
        if buckets and buckets[-1][0] == bucket:
            buckets[-1] = (bucket, buckets[-1][1] + count)
        else:
            buckets.append((bucket, count))
            self._trim_rate(bucket)

    def _trim_rate(self, bucket: int) -> None:
        oldest = bucket - 9  # ten tenths of a second, this one included
        buckets = self._rate_buckets
        while buckets and buckets[0][0] < oldest:
            buckets.popleft()
