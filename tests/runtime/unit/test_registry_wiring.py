"""Registry formats in the SDK and the engine, without a registry running: declarations, the
missing-registry error, and the pause policy against a registry port that refuses connections."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

import aerogrid
from aerogrid import metrics
from aerogrid.engine.processor import RawRecord
from aerogrid.engine.schema_loading import SchemaLoader
from aerogrid.errors import ConfigurationError
from aerogrid.schemas.errors import SchemaNotLoaded
from aerogrid.schemas.wire import frame
from aerogrid.testing import AppTester


class Order(aerogrid.Record):
    product: str
    quantity: int


def sample(name: str, app: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, {"app": app}) or 0.0


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback URL nothing listens on (a port bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}/apis/ccompat/v7"


@pytest.fixture(autouse=True)
def _no_registry_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AEROGRID_SCHEMA_REGISTRY", raising=False)


def test_formats_and_strategies_are_checked_when_declared() -> None:
    app = aerogrid.App("wiring")
    with pytest.raises(ConfigurationError, match="unknown record format 'xml'"):
        app.topic("t1", value_type=Order, format="xml")
    with pytest.raises(ConfigurationError, match="unknown subject_strategy"):
        app.topic("t2", value_type=Order, format="avro", subject_strategy="by-name")
    topic = app.topic(
        "t3", value_type=Order, format="avro", subject_strategy="TopicRecordNameStrategy"
    )
    assert topic.subject_strategy == "topic-record"
    assert app.registry_topics() == [topic]
    with pytest.raises(ConfigurationError, match="twice with different types or formats"):
        app.topic("t3", value_type=Order, format="json")
    assert app.topic("plain", value_type=Order).uses_registry is False


def test_a_registry_topic_has_no_codec_until_an_app_runs_with_a_registry() -> None:
    app = aerogrid.App("wiring")
    topic = app.topic("orders", value_type=Order, format="avro")
    with pytest.raises(ConfigurationError, match="AEROGRID_SCHEMA_REGISTRY"):
        topic.value_codec.decode(b"\x00\x00\x00\x00\x01")
    assert app.schema_registry is None


async def test_no_registry_configured_names_the_variable() -> None:
    app = aerogrid.App("wiring")
    app.topic("orders", value_type=Order, format="protobuf")
    with pytest.raises(
        ConfigurationError,
        match=r"^no schema registry is configured for app 'wiring'.*'orders' \(protobuf\).*"
        r"AEROGRID_SCHEMA_REGISTRY",
    ):
        async with AppTester(app):
            pass


def test_the_registry_comes_from_the_app_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    explicit = aerogrid.App("wiring", schema_registry="http://user:secret@127.0.0.1:1/ccompat")
    settings = explicit.schema_registry
    assert settings is not None
    assert (settings.url, settings.username) == ("http://127.0.0.1:1/ccompat", "user")
    monkeypatch.setenv("AEROGRID_SCHEMA_REGISTRY", "https://registry.example:8081")
    from_env = aerogrid.App("wiring").schema_registry
    assert from_env is not None and from_env.url == "https://registry.example:8081"
    with pytest.raises(ConfigurationError, match="not http"):
        _ = aerogrid.App("wiring", schema_registry="ftp://registry").schema_registry


async def test_records_wait_while_the_registry_refuses_connections(refused_url: str) -> None:
    """The pause policy on a real refused connection: no decode, no dead letter, counted,
    each attempt bounded by one backoff delay, and a stop cuts the wait short."""
    app = aerogrid.App("wiring-outage")
    orders = app.topic("orders", value_type=Order, format="avro")
    loader = await SchemaLoader.open(app, refused_url)  # the start-up check only logs
    assert loader is not None
    try:
        records = [RawRecord("orders", 0, i, None, frame(7, b"\x02a\x02")) for i in range(5)]
        assert loader.needed(records) == [(orders.registry_codecs[1], 7)]
        pauses = sample("aerogrid_schema_registry_pauses_total", app.name)
        stopping = asyncio.Event()
        assert await loader.ready(records, stopping) is False
        assert await loader.ready(records, stopping) is False
        assert sample("aerogrid_schema_registry_up", app.name) == 0
        assert sample("aerogrid_records_waiting_on_registry", app.name) == 5
        assert sample("aerogrid_schema_registry_pauses_total", app.name) == pauses + 1
        assert loader.outage is not None and "5 records wait" in loader.outage
        stopping.set()
        started = time.monotonic()
        assert await loader.ready(records, stopping) is False
        assert time.monotonic() - started < 1.0
    finally:
        await loader.close()


async def test_a_record_whose_schema_was_never_loaded_is_not_dead_lettered(
    refused_url: str,
) -> None:
    """decode() before load() is the engine's bug, never the record's: it stops the batch."""
    app = aerogrid.App("wiring-bug")
    app.topic("orders", value_type=Order, format="avro")
    seen: list[Order] = []

    @app.stream(app.topics["orders"])
    async def keep(orders: aerogrid.StreamInput) -> None:
        async for order in orders:
            seen.append(order)

    async with AppTester(app, schema_registry=refused_url) as tester:
        with pytest.raises(SchemaNotLoaded):
            await tester.processor.process([RawRecord("orders", 0, 0, None, frame(9, b"\x00"))])
        assert tester.processor.drain_dead_letters() == []
    assert seen == []
