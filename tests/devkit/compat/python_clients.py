"""The Python clients under test: aiokafka (what the runtime runs) and confluent-kafka.

confluent-kafka brings librdkafka from its PyPI wheel, a newer librdkafka than Debian's kcat.
"""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

import aiokafka
import confluent_kafka
from aiokafka import AIOKafkaProducer

from compat.scenario import (
    CALL_TIMEOUT,
    ORDERS,
    ClientFailure,
    Record,
    Scenario,
    check_orders,
    expect,
    produced_by_client,
    read_back,
)


class Aiokafka:
    """aiokafka: produces with its own batching, consumes by assignment (no group)."""

    name = "aiokafka"

    def title(self) -> str:
        return f"aiokafka {aiokafka.__version__}"

    def unavailable_reason(self) -> str | None:
        return None

    def run(self, scenario: Scenario) -> None:
        asyncio.run(asyncio.wait_for(self._produce(scenario), CALL_TIMEOUT))
        produced_by_client(scenario)
        got = asyncio.run(read_back(scenario.bootstrap, scenario.orders, len(ORDERS)))
        check_orders(got, "consume orders")
        letters = scenario.dead_letters
        got = asyncio.run(read_back(scenario.bootstrap, scenario.dlq, len(letters)))
        expect(got, letters, "dead-letter headers", headers=True)

    @staticmethod
    async def _produce(scenario: Scenario) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=scenario.bootstrap)
        await producer.start()
        try:
            for key, value in ORDERS:
                await producer.send(scenario.produced, value, key=key, partition=0)
            await producer.flush()
        finally:
            await producer.stop()


class ConfluentKafka:
    """confluent-kafka: a Producer, and a Consumer assigned to the partition from its start."""

    name = "confluent-kafka"

    def title(self) -> str:
        librdkafka, _ = confluent_kafka.libversion()
        return f"confluent-kafka {version('confluent-kafka')} (librdkafka {librdkafka})"

    def unavailable_reason(self) -> str | None:
        return None

    def run(self, scenario: Scenario) -> None:
        self._produce(scenario)
        produced_by_client(scenario)
        check_orders(self._consume(scenario, scenario.orders, len(ORDERS)), "consume orders")
        letters = scenario.dead_letters
        got = self._consume(scenario, scenario.dlq, len(letters))
        expect(got, letters, "dead-letter headers", headers=True)

    @staticmethod
    def _produce(scenario: Scenario) -> None:
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": scenario.bootstrap,
                "message.timeout.ms": int(CALL_TIMEOUT * 1000) - 1000,
            }
        )
        errors: list[str] = []

        def delivered(error: confluent_kafka.KafkaError | None, _: object) -> None:
            if error is not None:
                errors.append(error.str())

        for key, value in ORDERS:
            producer.produce(scenario.produced, value, key, 0, on_delivery=delivered)
        left = producer.flush(CALL_TIMEOUT)
        if errors:
            raise ClientFailure(f"produce: {errors[0]}")
        if left:
            raise ClientFailure(f"produce: {left} records undelivered after {CALL_TIMEOUT:.0f} s")

    @staticmethod
    def _consume(scenario: Scenario, topic: str, count: int) -> list[Record]:
        consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": scenario.bootstrap,
                "group.id": f"{scenario.prefix}.confluent",
                "enable.auto.commit": False,
            }
        )
        got: list[Record] = []
        try:
            start = confluent_kafka.OFFSET_BEGINNING
            consumer.assign([confluent_kafka.TopicPartition(topic, 0, start)])
            deadline = time.monotonic() + CALL_TIMEOUT
            while len(got) < count and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    raise ClientFailure(f"consume: {error.str()}")
                got.append(Record(message.key(), message.value(), _headers(message)))
        finally:
            consumer.close()
        return got


def _headers(message: confluent_kafka.Message) -> tuple[tuple[str, bytes], ...]:
    """A consumed message's headers as (name, bytes) pairs (confluent-kafka gives a list)."""
    found = message.headers() or []
    pairs = found.items() if isinstance(found, dict) else found
    return tuple(
        (name, value.encode() if isinstance(value, str) else value or b"") for name, value in pairs
    )
