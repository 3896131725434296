"""A record the Kafka client itself cannot parse does not stop the app.

aiokafka decodes header names as UTF-8 while it parses a fetched batch, before any
AeroGrid decoder runs; a producer that wrote a header name that is not UTF-8 (the
protocol allows any bytes) made every `getmany` raise, and the app crash-looped on it.
The producer here is aiokafka's pure-Python batch builder given a header name whose
bytes are not UTF-8, as a non-Python producer could write them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from support.apps import RunningApp, read_topic, write_orders_app
from support.brokers import ApacheKafka
from support.orders import converged, expected_sums, orders

pytestmark = pytest.mark.timeout(180)


class NotUtf8(str):
    """A header name that encodes to bytes no UTF-8 decoder accepts."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfe-not-utf8"


async def test_a_batch_the_client_cannot_parse_is_dead_lettered_and_skipped(
    apache_kafka: ApacheKafka,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Apache Kafka only: the embedded broker drops such a produce (seen), so no app meets it."""
    import aiokafka.producer.message_accumulator as accumulator
    import aiokafka.producer.producer as producer_module

    monkeypatch.setattr(accumulator, "DefaultRecordBatchBuilder", _DefaultRecordBatchBuilderPy)
    monkeypatch.setattr(producer_module, "DefaultRecordBatchBuilder", _DefaultRecordBatchBuilderPy)
    broker = apache_kafka
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=1)
    before, after = orders(50, seed=61), orders(50, seed=62)
    bad_value = json.dumps({"product": "p1", "quantity": 1000}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
    await producer.start()
    try:
        # Each send awaited: one record per batch, so the unreadable batch is that record.
        for key, value in before:
            await (await producer.send(topic, key=key, value=value, partition=0))
        bad = await (
            await producer.send(
                topic,
                key=b"bad",
                value=bad_value,
                headers=[(NotUtf8("x"), b"v")],
                partition=0,
            )
        )
        for key, value in after:
            await (await producer.send(topic, key=key, value=value, partition=0))
    finally:
        await producer.stop()
    with RunningApp(path, broker.bootstrap) as app:
        want = expected_sums(before + after)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        assert app.proc is not None and app.proc.poll() is None
        (letter,) = await read_topic(broker.bootstrap, f"{unique_name}.dlq", 1)
        headers = dict(letter.headers)
        assert headers["aerogrid-error-type"] == b"UnreadableRecord"
        assert headers["aerogrid-source-offset"] == str(bad.offset).encode()
        assert f"offsets {bad.offset}..{bad.offset} of".encode() in headers["aerogrid-error"]
        assert b"UnicodeDecodeError" in headers["aerogrid-error"]
        assert app.metric("aerogrid_dead_lettered_total", {"app": unique_name}) == 1
