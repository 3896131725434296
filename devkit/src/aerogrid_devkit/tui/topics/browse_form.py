"""Where to start browsing a topic: its beginning, its end or an offset (and how much)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from aerogrid_devkit.kafka_tools import BrowseStart

STARTS = (
    ("beginning", "from the beginning"),
    ("end", "from the end (the latest)"),
    ("offset", "from an offset"),
)
MAX_LIMIT = 10_000


@dataclass(frozen=True)
class BrowseRequest:
    start: BrowseStart
    partition: int | None = None
    limit: int = 100

    def describe(self) -> str:
        where = {"beginning": "from the beginning", "end": "from the end"}.get(
            str(self.start), f"from offset {self.start}"
        )
        part = "every partition" if self.partition is None else f"partition {self.partition}"
        return f"{where} · {part} · up to {self.limit}"


class BrowseFormError(ValueError):
    """A field of the browse form that does not make sense."""


def read_request(start: str, offset: str, partition: str, limit: str) -> BrowseRequest:
    """The request the form's fields describe, or BrowseFormError saying what to fix."""
    where: BrowseStart
    if start == "offset":
        if not offset.strip().isdigit():
            raise BrowseFormError("type the offset to start from (a whole number, 0 or more)")
        where = int(offset)
    else:
        where = "end" if start == "end" else "beginning"
    part: int | None = None
    if partition.strip():
        if not partition.strip().isdigit():
            raise BrowseFormError("the partition is a number (leave it empty for all)")
        part = int(partition)
    if not limit.strip().isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
        raise BrowseFormError(f"show between 1 and {MAX_LIMIT:,} messages")
    return BrowseRequest(where, part, int(limit))


class BrowseForm(ModalScreen[BrowseRequest | None]):
    """Pick where to start (enter) with optional offset, partition and limit (tab to them)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, topic: str, previous: BrowseRequest | None = None) -> None:
        super().__init__()
        self._topic = topic
        self._previous = previous or BrowseRequest("beginning")

    def compose(self) -> ComposeResult:
        previous = self._previous
        offset = "" if isinstance(previous.start, str) else str(previous.start)
        with Vertical(classes="dialog browse-form"):
            yield Static(f"Browse {self._topic}", classes="dialog-title")
            yield OptionList(*(Option(label, id=key) for key, label in STARTS))
            with Horizontal(classes="field"):
                yield Label("Offset", classes="field-label")
                yield Input(offset, placeholder="for 'from an offset'", id="offset", compact=True)
            with Horizontal(classes="field"):
                yield Label("Partition", classes="field-label")
                part = "" if previous.partition is None else str(previous.partition)
                yield Input(part, placeholder="all", id="partition", compact=True)
            with Horizontal(classes="field"):
                yield Label("Limit", classes="field-label")
                yield Input(str(previous.limit), id="limit", compact=True)
            yield Static(classes="error")
            yield Static(
                Text.from_markup("[b]enter[/b] browse   [b]tab[/b] fields   [b]esc[/b] cancel"),
                classes="dialog-detail",
            )

    def on_mount(self) -> None:
        self.query_one(".error", Static).display = False
        options = self.query_one(OptionList)
        start = self._previous.start
        options.highlighted = [k for k, _ in STARTS].index(
            start if isinstance(start, str) else "offset"
        )
        options.focus()

    @on(OptionList.OptionSelected)
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        offset = self.query_one("#offset", Input)
        if event.option.id == "offset" and not offset.value.strip():
            offset.focus()  # it needs an offset first
            return
        self._submit()

    @on(Input.Submitted)
    def _entered(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def _submit(self) -> None:
        options = self.query_one(OptionList)
        index = options.highlighted if options.highlighted is not None else 0
        try:
            request = read_request(
                STARTS[index][0],
                self.query_one("#offset", Input).value,
                self.query_one("#partition", Input).value,
                self.query_one("#limit", Input).value,
            )
        except BrowseFormError as exc:
            error = self.query_one(".error", Static)
            error.update(Text(str(exc), style="bold red"))
            error.display = True
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
