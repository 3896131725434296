"""The TUI's topic browser on registry formats (Textual pilot, real Apache Kafka, real registry).

Avro orders written by confluent-kafka's AvroSerializer show as JSON with their schema id
and subject, in the list and in the detail; a record whose schema id the registry lacks
shows as stored, with the reason.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from decimal import Decimal

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from rich.console import Console
from textual.widgets import Static

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import kafka_tools
from aerogrid_devkit.brokers import ExternalMode
from aerogrid_devkit.dev_loop import DevLoop
from aerogrid_devkit.tui.app import AeroGridApp
from aerogrid_devkit.tui.topics.browse_form import BrowseRequest
from aerogrid_devkit.tui.topics.browser import TopicBrowserScreen
from aerogrid_devkit.tui.widgets.filter_table import FilterableTable
from aerogrid_devkit.workspace import ExternalConfig
from support.brokers import ApacheKafka
from support.schema_registry import TestRegistry

pytestmark = pytest.mark.timeout(180)

ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "product", "type": "string"},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                   "scale": 2}},
    ],
}  # fmt: skip
SIZE = (150, 45)


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout}s: {what}"
        await asyncio.sleep(0.05)


def static_text(widget: Static) -> str:
    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def cell(screen: TopicBrowserScreen, row: str, column: str) -> str:
    value = screen.query_one(FilterableTable).table.get_cell(row, column)
    return value if isinstance(value, str) else value.plain


def select(screen: TopicBrowserScreen, row: str) -> None:
    table = screen.query_one(FilterableTable).table
    table.move_cursor(row=table.get_row_index(row), animate=False)


async def test_topic_browser_shows_avro_records_decoded_with_id_and_subject(
    apache_kafka: ApacheKafka,
    schema_registry: TestRegistry,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AEROGRID_SCHEMA_REGISTRY", schema_registry.url)
    topic = f"{unique_name}-orders"
    client = SchemaRegistryClient({"url": schema_registry.url})
    serialize = AvroSerializer(client, json.dumps(ORDER))
    value = serialize(
        {"product": "tea", "price": Decimal("3.50")},
        SerializationContext(topic, MessageField.VALUE),
    )
    schema_id = int.from_bytes(value[1:5], "big")
    settings = BrokerSettings.parse(apache_kafka.bootstrap)
    await kafka_tools.produce(settings, topic, [value], key=b"o1")
    await kafka_tools.produce(settings, topic, [b"\x00\x00\x0f\x42\x3f\x06tea"], key=b"o2")

    loop = DevLoop({}, apache_kafka.bootstrap, endpoint_port=0)  # not started: the TUI only looks
    tui = AeroGridApp(loop, broker=ExternalMode(ExternalConfig(settings)))
    async with tui.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        browser = TopicBrowserScreen(topic, BrowseRequest("beginning"))
        await tui.push_screen(browser)
        await until(lambda: len(browser.records) == 2, what="records read")
        rows = {r.key: f"{r.partition}:{r.offset}" for r in browser.records.values()}
        good, bad = rows[b"o1"], rows[b"o2"]
        # the list: the subject is the topic's own, so the cell leaves it out
        shown = f'[avro id={schema_id}] {{"product": "tea", "price": "3.50"}}'
        assert cell(browser, good, "value") == shown
        assert cell(browser, bad, "value").startswith("(not decoded) \\x00\\x00\\x0fB?")

        select(browser, good)
        await pilot.pause()
        detail = static_text(browser.query_one(".record", Static))
        assert f"Value (avro · schema id {schema_id} · subject {topic}-value)" in detail
        assert '"product": "tea",' in detail and '"price": "3.50"' in detail  # pretty-printed

        select(browser, bad)
        await pilot.pause()
        detail = static_text(browser.query_one(".record", Static))
        assert "Value (not decoded: schema id 999999 is not in the registry)" in detail
        await pilot.press("escape", "q")
