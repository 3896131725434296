"""The topics section: every topic with its partitions, end offsets and record counts.

The numbers are right on every broker (`aerogrid_devkit.topic_offsets`); a count shown as
"≤N" is an upper bound, for a topic with too many offsets to read each time.

Listed in a worker (on open, with `r`, and every few seconds while the section is
shown); a broker that cannot be reached is said in the screen, which keeps the last list.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from aerogrid_devkit import kafka_tools
from aerogrid_devkit.kafka_tools import TopicInfo
from aerogrid_devkit.tui.screens.section import SectionScreen, describe_error
from aerogrid_devkit.tui.topics.browse_form import BrowseForm, BrowseRequest
from aerogrid_devkit.tui.topics.browser import TopicBrowserScreen
from aerogrid_devkit.tui.widgets.filter_table import FilterableTable, TableRow

LIST_TIMEOUT = 20.0
COLUMNS = (
    ("topic", "Topic"),
    ("partitions", "Partitions"),
    ("ends", "End offsets"),
    ("records", "Records"),
)
#: End offsets listed one by one up to this many partitions (a total beyond).
SHOWN_ENDS = 6


def topic_row(topic: TopicInfo) -> TableRow:
    ends = [f"{p}:{topic.ends[p]:,}" for p in sorted(topic.ends)]
    shown = "  ".join(ends[:SHOWN_ENDS]) + (
        f"  +{len(ends) - SHOWN_ENDS}" if ends[SHOWN_ENDS:] else ""
    )
    internal = topic.name.startswith("__")
    return TableRow(
        topic.name,
        (
            Text(topic.name, style="dim" if internal else "bold"),
            Text(str(topic.partitions), justify="right"),
            shown,
            Text(
                f"{topic.records:,}" if topic.records_exact else f"≤{topic.records:,}",
                justify="right",
                style="" if topic.records_exact else "dim",
            ),
        ),
    )


class TopicsScreen(SectionScreen):
    """Topics of the broker; enter browses one, `n` produces a message, `r` lists again."""

    SECTION = "topics"
    REFRESH_SECONDS: ClassVar[float] = 5.0
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "browse", "Browse", tooltip="Browse the topic's messages"),
        Binding("n", "produce", "New message", tooltip="Produce a message (a form)"),
        Binding("r", "reload", "Reload", tooltip="List the topics again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.topics: list[TopicInfo] = []
        self._loading = False

    def compose_body(self) -> ComposeResult:
        yield Static(classes="error")
        yield FilterableTable(COLUMNS, title="Topics", empty="listing topics…")

    def on_mount(self) -> None:
        self.query_one(".error", Static).display = False
        self.query_one(FilterableTable).focus_table()
        self.action_reload()
        self.set_interval(self.REFRESH_SECONDS, self._auto_reload, name="topics-refresh")

    def _auto_reload(self) -> None:
        if self.is_current:
            self.action_reload()

    def action_reload(self) -> None:
        if not self._loading:
            self._loading = True
            self.run_worker(self._load(), group="topics", exclusive=True)

    async def _load(self) -> None:
        aero = self.aero
        try:
            settings = await asyncio.to_thread(aero.broker.settings)
            topics = await asyncio.wait_for(kafka_tools.list_topics(settings), LIST_TIMEOUT)
        except Exception as exc:  # shown in the screen, which keeps the last list
            self.show_error(f"cannot list topics on {aero.broker.uri}: {describe_error(exc)}")
            self.query_one(FilterableTable).set_empty_text("no topics listed (see above)")
            return
        finally:
            self._loading = False
        self.show_topics(topics)

    def show_topics(self, topics: list[TopicInfo]) -> None:
        self.topics = topics
        self.show_error("")
        table = self.query_one(FilterableTable)
        table.set_empty_text("no topics yet (n produces a message)")
        table.set_rows([topic_row(t) for t in topics])

    def show_error(self, message: str) -> None:
        error = self.query_one(".error", Static)
        error.update(Text(message, style="bold red"))
        error.display = bool(message)

    @on(DataTable.RowSelected)
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_browse()

    def action_browse(self) -> None:
        topic = self.query_one(FilterableTable).selected
        if topic is None:
            self.notify("no topic selected", severity="warning")
            return

        def chosen(request: BrowseRequest | None) -> None:
            if request is not None:
                self.app.push_screen(TopicBrowserScreen(topic, request))

        self.app.push_screen(BrowseForm(topic), chosen)

    def action_produce(self) -> None:
        def sent(result: tuple[int, int] | None) -> None:
            if result is not None:
                self.action_reload()

        self.aero.produce_message(self.query_one(FilterableTable).selected or "", sent)
