"""The TUI's parts that need no terminal: form parsing, error lines, the log book, and
`kafka_tools.browse` (what the topic browser reads) against the embedded broker."""

from __future__ import annotations

import json

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from textual.binding import Binding

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import kafka_tools
from aerogrid_devkit.tui.app import AeroGridApp
from aerogrid_devkit.tui.apps.screen import last_error_line, short_error
from aerogrid_devkit.tui.logs.log_book import LogBook, LogEntry
from aerogrid_devkit.tui.topics.browse_form import BrowseFormError, BrowseRequest, read_request
from aerogrid_devkit.tui.topics.browser import preview, record_detail
from aerogrid_devkit.tui.topics.producer import FormError, build_message, parse_headers
from aerogrid_devkit.tui.widgets.nav import SECTIONS
from support.brokers import Broker, TansuBroker


def test_headers_are_name_value_lines() -> None:
    assert parse_headers("a=1\n\n b = x=y \nempty=") == (
        ("a", b"1"),
        ("b", b" x=y "),
        ("empty", b""),
    )
    with pytest.raises(FormError, match=r"header line 2 is not NAME=VALUE: 'oops'"):
        parse_headers("a=1\noops")
    with pytest.raises(FormError, match="header line 1"):
        parse_headers("=value")


def test_a_message_is_built_only_from_a_valid_form() -> None:
    message = build_message("orders", "o1", '{"a": 1}', "h=v", must_be_json=True)
    assert (message.topic, message.key, message.value, message.headers) == (
        "orders",
        b"o1",
        b'{"a": 1}',
        (("h", b"v"),),
    )
    assert build_message(" t ", "", "plain text", "", must_be_json=False).key is None
    with pytest.raises(FormError, match=r"not valid JSON: .*line 1, column 8"):
        build_message("orders", "", '{"a": 1', "", must_be_json=True)
    with pytest.raises(FormError, match="a topic is needed"):
        build_message("  ", "", "{}", "", must_be_json=True)


def test_browse_form_fields() -> None:
    assert read_request("beginning", "", "", "100") == BrowseRequest("beginning", None, 100)
    assert read_request("end", "7", "2", "5") == BrowseRequest("end", 2, 5)
    assert read_request("offset", "42", "", "10") == BrowseRequest(42, None, 10)
    for fields, error in [
        (("offset", "", "", "10"), "type the offset"),
        (("offset", "-1", "", "10"), "type the offset"),
        (("end", "", "x", "10"), "partition is a number"),
        (("end", "", "", "0"), "between 1 and"),
    ]:
        with pytest.raises(BrowseFormError, match=error):
            read_request(*fields)
    assert BrowseRequest(42, 1, 10).describe() == "from offset 42 · partition 1 · up to 10"


def test_the_error_line_of_a_crashed_app() -> None:
    loaded = [
        "starting",
        "error: cannot load app: /w/app.py:2: RuntimeError: not yet",
        "    raise RuntimeError('not yet')",
        "[aerogrid dev] app exited with 2; restarting in 0.5s",
    ]
    assert last_error_line(loaded) == "error: cannot load app: /w/app.py:2: RuntimeError: not yet"
    assert short_error(last_error_line(loaded) or "") == "RuntimeError: not yet"
    traceback = ["Traceback (most recent call last):", '  File "x"', "ValueError: bad", "bye"]
    assert last_error_line(traceback) == "ValueError: bad"
    assert last_error_line(["all good", "[aerogrid dev] error in the supervisor"]) is None
    assert len(short_error("KeyError: " + "x" * 200)) == 44


def test_the_log_book_is_bounded_and_read_by_sequence() -> None:
    book = LogBook(maxlen=3)
    book.add("a", "1")
    entries, seen = book.since(0)
    assert (entries, seen) == ([LogEntry("a", "1")], 1)
    for i in range(2, 7):
        book.add("b", str(i))
    entries, seen = book.since(seen)  # 5 new, 3 kept: the newest 3
    assert [e.line for e in entries] == ["4", "5", "6"] and seen == 6
    assert book.since(seen) == ([], 6)
    assert len(book) == 3


def test_every_section_of_the_nav_bar_is_a_mode_of_the_app() -> None:
    # The modes are declared on the class; the keys 1-4 switch to them by name.
    assert [mode for mode, _, _ in SECTIONS] == list(AeroGridApp.MODES)
    assert AeroGridApp.DEFAULT_MODE == "apps"
    bindings = [b for b in AeroGridApp.BINDINGS if isinstance(b, Binding)]
    assert {b.action for b in bindings if b.action.startswith("section(")} == {
        f"section('{mode}')" for mode in AeroGridApp.MODES
    }


def test_values_are_shown_as_json_when_they_parse() -> None:
    assert preview(b'{"a":  [1, 2]}') == '{"a": [1, 2]}'
    assert preview(b"\xff not utf-8") == "\\xff not utf-8"
    assert preview(None) == "(null)"
    assert preview(b"x" * 100).endswith("…") and len(preview(b"x" * 100)) == 60
    record = kafka_tools.BrowsedRecord("t", 0, 5, None, None, b'{"b": 1}', ())
    assert record_detail(record) is not None


async def test_browse_from_the_beginning_the_end_or_an_offset(
    tansu: Broker, unique_name: str
) -> None:
    settings = BrokerSettings.parse(tansu.bootstrap)
    topic = f"{unique_name}-browse"
    # a topic with three partitions, records in two of them (by key)
    admin = AIOKafkaAdminClient(bootstrap_servers=tansu.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    sent = []
    for i in range(6):
        sent += await kafka_tools.produce(
            settings,
            topic,
            [json.dumps({"n": i}).encode()],
            key=b"even" if i % 2 == 0 else b"odd",
            headers=[("n", str(i).encode())],
        )
    partitions = {p for p, _ in sent}

    def numbers(records: list[kafka_tools.BrowsedRecord]) -> list[int]:
        return [json.loads(r.value or b"")["n"] for r in records]

    assert numbers(await kafka_tools.browse(settings, topic)) == [0, 1, 2, 3, 4, 5]
    assert numbers(await kafka_tools.browse(settings, topic, limit=2)) == [0, 1]
    assert numbers(await kafka_tools.browse(settings, topic, start="end", limit=2)) == [4, 5]
    even = next(p for p, o in sent[::2])
    assert numbers(await kafka_tools.browse(settings, topic, partition=even)) == [0, 2, 4]
    assert numbers(await kafka_tools.browse(settings, topic, partition=even, start=1)) == [2, 4]
    assert await kafka_tools.browse(settings, topic, partition=even, start=99) == []
    (first,) = await kafka_tools.browse(settings, topic, limit=1)
    assert (first.key, first.headers) == (b"even", (("n", b"0"),))
    assert len(partitions) == 2
    with pytest.raises(LookupError, match="no partition 7"):
        await kafka_tools.browse(settings, topic, partition=7)
    with pytest.raises(LookupError, match="no topic named"):
        await kafka_tools.browse(settings, f"{topic}-missing")


async def test_a_broker_without_topics_lists_none(tansu: Broker) -> None:
    """A fresh broker (the topics section's first look at it) lists nothing, no error."""
    fresh = TansuBroker()
    fresh.start()
    try:
        assert await kafka_tools.list_topics(BrokerSettings.parse(fresh.bootstrap)) == []
    finally:
        fresh.stop()
