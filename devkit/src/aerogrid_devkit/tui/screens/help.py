"""`?`: every key of the TUI, by where it works, read from the bindings themselves.

The lists come from the screens' own BINDINGS (passed in by the app), so the help can
never drift from what the keys do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

#: (where, the bindings that work there)
KeyGroup = tuple[str, Sequence[BindingType]]


class HelpScreen(ModalScreen[None]):
    """A scrollable list of every key; escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def __init__(self, groups: Sequence[KeyGroup]) -> None:
        super().__init__()
        self._groups = groups

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Static("Keys", classes="dialog-title")
            with VerticalScroll():
                yield Static(self._render_keys())
            yield Static("esc closes · ctrl+p finds any action by name", classes="dialog-detail")

    def _render_keys(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", justify="right")
        table.add_column()
        for number, (where, bindings) in enumerate(self._groups):
            if number:
                table.add_row("", "")
            table.add_row("", Text(where, style="bold underline"))
            keys: dict[str, list[str]] = {}
            for binding in Binding.make_bindings(bindings):
                description = binding.tooltip or binding.description or binding.action
                keys.setdefault(description, []).append(self.app.get_key_display(binding))
            for description, shown in keys.items():
                table.add_row(" ".join(shown), description)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
