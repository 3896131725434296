"""Topic tools of the devkit (list, produce, tail), a small kcat for AeroGrid users."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded


def resolve_broker(explicit: str | None) -> BrokerSettings:
    """--broker, else AEROGRID_BROKER, else the running embedded broker, else localhost:9092."""
    if explicit or os.environ.get("AEROGRID_BROKER"):
        return BrokerSettings.from_env(explicit)
    running = embedded.read_state()
    return BrokerSettings.parse(running.bootstrap if running else "localhost:9092")


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: int
    #: Records in the log (high watermark) of each partition.
    ends: dict[int, int]


async def list_topics(settings: BrokerSettings) -> list[TopicInfo]:
    admin = AIOKafkaAdminClient(**settings.client_options())
    try:
        await admin.start()
        names = sorted(await admin.list_topics())
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.client_options())
    try:
        await consumer.start()
        infos = []
        for name in names:
            partitions = sorted(consumer.partitions_for_topic(name) or ())
            tps = [TopicPartition(name, p) for p in partitions]
            ends = await high_watermarks(consumer, tps) if tps else {}
            infos.append(
                TopicInfo(name, len(partitions), {tp.partition: e for tp, e in ends.items()})
            )
        return infos
    finally:
        await consumer.stop()


async def high_watermarks(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """Each partition's end, from a fetch's high watermark.

    The embedded broker answers ListOffsets with the last batch's base offset + 1, so the
    listed end is only where to fetch from; the fetch response carries the true end.
    """
    listed = await consumer.end_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, max(0, listed[tp] - 1))
    await consumer.getmany(timeout_ms=300)
    return {tp: max(listed[tp], consumer.highwater(tp) or 0) for tp in partitions}


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
    settings: BrokerSettings, topic: str, *, from_beginning: bool, idle_timeout: float | None
) -> AsyncIterator[dict[str, Any]]:
    """Records of every partition of `topic`, as dicts, until idle for `idle_timeout`."""
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        **settings.client_options(),
    )
    try:
        await consumer.start()
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
                    yield describe(m)
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
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return _text(data)
