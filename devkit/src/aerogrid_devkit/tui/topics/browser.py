"""The topic browser: the messages of a topic, and the one under the cursor in full.

Values that parse as JSON are pretty-printed; Avro, Protobuf and JSON Schema records (the
Confluent wire format) are decoded with the schema registry and shown as JSON after their
`[avro id=3 orders-value]` label; anything else is shown as text (bytes that are not UTF-8
escaped), so a malformed record is as readable as a good one. Big values,
keys and headers are shown cut (saying how big they are), so a megabyte dead letter or
deeply nested JSON opens as fast as any other record.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.console import Group, RenderableType
from rich.json import JSON
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from aerogrid_devkit import kafka_tools
from aerogrid_devkit.kafka_tools import BrowsedRecord
from aerogrid_devkit.registry_records.browsed import RecordFormats, decode_records
from aerogrid_devkit.registry_records.decode import Decoded, Undecoded, escaped
from aerogrid_devkit.tui.screens.section import SectionScreen, describe_error
from aerogrid_devkit.tui.topics.browse_form import BrowseForm, BrowseRequest
from aerogrid_devkit.tui.widgets.filter_table import FilterableTable, TableRow

BROWSE_TIMEOUT = 30.0
PREVIEW = 60
#: Values up to this size are parsed for the one-line preview.
PREVIEW_PARSE_BYTES = 4096
#: Values up to this size are pretty-printed as JSON in the detail; bigger ones are text.
PRETTY_BYTES = 64 * 1024
#: How much of a value, key or header value the detail shows.
DETAIL_BYTES = 64 * 1024
HEADER_BYTES = 1024
COLUMNS = (
    ("partition", "Partition"),
    ("offset", "Offset"),
    ("key", "Key"),
    ("value", "Value"),
    ("headers", "Headers"),
)


def text_of(data: bytes | None, limit: int | None = None) -> str:
    """The bytes as text (not UTF-8: escaped), the first `limit` bytes with a note if cut."""
    if data is None:
        return ""
    if limit is None or len(data) <= limit:
        return data.decode("utf-8", errors="backslashreplace")
    shown = data[:limit].decode("utf-8", errors="backslashreplace")
    return f"{shown}… ({len(data) - limit:,} more bytes, {len(data):,} in all)"


def parsed_json(data: bytes | None) -> tuple[bool, Any]:
    """(True, the value) when the bytes are JSON small and shallow enough to pretty-print."""
    if data is None or len(data) > PRETTY_BYTES:
        return False, None
    return kafka_tools.parse_json(data)


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


def preview(data: bytes | None, found: Decoded | Undecoded | None = None) -> str:
    """The value on one line: compact JSON (labelled if decoded), or the text, cut to fit."""
    if isinstance(found, Decoded):
        return one_line(f"{found.brief_label} {json.dumps(found.value, ensure_ascii=False)}")
    if isinstance(found, Undecoded) and data is not None:
        return one_line(f"(not decoded) {escaped(data[: PREVIEW * 4])}")
    if data is None:
        return "(null)"
    if len(data) <= PREVIEW_PARSE_BYTES:
        is_json, value = kafka_tools.parse_json(data)
        if is_json:
            return one_line(json.dumps(value, ensure_ascii=False))
    return one_line(text_of(data[: PREVIEW * 4]))


def record_row(record: BrowsedRecord, formats: RecordFormats | None = None) -> TableRow:
    formats = formats or RecordFormats()
    return TableRow(
        f"{record.partition}:{record.offset}",
        (
            str(record.partition),
            str(record.offset),
            (
                preview(record.key, formats.key)
                if formats.key is not None
                else one_line(text_of(record.key[: PREVIEW * 4]))
            )
            if record.key is not None
            else Text("(none)", style="dim"),
            preview(record.value, formats.value),
            str(len(record.headers)) if record.headers else "",
        ),
    )


def record_detail(record: BrowsedRecord, formats: RecordFormats | None = None) -> RenderableType:
    """Everything about one record: where it is, its key and headers, its value in full."""
    formats = formats or RecordFormats()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="dim", justify="right")
    facts.add_column()
    where = f"partition {record.partition} · offset {record.offset}"
    if record.timestamp is not None:
        when = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        where += f" · {when:%Y-%m-%d %H:%M:%S} UTC"
    facts.add_row("Record", where)
    key: RenderableType = (
        text_of(record.key, HEADER_BYTES) if record.key is not None else Text("(none)", "dim")
    )
    if isinstance(formats.key, Decoded):
        key = Text(f"{formats.key.label} {json.dumps(formats.key.value, ensure_ascii=False)}")
    elif isinstance(formats.key, Undecoded) and record.key is not None:
        key = Text(f"{escaped(record.key[:HEADER_BYTES])} ({formats.key.reason})")
    facts.add_row("Key", key)
    if record.headers:
        for i, (name, header) in enumerate(record.headers):
            line = f"{name[:HEADER_BYTES]} = {text_of(header, HEADER_BYTES)}"
            facts.add_row("Headers" if i == 0 else "", Text(line))
    else:
        facts.add_row("Headers", Text("(none)", style="dim"))
    if isinstance(formats.value, Decoded):
        found = formats.value
        subject = f" · subject {found.subject}" if found.subject else ""
        label = f"Value ({found.format} · schema id {found.schema_id}{subject})"
        shown = JSON(json.dumps(found.value, ensure_ascii=False), indent=2)
        return Group(facts, Text(""), Text(label, style="bold"), shown)
    if isinstance(formats.value, Undecoded) and record.value is not None:
        label = f"Value (not decoded: {formats.value.reason})"
        raw = Text(escaped(record.value[:DETAIL_BYTES]))
        return Group(facts, Text(""), Text(label, style="bold"), raw)
    is_json, _ = parsed_json(record.value)
    if record.value is None:
        value: RenderableType = Text("(null: a tombstone)", style="dim")
    elif is_json:
        value = JSON(text_of(record.value), indent=2)
    else:
        value = Text(text_of(record.value, DETAIL_BYTES))
    label = "Value (JSON)" if is_json else "Value"
    return Group(facts, Text(""), Text(label, style="bold"), value)


class TopicBrowserScreen(SectionScreen):
    """Messages of one topic; `o` chooses where to start, `b`/`e` jump, `n` produces."""

    SECTION = "topics"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", tooltip="Back to the topics"),
        Binding("o", "choose", "From…", tooltip="Start from: beginning, end, offset"),
        Binding("b", "from_beginning", "Beginning", tooltip="The first messages"),
        Binding("e", "from_end", "End", tooltip="The latest messages"),
        Binding("r", "reload", "Reload", tooltip="Read them again"),
        Binding("n", "produce", "New message", tooltip="Produce a message to this topic"),
    ]

    def __init__(self, topic: str, request: BrowseRequest) -> None:
        super().__init__()
        self.topic = topic
        self.request = request
        self.records: dict[str, BrowsedRecord] = {}
        #: Registry-format records decoded, by row key.
        self.formats: dict[str, RecordFormats] = {}

    def compose_body(self) -> ComposeResult:
        yield Static(classes="browse-status")
        yield FilterableTable(COLUMNS, title=f"Messages of {self.topic}", empty="no messages")
        with VerticalScroll(classes="panel record-detail"):
            yield Static(classes="record")

    def on_mount(self) -> None:
        self.query_one(FilterableTable).focus_table()
        self.load(self.request)

    def load(self, request: BrowseRequest) -> None:
        self.request = request
        self._status(Text(f"{self.topic} · {request.describe()} · reading…", style="yellow"))
        self.run_worker(self._load(request), group="browse", exclusive=True)

    async def _load(self, request: BrowseRequest) -> None:
        try:
            settings = await asyncio.to_thread(self.aero.broker.settings)
            records = await asyncio.wait_for(
                kafka_tools.browse(
                    settings,
                    self.topic,
                    start=request.start,
                    partition=request.partition,
                    limit=request.limit,
                ),
                BROWSE_TIMEOUT,
            )
            formats = await decode_records(self.topic, records)
        except Exception as exc:  # shown in the screen, which stays usable
            self._status(Text(f"cannot read {self.topic}: {describe_error(exc)}", style="bold red"))
            return
        self.show_records(records, formats)

    def show_records(
        self, records: list[BrowsedRecord], formats: dict[str, RecordFormats] | None = None
    ) -> None:
        self.records = {f"{r.partition}:{r.offset}": r for r in records}
        self.formats = formats or {}
        table = self.query_one(FilterableTable)
        table.set_rows([record_row(r, self.formats.get(k)) for k, r in self.records.items()])
        count = f"{len(records):,} message" + ("" if len(records) == 1 else "s")
        self._status(Text(f"{self.topic} · {self.request.describe()} · {count}"))
        self._show_selected()

    def _status(self, text: Text) -> None:
        self.query_one(".browse-status", Static).update(text)

    @on(DataTable.RowHighlighted)
    def _show_selected(self) -> None:
        key = self.query_one(FilterableTable).selected
        record = self.records.get(key) if key else None
        detail = self.query_one(".record", Static)
        if record is None or key is None:
            detail.update(Text("no message selected", "dim"))
            return
        detail.update(record_detail(record, self.formats.get(key)))

    def action_back(self) -> None:
        self.dismiss()

    def action_choose(self) -> None:
        def chosen(request: BrowseRequest | None) -> None:
            if request is not None:
                self.load(request)

        self.app.push_screen(BrowseForm(self.topic, self.request), chosen)

    def action_from_beginning(self) -> None:
        self.load(BrowseRequest("beginning", self.request.partition, self.request.limit))

    def action_from_end(self) -> None:
        self.load(BrowseRequest("end", self.request.partition, self.request.limit))

    def action_reload(self) -> None:
        self.load(self.request)

    def action_produce(self) -> None:
        def sent(result: tuple[int, int] | None) -> None:
            if result is not None:
                self.load(self.request)

        self.aero.produce_message(self.topic, sent)
