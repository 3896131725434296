"""The test-bed brokers do what the runtime relies on, and fail where we say they fail.

Every test taking `broker` runs against Apache Kafka and against tansu; behaviour that differs is
asserted through the broker's feature flags, so a tansu upgrade that fixes (or breaks) something
turns a test red instead of going unnoticed. Findings are written up in tests/support/brokers.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import UnknownError

from support import brokers
from support.brokers import (
    FAST_GROUP_CONFIG,
    ApacheKafka,
    Broker,
    BrokerStartError,
    TansuBroker,
    free_port,
)

# --- helpers --------------------------------------------------------------------------------------


async def create_topic(
    bootstrap: str, name: str, partitions: int = 1, configs: Mapping[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topic = NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))
        response = await admin.create_topics([topic])
        errors = [t for t in response.to_object()["topic_errors"] if t["error_code"] != 0]
        assert not errors, errors
    finally:
        await admin.close()


async def produce_batches(bootstrap: str, topic: str, batches: list[list[bytes]]) -> None:
    """Send each inner list as exactly one record batch to partition 0."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for values in batches:
            batch = producer.create_batch()
            for value in values:
                assert batch.append(key=None, value=value, timestamp=None) is not None
            batch.close()
            await (await producer.send_batch(batch, topic, partition=0))
    finally:
        await producer.stop()


async def consume(consumer: Any, count: int, within: float = 30.0) -> list[Any]:
    """Fetch exactly `count` records (failing after `within` s); a few extra would fail too."""
    records: list[Any] = []
    deadline = time.monotonic() + within
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records"
        for batch in (await consumer.getmany(timeout_ms=500)).values():
            records.extend(batch)
    assert len(records) == count, [r.value for r in records]
    return records


