"""Pick one of an app's grids to open (shown when the app serves more than one)."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class GridPicker(ModalScreen[tuple[str, str] | None]):
    """Dismisses with (app, grid), or None on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, app_name: str, grids: list[tuple[str, str]]) -> None:
        super().__init__()
        self._app_name = app_name
        self._grids = grids

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Grids of {self._app_name}", classes="dialog-title")
            yield OptionList(*(Option(grid, id=str(i)) for i, (_, grid) in enumerate(self._grids)))
            yield Static("enter opens · esc cancels", classes="dialog-detail")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._grids[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
