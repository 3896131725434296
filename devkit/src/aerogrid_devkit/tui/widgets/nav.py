"""The top line of every section: where you are, the keys to the others, and what runs."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

#: The sections of the TUI: (mode name, key, label), in key order.
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("apps", "1", "Apps"),
    ("logs", "2", "Logs"),
    ("topics", "3", "Topics"),
    ("broker", "4", "Broker"),
)


def sections_text(current: str, title: str) -> Text:
    text = Text()
    text.append(f" {title} ", style="bold reverse")
    for mode, key, label in SECTIONS:
        text.append("  ")
        if mode == current:
            text.append(f"{key} {label}", style="bold reverse")
        else:
            text.append(key, style="bold")
            text.append(f" {label}", style="dim")
    return text


class NavBar(Horizontal):
    """Section tabs on the left, endpoint and broker on the right."""

    def __init__(self, current: str) -> None:
        super().__init__(classes="nav-bar")
        self._current = current

    def compose(self) -> ComposeResult:
        yield Static(classes="nav-sections")
        yield Static(classes="nav-info")

    def show(self, title: str, info: Text) -> None:
        self.query_one(".nav-sections", Static).update(sections_text(self._current, title))
        self.query_one(".nav-info", Static).update(info)