async def read_partition(
    bootstrap: str, tp: TopicPartition, count: int, **config: Any
) -> tuple[list[Any], Any]:
    """Read `count` records of one partition from the start, without a group; also the consumer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **config)
    await consumer.start()
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    try:
        return await consume(consumer, count), consumer
    except BaseException:
        await consumer.stop()
        raise


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [resource] = response.to_object()["resources"]
    assert resource["error_code"] == 0, resource
    return {e["config_names"]: e["config_value"] for e in resource["config_entries"]}


def group_consumer(broker: Broker, topic: str, group: str, **config: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **FAST_GROUP_CONFIG,
        **config,
    )


# --- both brokers ---------------------------------------------------------------------------------


async def test_partitioned_produce_and_consume(broker: Broker, unique_name: str) -> None:
    topic = unique_name
    await create_topic(broker.bootstrap, topic, partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send(topic, f"{p}:{i}".encode(), key=b"k", partition=p)
            for p in range(3)
            for i in range(10)
        ]
        metadata = [await future for future in sent]
        assert producer.client.cluster.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        await producer.stop()
    expected = {(p, i) for p in range(3) for i in range(10)}
    assert {(m.partition, m.offset) for m in metadata} == expected

    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records = await consume(consumer, 30)
    finally:
        await consumer.stop()
    for p in range(3):
        mine = [r for r in records if r.partition == p]
        assert [r.offset for r in mine] == list(range(10))
        assert [r.value for r in mine] == [f"{p}:{i}".encode() for i in range(10)]
        assert all(r.key == b"k" for r in mine)


async def test_group_commit_and_resume(broker: Broker, unique_name: str) -> None:
    topic, group = unique_name, f"{unique_name}-group"
    tp = TopicPartition(topic, 0)
    await create_topic(broker.bootstrap, topic)
    await produce_batches(broker.bootstrap, topic, [[f"v{i}".encode() for i in range(10)]])

    first = group_consumer(broker, topic, group)
    await first.start()
    try:
        taken = [await asyncio.wait_for(first.getone(), 30) for _ in range(6)]
        assert [r.offset for r in taken] == list(range(6))
        await first.commit({tp: 6})
        assert await first.committed(tp) == 6
    finally:
        await first.stop()

    second = group_consumer(broker, topic, group)
    await second.start()
    try:
        rest = await consume(second, 4)
        assert [r.value for r in rest] == [f"v{i}".encode() for i in range(6, 10)]
        assert await second.committed(tp) == 6
        assert await second.getmany(timeout_ms=300) == {}
    finally:
        await second.stop()


# (batches, what tansu answers for end_offsets): it returns the last batch's base offset + 1.
END_OFFSET_CASES = [
    pytest.param([3, 3, 2], 7, id="3+3+2"),
    pytest.param([8], 1, id="one-batch-of-8"),
    pytest.param([1] * 8, 8, id="8-single-record-batches"),
]


@pytest.mark.parametrize(("sizes", "tansu_end_offset"), END_OFFSET_CASES)
async def test_end_offsets_after_8_records(
    broker: Broker, unique_name: str, sizes: list[int], tansu_end_offset: int
) -> None:
    topic, tp = unique_name, TopicPartition(unique_name, 0)
    await create_topic(broker.bootstrap, topic)
    values = iter(range(8))
    batches = [[b"%d" % next(values) for _ in range(size)] for size in sizes]
    await produce_batches(broker.bootstrap, topic, batches)

    records, consumer = await read_partition(broker.bootstrap, tp, 8)
    try:
        assert [r.offset for r in records] == list(range(8))
        # The fetch response's high watermark is right on both brokers: rely on this one.
        assert consumer.highwater(tp) == 8
        assert await consumer.position(tp) == 8
        assert (await consumer.beginning_offsets([tp]))[tp] == 0
        end = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    assert end == (8 if broker.exact_end_offsets else tansu_end_offset)


async def test_compacted_topic_can_be_created(broker: Broker, unique_name: str) -> None:
    configs = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
    await create_topic(broker.bootstrap, unique_name, configs=configs)
    described = await topic_config(broker.bootstrap, unique_name)
    # Both accept and report it; only brokers with `compaction` (Kafka) ever compact.
    assert described["cleanup.policy"] == "compact"


async def test_auto_created_topic_partitions(broker: Broker, unique_name: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(unique_name, b"x")
        partitions = producer.client.cluster.partitions_for_topic(unique_name)
    finally:
        await producer.stop()
    assert len(partitions) == broker.auto_create_partitions


async def test_idempotent_producer(broker: Broker, unique_name: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True)
    try:
        if broker.idempotence:
            await producer.start()
            metadata = await producer.send_and_wait(unique_name, b"once")
            assert metadata.offset == 0
        else:
            # tansu answers InitProducerId with error -1.
            with pytest.raises(UnknownError):
                await producer.start()
    finally:
        await producer.stop()


async def test_transactional_producer_starts(broker: Broker, unique_name: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap, transactional_id=f"{unique_name}-tx"
    )
    try:
        if broker.transactions:
            await producer.start()
            async with producer.transaction():
                await producer.send(unique_name, b"in-a-transaction")
        else:
            with pytest.raises(UnknownError):
                await producer.start()
    finally:
        await producer.stop()


# --- Apache Kafka only ----------------------------------------------------------------------------


async def test_transactions_with_offsets_and_read_committed(
    apache_kafka: ApacheKafka, unique_name: str
) -> None:
    bootstrap = apache_kafka.bootstrap
    source, sink, group = f"{unique_name}-in", f"{unique_name}-out", f"{unique_name}-group"
    tp_in, tp_out = TopicPartition(source, 0), TopicPartition(sink, 0)
    await create_topic(bootstrap, source)
    await create_topic(bootstrap, sink)
    await produce_batches(bootstrap, source, [[b"i0", b"i1", b"i2", b"i3"]])

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{unique_name}-tx")
    await producer.start()
    try:
        await producer.begin_transaction()
        await producer.send(sink, b"c1")
        await producer.send(sink, b"c2")
        await producer.send_offsets_to_transaction({tp_in: 2}, group)
        await producer.commit_transaction()

        await producer.begin_transaction()
        await producer.send(sink, b"aborted")
        await producer.send_offsets_to_transaction({tp_in: 4}, group)
        await producer.abort_transaction()

        async with producer.transaction():
            await producer.send(sink, b"c3")
    finally:
        await producer.stop()

    committed, consumer = await read_partition(
        bootstrap, tp_out, 3, isolation_level="read_committed"
    )
    try:
        assert [r.value for r in committed] == [b"c1", b"c2", b"c3"]
        assert await consumer.getmany(timeout_ms=300) == {}
    finally:
        await consumer.stop()
    everything, consumer = await read_partition(
        bootstrap, tp_out, 4, isolation_level="read_uncommitted"
    )
    await consumer.stop()
    assert [r.value for r in everything] == [b"c1", b"c2", b"aborted", b"c3"]

    # Only the committed transaction's offsets reached the group; the aborted ones did not.
    resumed = group_consumer(apache_kafka, source, group, isolation_level="read_committed")
    await resumed.start()
    try:
        assert await resumed.committed(tp_in) == 2
        assert [r.value for r in await consume(resumed, 2)] == [b"i2", b"i3"]
    finally:
        await resumed.stop()


async def test_compaction_is_enforced(apache_kafka: ApacheKafka, unique_name: str) -> None:
    """Kafka really compacts a `cleanup.policy=compact` topic once its segment has rolled."""
    topic, tp = unique_name, TopicPartition(unique_name, 0)
    configs = {
        "cleanup.policy": "compact",
        "segment.ms": "100",
        "min.cleanable.dirty.ratio": "0.0001",
        "min.compaction.lag.ms": "0",
    }
    await create_topic(apache_kafka.bootstrap, topic, configs=configs)
    producer = AIOKafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=apache_kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([tp])
    try:
        for i in range(5):
            await producer.send_and_wait(topic, b"%d" % i, key=b"same", partition=0)
        deadline = time.monotonic() + 60
        while True:
            # A later record rolls the old segment (segment.ms), which makes it cleanable; the
            # cleaner wakes every log.cleaner.backoff.ms (1 s in the test bed).
            await asyncio.sleep(0.5)
            await producer.send_and_wait(topic, b"roll", key=b"roller", partition=0)
            await consumer.seek_to_beginning(tp)
            first = await asyncio.wait_for(consumer.getone(), 10)
            if first.offset > 0:
                break
            assert time.monotonic() < deadline, "no compaction within 60 s"
    finally:
        await consumer.stop()
        await producer.stop()
    assert (first.key, first.value) == (b"same", b"4")


# --- the harness itself ---------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def _port_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_tansu_lifecycle(tansu: TansuBroker) -> None:
    """start/stop and the context manager: ready on return, process group gone after stop."""
    with TansuBroker() as extra:
        assert extra.running and extra.bootstrap == f"127.0.0.1:{extra.port}"
        assert extra.startup_seconds is not None and extra.startup_seconds < 10
        pid, port, workdir = extra.pid, extra.port, extra.workdir
    assert pid is not None and _port_closed(port)
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not workdir.exists()
    with pytest.raises(RuntimeError, match="not started"):
        _ = extra.bootstrap


def test_tansu_start_failure_reports_log_tail(tansu: TansuBroker) -> None:
    """A broker that dies during startup raises with its own log in the message."""
    broken = TansuBroker(storage_engine="sqlite://nowhere.db")
    with pytest.raises(BrokerStartError, match=r"(?s)exited with code.*FeatureNotEnabled"):
        broken.start()
    assert not broken.running


def test_taken_port_is_retried(tansu: TansuBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A port grabbed by someone else between free_port() and the bind costs a retry, not a test."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(brokers, "free_port", lambda: next(ports, None) or free_port())
        with TansuBroker() as retried:
            assert retried.port != taken
            assert retried.running


def test_kafka_start_failure_reports_log_tail(apache_kafka: ApacheKafka) -> None:
    broken = ApacheKafka(extra_config={"node.id": "not-a-number"})
    with pytest.raises(BrokerStartError, match=r"(?s)StorageTool format failed.*not-a-number"):
        broken.start()
    assert not broken.running
