"""`Grid`: a keyed table an app keeps, published to every subscriber as it changes.

Rows are stored as tuples aligned with the grid's columns (a third of the memory of a
dict per row) and read as a `ReadOnlyRow`, so a change is always an assignment to the
grid. Every mutation is recorded twice: in `_dirty` (the latest value of each changed
row, drained by the engine into the changelog and the hub after each commit) and, while
a stream handler runs, in that handler's undo log (bound to its task by
`bind_undo_log`), so a handler that raises leaves the grid exactly as it was before its
record.

A row whose changelog record would exceed MAX_ROW_BYTES is refused when assigned (a
GridError in the handler), so its input record is rolled back and dead-lettered instead
of failing the batch's commit. Only rows that might be that big are measured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from decimal import Decimal
from typing import Any, Final, NoReturn, TypeAlias

from aerogrid.errors import ConfigurationError, GridError
from aerogrid.limits import MAX_ROW_BYTES

Cell: TypeAlias = int | float | str | bool | None | dt.datetime | Decimal
RowKey: TypeAlias = str | int
#: A row as user code writes it (values typed loosely so arithmetic type-checks).
Row: TypeAlias = dict[str, Any]
RowTuple: TypeAlias = tuple[Cell, ...]

CELL_TYPES: Final = (int, float, str, bool, type(None), dt.datetime, Decimal)
#: Cells whose changelog form is never longer than _SMALL_CELL_BYTES.
_SMALL_CELL_TYPES: Final = frozenset((float, bool, type(None), dt.datetime))
_SMALL_CELL_BYTES: Final = 64
#: Ints strictly between these are small cells too (20 digits at most).
_SMALL_INT: Final = 2**64
_SMALL_INT_NEG: Final = -_SMALL_INT
_ABSENT: Final[Any] = object()

#: A handler's undo log: (grid, key) → the row and the pending change before the
#: current record touched it (or _ABSENT).
UndoLog: TypeAlias = dict[tuple["Grid", RowKey], tuple[Any, Any]]

#: The undo log of the stream handler running in the current task; None outside one.
_UNDO: ContextVar[UndoLog | None] = ContextVar("aerogrid_undo", default=None)


def bind_undo_log(undo: UndoLog) -> None:
    """Record, in `undo`, what each grid write of the current task replaces."""
    _UNDO.set(undo)


class ReadOnlyRow(dict[str, Any]):
    """A row read from a grid: a dict for everything that reads, refusing every change.

    A grid keeps its rows as tuples, so `grid[key]` builds a new row each time and
    changing that row could never change the grid: `grid[key]['units'] += 1` would
    silently do nothing. pandas users know the trap as chained assignment, which
    copy-on-write makes never update the frame; Faust users know it from tables of
    dicts, where only assigning the whole value reaches the changelog. As in both, a
    change is an assignment to the grid, one per changed row, which is what the
    changelog and every subscriber see::

        grid[key] = {**grid[key], 'units': grid[key]['units'] + 1}

    So this row raises TypeError, naming that form, instead of doing nothing. A row
    that wrote itself back was the other choice; it would make a row held across an
    `await` write back columns another handler has changed since, and touching the
    default row of a missing key would create it.

    Everything that reads a dict works as before: it is a dict (json and msgspec encode
    it, it equals a dict), and `dict(row)`, `row.copy()`, `{**row}`, `row | {...}`,
    `copy.copy(row)` and pickling give a plain dict that can be changed.
    """

    __slots__ = ()

    def __setitem__(self, column: str, value: Any) -> NoReturn:
        raise _read_only(f"{{**grid[key], {column!r}: new_value}}")

    def __delitem__(self, column: str) -> NoReturn:
        raise _read_only("{k: v for k, v in grid[key].items() if k != column}")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _read_only("{**grid[key], **changes}")

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        raise _read_only("grid[key] | changes")

    def setdefault(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _read_only("{**grid[key], column: value}")

    def pop(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _read_only("{k: v for k, v in grid[key].items() if k != column}")

    def popitem(self) -> NoReturn:
        raise _read_only("{...}")

    def clear(self) -> NoReturn:
        raise _read_only("{}")

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        # copy, deepcopy and pickle would rebuild the row through __setitem__.
        return (dict, (dict(self),))


def _read_only(new_row: str) -> TypeError:
    return TypeError(
        "grid rows are read-only: a row is a copy of what the grid holds, so changing it "
        f"would not change the grid; assign a new row instead: grid[key] = {new_row}"
    )


class Grid(Mapping[RowKey, ReadOnlyRow]):
    """A mapping from row key to row (column → cell value) that publishes its changes.

    Reading a missing key returns the default row; assigning a row publishes it
    (columns left out take the default row's values); `del grid[key]` publishes a
    delete. Rows read are `ReadOnlyRow`s: change one by assigning it back, e.g.
    `grid[key] = {**grid[key], 'units': 5}`. Keys are str or int; cells are int, float,
    str, bool, None, datetime or Decimal.
    """

    def __init__(
        self,
        app_name: str,
        name: str,
        columns: list[str] | tuple[str, ...],
        default: Callable[[], Row] | Row | None = None,
    ) -> None:
        if not columns:
            raise ConfigurationError(f"grid {name!r} of app {app_name!r} needs at least one column")
        if len(set(columns)) != len(columns):
            raise ConfigurationError(f"grid {name!r} of app {app_name!r} repeats a column")
        for column in columns:
            if not isinstance(column, str) or not column:
                raise ConfigurationError(
                    f"grid {name!r} of app {app_name!r}: column names must be non-empty strings"
                )
        self.app_name = app_name
        self.name = name
        self.columns: tuple[str, ...] = tuple(columns)
        self._index = {column: i for i, column in enumerate(self.columns)}
        #: A str cell (or key) up to this many characters cannot make the row's changelog
        #: record exceed MAX_ROW_BYTES, whatever the other cells (JSON escapes a
        #: character into at most 6 bytes): longer ones make the row measured.
        names = sum(6 * len(c.encode()) + 4 for c in self.columns) + 16
        per_cell = (MAX_ROW_BYTES - names) // (len(self.columns) + 1) - _SMALL_CELL_BYTES
        self._small_chars = max(0, per_cell // 6)
        self._default = default
        self._rows: dict[RowKey, RowTuple] = {}
        self._dirty: dict[RowKey, RowTuple | None] = {}
        #: False until the grid is restored from its changelog; only then is it served.
        self.ready = False
        # Validate the default row once, so a typo there fails at start, not at first use.
        self.default_tuple()

    # -- reading -------------------------------------------------------------------

    def __getitem__(self, key: RowKey) -> ReadOnlyRow:
        stored = self._rows.get(key)
        if stored is None:
            stored = self.default_tuple()
        # Rows always have one value per column (every write builds them so).
        return ReadOnlyRow(zip(self.columns, stored))  # noqa: B905 - a hot path; lengths match

    def get(self, key: RowKey, default: Any = None) -> Any:
        """The row at `key`, or `default` when there is none (the default row is not used)."""
        stored = self._rows.get(key)
        if stored is None:
            return default
        return ReadOnlyRow(zip(self.columns, stored, strict=True))

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[RowKey]:
        return iter(list(self._rows))

    def row_tuple(self, key: RowKey) -> RowTuple | None:
        """The stored row as a tuple aligned with `columns` (no copy), or None."""
        return self._rows.get(key)

    def rows(self) -> dict[RowKey, RowTuple]:
        """The live row store; callers must not mutate it or await while reading it."""
        return self._rows

    # -- writing -------------------------------------------------------------------

    def __setitem__(self, key: RowKey, row: Mapping[str, Cell]) -> None:
        plain: Any = key  # mypy does not narrow on `type(x) is`
        if type(plain) is str:
            small_key = len(plain) <= self._small_chars
        else:
            small_key = type(plain) is int and _SMALL_INT_NEG < plain < _SMALL_INT
        if not small_key:
            self._check_key(key)
        if not isinstance(row, Mapping):
            raise GridError(
                f"app {self.app_name!r} grid {self.name!r}: a row must be a dict of "
                f"column → value, got {type(row).__name__}"
            )
        index = self._index
        if small_key and len(row) == len(index):
            # The common case, every column given with a small plain value: one pass, no
            # default, nothing measured (the loop inlines _is_small).
            fast: tuple[Any, ...] | None
            try:
                fast = tuple([row[c] for c in self.columns])
            except KeyError:
                fast = None  # a wrong column name: the checks below name it
            if fast is not None:
                small_chars, small_types = self._small_chars, _SMALL_CELL_TYPES
                low, high = _SMALL_INT_NEG, _SMALL_INT
                for value in fast:
                    kind = type(value)
                    if kind is int:
                        if low < value < high:
                            continue
                    elif kind is str:
                        if len(value) <= small_chars:
                            continue
                    elif kind in small_types or (
                        kind is Decimal and len(str(value)) <= small_chars
                    ):
                        continue
                    break
                else:
                    self._write(key, fast)
                    return
        values = list(self.default_tuple())
        for column, value in row.items():
            position = index.get(column)
            if position is None:
                raise GridError(
                    f"app {self.app_name!r} grid {self.name!r} has no column {column!r} "
                    f"(columns: {', '.join(self.columns)})"
                )
            if not isinstance(value, CELL_TYPES):
                raise GridError(
                    f"app {self.app_name!r} grid {self.name!r} column {column!r}: "
                    f"{type(value).__name__} is not a cell value "
                    "(use int, float, str, bool, None, datetime or Decimal)"
                )
            values[position] = value
        checked = tuple(values)
        if not (small_key and all(self._is_small(v) for v in checked)):
            self._check_size(key, checked)
        self._write(key, checked)

    def __delitem__(self, key: RowKey) -> None:
        if key not in self._rows:
            raise KeyError(key)
        self._write(key, None)

    def _write(self, key: RowKey, row: RowTuple | None) -> None:
        undo = _UNDO.get()
        if undo is not None and (self, key) not in undo:
            undo[(self, key)] = (self._rows.get(key, _ABSENT), self._dirty.get(key, _ABSENT))
        if row is None:
            del self._rows[key]
        else:
            self._rows[key] = row
        self._dirty[key] = row

    def _is_small(self, cell: object) -> bool:
        """Whether a key or cell is too small to make a row's changelog record too big."""
        kind = type(cell)
        if kind is int:
            return _SMALL_INT_NEG < cell < _SMALL_INT  # type: ignore[operator]
        if kind is str or kind is Decimal:
            return len(str(cell)) <= self._small_chars
        return kind in _SMALL_CELL_TYPES

    def _check_size(self, key: RowKey, row: RowTuple) -> None:
        """Refuse a row whose changelog record would be over MAX_ROW_BYTES (or unencodable)."""
        # The changelog imports this module: import it here, on the rare big row only.
        from aerogrid.engine.changelog import record_size

        where = f"app {self.app_name!r} grid {self.name!r} row {_short(key)}"
        try:
            size = record_size(self, key, row)
        except (ValueError, OverflowError) as exc:  # an int of over 4,300 digits
            raise GridError(f"{where} cannot be stored: {exc}") from None
        if size > MAX_ROW_BYTES:
            raise GridError(f"{where}: row {size} bytes > limit {MAX_ROW_BYTES} bytes")

    def _check_key(self, key: object) -> None:
        if type(key) is str:
            return
        if isinstance(key, bool) or not isinstance(key, str | int):
            raise GridError(
                f"app {self.app_name!r} grid {self.name!r}: row keys must be str or int, "
                f"got {type(key).__name__}"
            )

    def default_tuple(self) -> RowTuple:
        """The default row, aligned with `columns` (a missing key reads as this)."""
        default = self._default() if callable(self._default) else self._default
        if default is None:
            return (None,) * len(self.columns)
        if not isinstance(default, Mapping):
            raise ConfigurationError(
                f"app {self.app_name!r} grid {self.name!r}: default must return a dict"
            )
        values: list[Cell] = [None] * len(self.columns)
        for column, value in default.items():
            if column not in self._index:
                raise GridError(
                    f"app {self.app_name!r} grid {self.name!r}: default row has unknown "
                    f"column {column!r} (columns: {', '.join(self.columns)})"
                )
            values[self._index[column]] = value
        return tuple(values)

    # -- engine side ---------------------------------------------------------------

    def drain_changes(self) -> dict[RowKey, RowTuple | None]:
        """The rows changed since the last drain (None for a delete), latest value each."""
        changes, self._dirty = self._dirty, {}
        return changes

    def has_changes(self) -> bool:
        return bool(self._dirty)

    def mark_changed(self, key: RowKey) -> None:
        """Publish the row as it is now (or its absence) with the next commit."""
        self._dirty[key] = self._rows.get(key)

    def load(self, key: RowKey, row: RowTuple | None) -> None:
        """Apply a changelog entry during restore: no undo, no publication."""
        if row is None:
            self._rows.pop(key, None)
        else:
            self._rows[key] = row

    def revert(self, key: RowKey, before: tuple[Any, Any]) -> None:
        """Put a row and its pending change back as an undo log noted them (see rollback)."""
        row_before, dirty_before = before
        if row_before is _ABSENT:
            self._rows.pop(key, None)
        else:
            self._rows[key] = row_before
        if dirty_before is _ABSENT:
            self._dirty.pop(key, None)
        else:
            self._dirty[key] = dirty_before

    def __repr__(self) -> str:
        return f"<Grid {self.app_name}.{self.name} columns={list(self.columns)} rows={len(self)}>"

    # Grids are compared by identity (they key the undo log), not by content.
    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        return self is other


def _short(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:59] + "…"


def rollback(undo: UndoLog) -> None:
    """Put every row a failed handler touched back as it was before its record."""
    for (grid, key), before in undo.items():
        grid.revert(key, before)
    undo.clear()
