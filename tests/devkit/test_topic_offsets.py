"""The devkit's topic tools show true numbers on the embedded broker (tansu).

Tansu answers ListOffsets with the last batch's base offset + 1, so eight records produced
in one batch list an end of 1 (checked first, so this test notices when tansu changes).
`aerogrid topics`, `tail` and the TUI's topic view read ends and counts through
`aerogrid_devkit.topic_offsets`, which must say 8. The kafka mode's numbers (offsets taken
by transaction markers) are checked in test_local_kafka_mode.py.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from click.testing import CliRunner

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import kafka_tools
from aerogrid_devkit.commands import topics as topics_cli
from aerogrid_devkit.topic_offsets import count_records, high_watermarks
from support.brokers import TansuBroker

pytestmark = pytest.mark.timeout(60)


async def _one_batch(bootstrap: str, topic: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=100)
    await producer.start()
    try:
        sent = [await producer.send(topic, b"%d" % i, partition=0) for i in range(count)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _listed_and_true_end(bootstrap: str, topic: str) -> tuple[int, int, dict[str, int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        listed = (await consumer.end_offsets([tp]))[tp]
        true_end = (await high_watermarks(consumer, [tp]))[tp]
        counts = {
            "all": (await count_records(consumer, {tp: (0, true_end)}))[tp],
            "over_limit": len(await count_records(consumer, {tp: (0, true_end)}, limit=4)),
        }
        return listed, true_end, counts
    finally:
        await consumer.stop()


def test_ends_and_counts_are_true_after_a_batched_produce(
    tansu: TansuBroker, unique_name: str
) -> None:
    asyncio.run(_one_batch(tansu.bootstrap, unique_name, 8))
    listed, true_end, counts = asyncio.run(_listed_and_true_end(tansu.bootstrap, unique_name))
    assert listed == 1  # tansu's answer: why the tools cannot take ListOffsets as it is
    assert true_end == 8
    assert counts == {"all": 8, "over_limit": 0}  # past the limit: not counted, not guessed

    infos = asyncio.run(kafka_tools.list_topics(BrokerSettings.parse(tansu.bootstrap)))
    info = next(i for i in infos if i.name == unique_name)
    assert info.ends[0] == 8 and info.records == 8 and info.records_exact
    shown = CliRunner().invoke(topics_cli, ["--broker", tansu.bootstrap])
    line = next(x for x in shown.stdout.splitlines() if x.startswith(unique_name + " "))
    assert line.split()[-2] == "8"


def test_tail_starts_at_the_true_end(tansu: TansuBroker, unique_name: str) -> None:
    """`tail` without --from-beginning shows only what comes after: not the batch's records."""
    asyncio.run(_one_batch(tansu.bootstrap, unique_name, 8))

    async def tail_one() -> list[int]:
        settings = BrokerSettings.parse(tansu.bootstrap)
        seen: list[int] = []
        records = kafka_tools.tail(settings, unique_name, from_beginning=False, idle_timeout=5)
        later = asyncio.get_running_loop().call_later(
            1.0, lambda: asyncio.ensure_future(_one_batch(tansu.bootstrap, unique_name, 1))
        )
        try:
            async for record in records:
                seen.append(record["offset"])
                break
        finally:
            later.cancel()
            await records.aclose()
        return seen

    assert asyncio.run(tail_one()) == [8]
