"""Topic tools of the devkit (list, produce, tail, browse), a small kcat for AeroGrid users.

They show any record, dead letters included: JSON nested too deep to parse safely, bytes
that are not UTF-8 and binary values are shown as (escaped) text, never an error.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aerogrid.engine.inputs import refresh_metadata
from aerogrid.record_formats import json_too_deep
from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded
from aerogrid_devkit.brokers import local_kafka
from aerogrid_devkit.registry_records.decode import RecordDecoder
from aerogrid_devkit.topic_offsets import count_records, high_watermarks
from aerogrid_devkit.workspace import MANIFEST, Workspace


def resolve_broker(explicit: str | None, workspace: Path | None = None) -> BrokerSettings:
    """The broker a command talks to, in this order: --broker, AEROGRID_BROKER, the
    workspace's (an aerogrid.toml in `workspace`, default the current folder: its external
    cluster with TLS/SASL, else its local broker), the running embedded or kafka-mode broker,
    localhost:9092. Raises ConfigurationError for a broken aerogrid.toml."""
    if explicit or os.environ.get("AEROGRID_BROKER"):
        return BrokerSettings.from_env(explicit)
    root = workspace or Path.cwd()
    ws = Workspace.load(root) if (root / MANIFEST).is_file() else None
    if ws is not None and ws.broker_mode == "external" and ws.external is not None:
        return ws.external.resolve()
    running = embedded.read_state() or local_kafka.read_state()
    if running is not None:
        return BrokerSettings.parse(running.bootstrap)
    port = ws.broker_port if ws is not None and ws.broker_port else embedded.DEFAULT_PORT
    return BrokerSettings.parse(f"localhost:{port}")


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    #: Each partition's end (its high watermark, as a fetch reports it: see `topic_offsets`).
    ends: dict[int, int]
    #: Each partition's first offset (past what retention deleted).
    begins: dict[int, int] = field(default_factory=dict)
    #: Records counted in the partitions that were read to their end (see `count_records`).
    counted: dict[int, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """The records in the topic: counted where read, else end - begin (an upper bound)."""
        return sum(self.counted.get(p, end - self.begins.get(p, 0)) for p, end in self.ends.items())

    @property
    def records_exact(self) -> bool:
        """Whether `records` was counted in every partition (else it is an upper bound)."""
        return all(p in self.counted for p in self.ends)


async def list_topics(settings: BrokerSettings) -> list[TopicInfo]:
    """Every topic with its partitions, their true ends and its records (see `topic_offsets`)."""
    admin = AIOKafkaAdminClient(**settings.client_options())
    try:
        await admin.start()
        names = sorted(await admin.list_topics())
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.client_options())
    try:
        await _start(consumer)
        # Every topic's partitions first: once partitions are assigned, the consumer's
        # metadata covers only those topics. Then one pass finds every end.
        partitions = {name: sorted(consumer.partitions_for_topic(name) or ()) for name in names}
        tps = [TopicPartition(name, p) for name in names for p in partitions[name]]
        ends = await high_watermarks(consumer, tps) if tps else {}
        begins = await consumer.beginning_offsets(tps) if tps else {}
        counted = await count_records(
            consumer, {tp: (min(begins[tp], ends[tp]), ends[tp]) for tp in tps}
        )
        return [
            TopicInfo(
                name,
                len(partitions[name]),
                {p: ends[TopicPartition(name, p)] for p in partitions[name]},
                {p: begins[TopicPartition(name, p)] for p in partitions[name]},
                {
                    p: counted[TopicPartition(name, p)]
                    for p in partitions[name]
                    if TopicPartition(name, p) in counted
                },
            )
            for name in names
        ]
    finally:
        await consumer.stop()


async def _start(consumer: AIOKafkaConsumer) -> None:
    """Start a consumer that knows every topic's partitions and is safe to stop at once.

    A consumer subscribed to nothing knows no topic on Apache Kafka (its start-up
    metadata names none), so one refresh asks for all of them. Awaiting it also lets the
    consumer's own start-up task run: aiokafka's stop() raises CancelledError before.
    """
    await consumer.start()
    await refresh_metadata(consumer)


async def produce(
    settings: BrokerSettings,
    topic: str,
    values: Sequence[bytes],
    *,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes]] = (),
) -> list[tuple[int, int]]:
    """Produce each value; returns (partition, offset) of each, once acknowledged."""
    producer = AIOKafkaProducer(acks="all", **settings.client_options())
    try:
        await producer.start()
        futures = [
            await producer.send(topic, value=v, key=key, headers=list(headers)) for v in values
        ]
        return [(m.partition, m.offset) for m in [await f for f in futures]]
    finally:
        await producer.stop()


async def tail(
    settings: BrokerSettings,
    topic: str,
    *,
    from_beginning: bool,
    idle_timeout: float | None,
    decoder: RecordDecoder | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Records of every partition of `topic`, as dicts, until idle for `idle_timeout`.

    With a `decoder`, registry-format keys and values are decoded (see `RecordDecoder`).
    """
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **settings.client_options(),
    )
    try:
        await _start(consumer)
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise LookupError(f"no topic named {topic!r} on {settings.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            ends = await high_watermarks(consumer, tps)
            for tp in tps:
                consumer.seek(tp, ends[tp])
        loop = asyncio.get_running_loop()
        last = loop.time()
        while idle_timeout is None or loop.time() - last < idle_timeout:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                for m in messages:
                    last = loop.time()
                    described = describe(m)
                    if decoder is not None:
                        await decoder.annotate(described, m.topic, m.key, m.value)
                    yield described
    finally:
        await consumer.stop()


def describe(message: Any) -> dict[str, Any]:
    """A record as JSON-friendly data: JSON values parsed, other bytes as text."""
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp,
        "key": _text(message.key),
        "value": _json_or_text(message.value),
        "headers": {k: _text(v) for k, v in (message.headers or ())},
    }


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    return data.decode("utf-8", errors="backslashreplace")


