"""Pick the cloud target to promote to (shown when the workspace names several)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget

__all__ = ["TargetPicker"]


class TargetPicker(ModalScreen[str | None]):
    """Dismisses with the name of the chosen cloud target, or None on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, app_name: str, targets: Mapping[str, CloudTarget]) -> None:
        super().__init__()
        self._app_name = app_name
        self._names = sorted(targets)
        self._targets = targets

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Promote {self._app_name} to", classes="dialog-title")
            yield OptionList(
                *(
                    Option(
                        f"{name}  (tenant {self._targets[name].tenant}, "
                        f"context {self._targets[name].context or 'current'})",
                        id=name,
                    )
                    for name in self._names
                )
            )
            yield Static("enter promotes · esc cancels", classes="dialog-detail")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self._names[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
