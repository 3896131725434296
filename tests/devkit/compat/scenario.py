"""What every client is asked to do, and the reference (aiokafka) that sets it up and checks it.

Per test, on fresh topics: the seed's orders (`support.orders`: key an order id, value JSON
``{"product", "quantity"}``), written by the reference in ONE record batch (the embedded
broker's end offsets go wrong after such a batch); dead letters as the runtime writes them to
``<app>.dlq`` (made by `aerogrid.engine.dead_letters.dead_letter`, so they carry the same
``aerogrid-*`` headers); and a consumer group whose offsets the reference committed at the end
of the orders. A client then produces orders into a topic of its own (which the reference reads
back), consumes the orders, reads the dead letters' headers, or describes the group.

aiokafka is the reference because the runtime itself runs on it: the suite asks whether a
*client* works, so the setup must work on every broker mode (it does: see the embedded
broker's findings in tests/support/brokers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aerogrid.engine.dead_letters import dead_letter
from support.orders import orders

#: Seconds one client call may take (a client that fails mostly fails by hanging).
CALL_TIMEOUT = 8.0
#: The seed's orders: 8, so one batch of them shows the embedded broker's end-offset error.
ORDERS: tuple[tuple[bytes, bytes], ...] = tuple(
    (key or b"", value or b"") for key, value in orders(8, seed=13)
)


class ClientFailure(Exception):
    """A client did not do its part; the message is the one line the table shows."""


@dataclass(frozen=True)
class Record:
    """A record as a client saw it: key, value and headers (in order)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class _FailedOrder:
    """The `dead_letters.Source` of an order that failed in the orders app."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


def dead_letters(source_topic: str) -> tuple[Record, ...]:
    """Three orders as the runtime dead-letters them (two decode errors, one handler error)."""
    failures: list[tuple[bytes | None, bytes | None, BaseException, str]] = [
        (b"order-13-90", b'{"product": "p1", "quantity": "two"}', ValueError("quantity"), "decode"),
        (b"order-13-91", b'{"product": "p2", "quantity": 3}', KeyError("p2"), "handler"),
        (b"order-13-92", b"not json", ValueError("not JSON"), "decode"),
    ]
    made = []
    for offset, (key, value, error, stage) in enumerate(failures):
        record = _FailedOrder(source_topic, 0, offset, key, value, (("trace", b"abc"),))
        letter = dead_letter(
            "ordersapp.dlq", record, error, stage=stage, stream="sum_orders", limit=1 << 20
        )
        made.append(Record(letter.key, letter.value, tuple(letter.headers)))
    return tuple(made)


@dataclass(frozen=True)
class Scenario:
    """One test's topics and group on one broker, set up by `prepare`."""

    bootstrap: str
    prefix: str

    @property
    def produced(self) -> str:
        """Where the client writes the orders."""
        return f"{self.prefix}.produced"

    @property
    def orders(self) -> str:
        """The orders the reference wrote, in one batch."""
        return f"{self.prefix}.orders"

    @property
    def dlq(self) -> str:
        """The dead letters the reference wrote (as `ordersapp.dlq` holds them)."""
        return f"{self.prefix}.dlq"

    @property
    def group(self) -> str:
        """A consumer group with offsets committed at the end of `orders`."""
        return f"{self.prefix}.group"

    @property
    def dead_letters(self) -> tuple[Record, ...]:
        return dead_letters(self.orders)


async def prepare(bootstrap: str, prefix: str) -> Scenario:
    """Create the topics (one partition each) and write the orders, dead letters and offsets."""
    scenario = Scenario(bootstrap, prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = (scenario.produced, scenario.orders, scenario.dlq)
        await admin.create_topics([NewTopic(name, 1, 1) for name in topics])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        batch = producer.create_batch()
        for key, value in ORDERS:
            batch.append(key=key, value=value, timestamp=None)
        await (await producer.send_batch(batch, scenario.orders, partition=0))
        for letter in scenario.dead_letters:
            await producer.send_and_wait(
                scenario.dlq, letter.value, key=letter.key, headers=list(letter.headers)
            )
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=scenario.group)
    await consumer.start()
    try:
        partition = TopicPartition(scenario.orders, 0)
        consumer.assign([partition])
        await consumer.commit({partition: len(ORDERS)})
    finally:
        await consumer.stop()
    return scenario


async def read_back(
    bootstrap: str, topic: str, count: int, timeout: float = CALL_TIMEOUT
) -> list[Record]:
    """Up to `count` records of `topic` from its start (the reference reader; no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[Record] = []
    try:
        consumer.assign([TopicPartition(topic, 0)])
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                got += [Record(r.key, r.value, tuple(r.headers)) for r in records]
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
    return got


def check_orders(got: Sequence[Record], what: str) -> None:
    """Raise ClientFailure unless `got` is exactly the seed's orders (keys and JSON values)."""
    expect(got, [Record(key, value) for key, value in ORDERS], what, headers=False)


def expect(got: Sequence[Record], want: Sequence[Record], what: str, *, headers: bool) -> None:
    """Raise ClientFailure unless `got` holds the same records as `want` (in any order)."""

    def seen(records: Sequence[Record]) -> Counter[Record]:
        return Counter(r if headers else Record(r.key, r.value) for r in records)

    if len(got) != len(want):
        raise ClientFailure(f"{what}: {len(got)} of {len(want)} records")
    if seen(got) != seen(want):
        raise ClientFailure(f"{what}: the records differ from those written")


def produced_by_client(scenario: Scenario) -> None:
    """Check the orders a client wrote to `scenario.produced`, read back by the reference."""
    # The client said it delivered them, so they are there already or never will be.
    got = asyncio.run(read_back(scenario.bootstrap, scenario.produced, len(ORDERS), timeout=3.0))
    check_orders(got, "its orders read back")


def one_line(text: str, scenario: Scenario) -> str:
    """The last line of `text` that says something, without this run's address and topics."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else "(no output)"
    line = line.replace(scenario.bootstrap, "BROKER").replace(scenario.prefix, "TOPIC")
    line = re.sub(r"127\.0\.0\.1:\d+", "BROKER", line)
    line = re.sub(r"^%\d\|\d+\.\d+\|", "%", line)  # librdkafka's level and timestamp
    return line[:200]