def _json_or_text(data: bytes | None) -> Any:
    is_json, value = parse_json(data)
    return value if is_json else _text(data)


def parse_json(data: bytes | None) -> tuple[bool, Any]:
    """(True, the value) when the bytes are JSON safe to show, else (False, None).

    JSON nested deeper than the runtime's decoders accept counts as text: parsing or
    printing it would recurse past Python's limit (RecursionError).
    """
    if data is None or json_too_deep(data):
        return False, None
    try:
        return True, json.loads(data)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, an int of 4,300+ digits
        return False, None


@dataclass(frozen=True)
class BrowsedRecord:
    """One record as stored (key, value and header values left as bytes)."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


#: Where browsing starts: the first records, the last ones, or from an offset.
BrowseStart = Literal["beginning", "end"] | int


async def browse(
    settings: BrokerSettings,
    topic: str,
    *,
    start: BrowseStart = "beginning",
    partition: int | None = None,
    limit: int = 100,
    idle_timeout: float = 1.0,
    timeout: float = 10.0,
) -> list[BrowsedRecord]:
    """Up to `limit` records of a topic (or one partition), oldest first.

    From the beginning it reads the first records, from the end the last ones, from an
    offset those at and after it (in every chosen partition). It reads up to each
    partition's end as it was when called (a fetched high watermark, see
    `high_watermarks`), so it returns rather than waits for new records.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.client_options())
    try:
        await _start(consumer)
        known = consumer.partitions_for_topic(topic)
        if not known:
            raise LookupError(f"no topic named {topic!r} on {settings.bootstrap}")
        if partition is not None and partition not in known:
            raise LookupError(f"{topic!r} has no partition {partition} (it has {len(known)})")
        chosen = [partition] if partition is not None else sorted(known)
        tps = [TopicPartition(topic, p) for p in chosen]
        ends = await high_watermarks(consumer, tps)
        begins = await consumer.beginning_offsets(tps)
        bounds: dict[TopicPartition, tuple[int, int]] = {}
        for tp in tps:
            first, end = begins[tp], ends[tp]
            if start == "beginning":
                low = first
            elif start == "end":
                low = max(first, end - limit)
            else:
                low = min(max(first, start), end)
            high = end if start == "end" else min(end, low + limit)
            if low < high:
                bounds[tp] = (low, high)
        records = await _read_ranges(consumer, bounds, idle_timeout, timeout)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: (r.timestamp or 0, r.partition, r.offset))
    return records[-limit:] if start == "end" else records[:limit]


async def _read_ranges(
    consumer: AIOKafkaConsumer,
    bounds: dict[TopicPartition, tuple[int, int]],
    idle_timeout: float,
    timeout: float,
) -> list[BrowsedRecord]:
    """The records of each partition in [low, high), until read, idle or out of time."""
    if not bounds:
        return []
    consumer.assign(list(bounds))
    for tp, (low, _) in bounds.items():
        consumer.seek(tp, low)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_seen = loop.time()
    pending = set(bounds)
    found: list[BrowsedRecord] = []
    while pending and loop.time() < deadline and loop.time() - last_seen < idle_timeout:
        batch = await consumer.getmany(*pending, timeout_ms=100)
        for tp, messages in batch.items():
            high = bounds[tp][1]
            for m in messages:
                last_seen = loop.time()
                if m.offset < high:
                    found.append(_browsed(m))
        for tp in list(pending):
            if await consumer.position(tp) >= bounds[tp][1]:
                pending.discard(tp)
    return found


def _browsed(message: Any) -> BrowsedRecord:
    return BrowsedRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
        key=message.key,
        value=message.value,
        headers=tuple((k, v if v is not None else b"") for k, v in (message.headers or ())),
    )
