"""A table of keyed rows with a `/` filter: the list widget of the apps and topics screens.

Rows are replaced wholesale (`set_rows`) by whoever owns the data; the table redraws only
the cells that changed when the same rows are shown, and keeps the cursor on the same
row key across refreshes and filter changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

Cell = str | Text


@dataclass(frozen=True)
class TableRow:
    """One row: its key (stable across refreshes) and its cells, in column order."""

    key: str
    cells: tuple[Cell, ...]

    def haystack(self) -> str:
        return " ".join(c.plain if isinstance(c, Text) else c for c in self.cells).casefold()


def matches(haystack: str, query: str) -> bool:
    """Every word of the query appears in the text (case-insensitive)."""
    return all(word in haystack for word in query.casefold().split())


class FilterBar(Input):
    """The filter line: filters as you type, enter keeps the filter, escape clears it."""

    BINDINGS = [Binding("escape", "clear", "Clear filter", show=False)]

    def action_clear(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, ""))


class FilterableTable(Vertical):
    """A row-cursor DataTable under an optional filter line (opened with `/`)."""

    BINDINGS = [
        Binding("slash", "open_filter", "Filter", tooltip="Filter rows (every word must match)"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    filter_text: reactive[str] = reactive("", init=False)

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        title: str,
        empty: str = "nothing here yet",
        id: str | None = None,
    ) -> None:
        super().__init__(id=id, classes="filterable")
        self._columns = list(columns)
        self._title = title
        self._empty_text = empty
        self._rows: list[tuple[TableRow, str]] = []
        self._shown: list[TableRow] = []

    def compose(self) -> ComposeResult:
        yield FilterBar(placeholder="filter (enter keeps it, esc clears it)", classes="filter-bar")
        yield DataTable[Cell](cursor_type="row", zebra_stripes=True)
        yield Static(self._empty_text, classes="empty")

    def on_mount(self) -> None:
        for key, label in self._columns:
            self.table.add_column(label, key=key)
        self.query_one(FilterBar).display = False
        self.border_title = self._title
        self._render_rows()

    @property
    def table(self) -> DataTable[Cell]:
        return self.query_one(DataTable)

    @property
    def selected(self) -> str | None:
        """The key of the row under the cursor, if any row is shown."""
        table = self.table
        if not self._shown or not table.is_valid_row_index(table.cursor_row):
            return None
        return self._shown[table.cursor_row].key

    def set_rows(self, rows: Sequence[TableRow]) -> None:
        self._rows = [(row, row.haystack()) for row in rows]
        if self.is_mounted:
            self._render_rows()

    def set_empty_text(self, text: str) -> None:
        self._empty_text = text
        if self.is_mounted:
            self.query_one(".empty", Static).update(text)

    def focus_table(self) -> None:
        self.table.focus()

    # -- filter --------------------------------------------------------------------

    def action_open_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.display = True
        bar.focus()

    def action_clear_filter(self) -> None:
        bar = self.query_one(FilterBar)
        bar.value = ""
        bar.display = False
        self.filter_text = ""
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Escape clears a filter only when there is one; otherwise it means "back".
        if action == "clear_filter":
            return bool(self.filter_text)
        return True

    @on(Input.Changed, ".filter-bar")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self.filter_text = event.value

    @on(Input.Submitted, ".filter-bar")
    def _kept(self, event: Input.Submitted) -> None:
        event.stop()
        self.filter_text = event.value
        self.query_one(FilterBar).display = False
        self.table.focus()

    def watch_filter_text(self) -> None:
        self._render_rows()

    # -- drawing -------------------------------------------------------------------

    def _render_rows(self) -> None:
        query = self.filter_text
        visible = [row for row, hay in self._rows if matches(hay, query)]
        table = self.table
        if [r.key for r in visible] == [r.key for r in self._shown]:
            for old, new in zip(self._shown, visible, strict=True):
                if old.cells != new.cells:
                    for (column, _), before, after in zip(
                        self._columns, old.cells, new.cells, strict=True
                    ):
                        if before != after:
                            table.update_cell(new.key, column, after, update_width=True)
        else:
            selected = self.selected
            table.clear()
            for row in visible:
                table.add_row(*row.cells, key=row.key)
            keys = [r.key for r in visible]
            if selected in keys:
                table.move_cursor(row=keys.index(selected), animate=False)
        self._shown = visible
        self.query_one(".empty", Static).display = not visible
        count = f"{len(visible)} of {len(self._rows)}" if query else f"{len(self._rows)}"
        self.border_subtitle = f"/{query}  {count}" if query else count
