"""The logs section: the output of every app (or one), followed, paused and searched.

Lines are never written one by one: a timer takes what the log book gained since the
last tick (ten times a second) and writes it in one batch to Textual's `Log`, which
draws only the visible lines and keeps a bounded number, so thousands of lines a second
cost a few batched writes.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from typing import ClassVar

from rich.highlighter import Highlighter
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Log, Static

from aerogrid_devkit.tui.logs.log_book import LogEntry
from aerogrid_devkit.tui.screens.section import SectionScreen
from aerogrid_devkit.tui.session import LOOP_LOG
from aerogrid_devkit.tui.widgets.filter_table import FilterBar, matches

#: Lines the view keeps (older ones scroll away; the log book keeps more).
MAX_LINES = 10_000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_ERROR_WORDS = re.compile(r"\b\w*(?:Error|Exception)\b|\berror\b|Traceback|\bcrashed\b")
_SOURCE_COLOURS = ("cyan", "magenta", "green", "blue", "yellow", "bright_cyan", "bright_magenta")
SEPARATOR = " │ "


def source_colour(source: str) -> str:
    """A colour per app name, the same on every run (a hash, not the order of arrival)."""
    if source == LOOP_LOG:
        return "bold white"
    return _SOURCE_COLOURS[zlib.crc32(source.encode()) % len(_SOURCE_COLOURS)]


class LogHighlighter(Highlighter):
    """Colours the app name, errors, the supervisor's own lines and the search matches."""

    def __init__(self) -> None:
        self.search = ""

    def highlight(self, text: Text) -> None:
        plain = text.plain
        body = 0
        head, sep, _ = plain.partition(SEPARATOR)
        if sep and " " not in head.strip():
            text.stylize(source_colour(head.strip()), 0, len(head))
            text.stylize("dim", len(head), len(head) + len(sep))
            body = len(head) + len(sep)
        if plain.startswith("[aerogrid dev]", body):
            text.stylize("dim italic", body)
        for match in _ERROR_WORDS.finditer(plain, body):
            text.stylize("bold red", match.start(), match.end())
        for word in self.search.split():
            text.highlight_words([word], "black on yellow", case_sensitive=False)


class LogsScreen(SectionScreen):
    """All apps' output, or one app's; `f` follow, `space` pause, `/` search, `a` source."""

    SECTION = "logs"
    TICK_SECONDS: ClassVar[float] = 0.1
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f", "follow", "Follow", tooltip="Follow new lines on/off"),
        Binding("space", "pause", "Pause", tooltip="Pause/resume the view"),
        Binding("slash", "search", "Search", tooltip="Search: matching lines only"),
        Binding("a", "next_source", "App", tooltip="Next source: all, each app, the loop"),
        Binding("c", "clear", "Clear", tooltip="Clear the view"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.following = True
        self.paused = False
        self.search = ""
        #: How many log book lines this view has taken in, and where `c` cleared it.
        self._seen = 0
        self._floor = 0
        self._shown = 0
        self._highlighter = LogHighlighter()

    def compose_body(self) -> ComposeResult:
        yield Static(classes="logs-status")
        yield FilterBar(placeholder="search (enter keeps it, esc clears it)", classes="filter-bar")
        log = Log(highlight=True, max_lines=MAX_LINES, classes="logs panel")
        log.highlighter = self._highlighter
        yield log

    def on_mount(self) -> None:
        self.query_one(FilterBar).display = False
        self._rebuild()
        self.set_interval(self.TICK_SECONDS, self._tick, name="logs-tick")
        self.query_one(Log).focus()

    # -- what is shown -------------------------------------------------------------

    def show_source(self, source: str | None) -> None:
        """Show one app's lines (or everyone's, with None)."""
        self.source = source
        self._rebuild()

    def _wanted(self, entries: Iterable[LogEntry]) -> list[str]:
        source, search = self.source, self.search.casefold()
        lines = []
        width = self._name_width()
        for entry in entries:
            if source is not None and entry.source != source:
                continue
            line = _ANSI.sub("", entry.line)
            if source is None:
                line = f"{entry.source:<{width}}{SEPARATOR}{line}"
            if search and not matches(line.casefold(), search):
                continue
            lines.append(line)
        return lines

    def _name_width(self) -> int:
        names = [*self.aero.devloop.supervisor.apps, LOOP_LOG]
        return min(20, max(len(n) for n in names))

    def _rebuild(self) -> None:
        log = self.query_one(Log)
        self._highlighter.search = self.search
        entries, self._seen = self.aero.logbook.since(self._floor)
        lines = self._wanted(entries)[-MAX_LINES:]
        log.clear()
        log.write_lines(lines, scroll_end=self.following)
        self._shown = len(lines)
        self._show_status()

    def _tick(self) -> None:
        if self.paused:
            self._show_status()
            return
        entries, self._seen = self.aero.logbook.since(self._seen)
        if entries:
            lines = self._wanted(entries)
            if lines:
                self.query_one(Log).write_lines(lines[-MAX_LINES:])
                self._shown = min(MAX_LINES, self._shown + len(lines))
            self._show_status()

    def _show_status(self) -> None:
        text = Text()
        text.append(self.source or "all apps", style="bold")
        if self.paused:
            waiting = self.aero.logbook.total - self._seen
            text.append("  ⏸ paused", style="bold yellow")
            text.append(f" ({waiting:,} new lines)" if waiting else "", style="yellow")
        elif self.following:
            text.append("  ⇣ following", style="green")
        else:
            text.append("  ▪ not following", style="dim")
        text.append(f"  {self._shown:,} lines", style="dim")
        if self.search:
            text.append("  search: ", style="dim")
            text.append(self.search, style="black on yellow")
        self.query_one(".logs-status", Static).update(text)

    # -- keys ----------------------------------------------------------------------

    def action_follow(self) -> None:
        self.following = not self.following
        log = self.query_one(Log)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        self._show_status()

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self._tick()
        self._show_status()

    def action_search(self) -> None:
        bar = self.query_one(FilterBar)
        bar.value = self.search
        bar.display = True
        bar.focus()

    def action_clear_search(self) -> None:
        self._set_search("")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_search":
            return bool(self.search)
        return True

    def action_next_source(self) -> None:
        sources: list[str | None] = [None, *sorted(self.aero.devloop.supervisor.apps), LOOP_LOG]
        at = sources.index(self.source) if self.source in sources else 0
        self.show_source(sources[(at + 1) % len(sources)])

    def action_clear(self) -> None:
        self._floor = self.aero.logbook.total
        self._rebuild()

    @on(Input.Changed, ".filter-bar")
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        self._set_search(event.value)

    @on(Input.Submitted, ".filter-bar")
    def _kept(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(FilterBar).display = False
        self._set_search(event.value)
        self.query_one(Log).focus()

    def _set_search(self, search: str) -> None:
        if search != self.search:
            self.search = search
            self._rebuild()
