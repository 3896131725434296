"""The broker changes under a running app: partitions added, a restart that lost everything.

Before, an app read the partitions it found at start only, and an embedded broker
restarted without its data (it keeps data in memory) left the app serving a grid it
called complete while it read one partition of four: 36,178 of 48,789 units.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from aerogrid_devkit.embedded import EmbeddedBroker, free_port
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker
from support.orders import converged, expected_sums, orders

pytestmark = pytest.mark.timeout(300)


async def produce_to_partitions(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]], partitions: int
) -> None:
    """Spread `records` over every partition of `topic`, round robin."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        # Partitions just added reach every broker's metadata a moment later.
        for _ in range(100):
            if len(await producer.partitions_for(topic)) >= partitions:
                break
            await producer.client.force_metadata_update()
            await asyncio.sleep(0.1)
        sent = [
            await producer.send(topic, key=k, value=v, partition=i % partitions)
            for i, (k, v) in enumerate(records)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def test_partitions_added_while_running_are_read(
    apache_kafka: Broker, unique_name: str, tmp_path: Path
) -> None:
    """Apache Kafka only: the embedded broker has no CreatePartitions API; its partitions
    change when a restarted broker auto-creates a topic (the next test)."""
    broker = apache_kafka
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=1)
    first, second = orders(200, seed=41), orders(600, seed=42)
    with RunningApp(path, broker.bootstrap) as app:
        await produce(broker.bootstrap, topic, first)
        want = expected_sums(first)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            await admin.create_partitions({topic: NewPartitions(total_count=3)})
        finally:
            await admin.close()
        await produce_to_partitions(broker.bootstrap, topic, second, 3)
        want = expected_sums(first + second)
        assert await converged(app.target, unique_name, "product_sum", want, timeout=60) == want
        assert "input partitions added" in app.log_file.read_text()


async def test_a_restarted_embedded_broker_is_detected_and_the_app_resynchronises(
    unique_name: str, tmp_path: Path
) -> None:
    port = free_port()
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=1)
    before, after = orders(500, seed=43), orders(800, seed=44)
    first = EmbeddedBroker(port, log_file=tmp_path / "broker-1.log", private=True).start()
    app = RunningApp(path, first.bootstrap)
    second: EmbeddedBroker | None = None
    try:
        app.start()
        await produce(first.bootstrap, topic, before)
        want = expected_sums(before)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        first.stop()
        second = EmbeddedBroker(port, log_file=tmp_path / "broker-2.log", private=True).start()
        # A producer auto-creates the input topic on the new broker, with its own
        # partition count (not the app's declared one), before or after the app notices.
        await produce(second.bootstrap, topic, after)
        want = expected_sums(before + after)
        got = await converged(app.target, unique_name, "product_sum", want, timeout=60)
        assert got == want, app.log_tail()
        log = app.log_file.read_text()
        assert "vanished from the broker" in log or "shorter than the app's position" in log
        assert app.metric("aerogrid_resyncs_total", {"app": unique_name}) >= 1
        assert app.proc is not None and app.proc.poll() is None
        # The grids were written to the new broker's changelog: a restart restores them.
        assert app.terminate() == 0
        app.start()
        assert await converged(app.target, unique_name, "product_sum", want) == want
    finally:
        app.stop()
        for broker in (first, second):
            if broker is not None:
                broker.stop()
