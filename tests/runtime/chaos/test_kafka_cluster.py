"""A real three-node Apache Kafka's faults under a running app: nothing lost, nothing twice.

The cluster (`KafkaCluster`: KRaft, replication 3, min.insync.replicas 2, all on 127.0.0.1)
takes about 8 s to start. One node is SIGKILLed mid-stream: the one leading every partition of
the app's input and changelog and coordinating its transactions. Then every
node is restarted in turn (SIGTERM, controlled shutdown). The example app runs under
`aerogrid run` all along and must never restart; its grid must end equal to the exact sum of
the orders in the input topic, and a live subscriber must see the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.errors import KafkaError

from aerogrid.client import GridClient
from support.apps import RunningApp, read_topic, write_orders_app
from support.brokers import KafkaCluster
from support.workspace import eventually

pytestmark = pytest.mark.timeout(240)

PARTITIONS = 4
GRID = "product_sum"
Sums = dict[str, dict[str, object]]


def order(i: int) -> tuple[bytes, bytes]:
    rng = random.Random(i)
    value = {"product": f"p{rng.randrange(9)}", "quantity": rng.randint(1, 9)}
    return f"order-{i}".encode(), json.dumps(value).encode()


def sums(values: list[bytes]) -> Sums:
    units: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for value in values:
        o = json.loads(value)
        units[o["product"]] += o["quantity"]
        count[o["product"]] += 1
    return {p: {"units_sold": units[p], "orders": count[p]} for p in units}


async def coordinators(bootstrap: str, name: str) -> tuple[int, int]:
    """The nodes coordinating transactional id `name` and consumer group `name`."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        found: list[int] = []
        for kind in (CoordinationType.TRANSACTION, CoordinationType.GROUP):
            for _ in range(100):  # the first lookup creates the internal topic
                with contextlib.suppress(KafkaError):
                    found.append(await client.coordinator_lookup(kind, name))
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"no {kind.name} coordinator for {name}")
        return found[0], found[1]
    finally:
        await client.close()


async def pick_app(cluster: KafkaCluster, base: str) -> tuple[str, int]:
    """An app name and the node coordinating its transactions.

    Preferably a name whose consumer group that node coordinates too; whether one exists depends
    on where Kafka placed the internal topics' leaders, so after 16 tries any name will do.
    """
    fallback: tuple[str, int] | None = None
    for attempt in range(16):
        name = f"{base}-{attempt}"
        txn, group = await coordinators(cluster.bootstrap, name)
        if txn == group:
            return name, txn
        fallback = fallback or (name, txn)
    assert fallback is not None
    return fallback


async def create_led_by(cluster: KafkaCluster, leader: int, topics: dict[str, int]) -> None:
    """Create `topics` (name -> partitions), replicated on every node, led by `leader`."""
    others = [n.node_id for n in cluster.nodes if n.node_id != leader]
    new = [
        NewTopic(
            name,
            -1,
            -1,
            replica_assignments={p: [leader, *others] for p in range(partitions)},
            topic_configs={"cleanup.policy": "compact"} if name.endswith(".changelog") else None,
        )
        for name, partitions in topics.items()
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(new)
    finally:
        await admin.close()
    assert all(error == 0 for _, error, *_ in response.topic_errors), response


class Feeder:
    """Orders into the input topic, about 200 a second, until stopped; keeps what was acked."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.acked: dict[bytes, bytes] = {}
        self.failed: list[tuple[bytes, BaseException]] = []
        self.stop = asyncio.Event()

    def _done(self, key: bytes, value: bytes, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            self.acked[key] = value
        else:
            self.failed.append((key, error))

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        await producer.start()
        try:
            i = 0
            while not self.stop.is_set():
                for _ in range(10):
                    key, value = order(i)
                    i += 1
                    sent = await producer.send(self.topic, key=key, value=value)
                    sent.add_done_callback(lambda f, k=key, v=value: self._done(k, v, f))
                await asyncio.sleep(0.05)
            await producer.flush()
        finally:
            await producer.stop()


class Follower:
    """A live subscriber of the grid, keeping its own copy of it."""

    def __init__(self, target: str, app: str) -> None:
        self.target = target
        self.app = app
        self.rows: dict[str, Any] = {}

    async def run(self) -> None:
        async with GridClient(self.target) as client:
            async for update in client.subscribe(self.app, GRID):
                self.rows = update.apply_to(self.rows)

    def orders(self) -> int:
        return sum(int(row["orders"]) for row in self.rows.values())

    async def beyond(self, orders: int) -> bool:
        return self.orders() > orders


@dataclass
class Fed:
    """The orders app under `aerogrid run`, a feeder of orders and a live follower."""

    app: RunningApp
    feeder: Feeder
    follower: Follower

    async def settle(self, bootstrap: str, topic: str, timeout: float) -> Sums:
        """Stop the feed; the grid every acknowledged order makes, once the follower has it."""
        self.feeder.stop.set()
        await self._tasks[0]
        records = await read_topic(bootstrap, topic, len(self.feeder.acked))
        assert sorted(m.key for m in records) == sorted(self.feeder.acked), "orders lost"
        want = sums([m.value for m in records])

        async def converged() -> bool:
            return self.follower.rows == want

        await eventually(converged, "the subscriber sees every order once", timeout)
        assert self.app.proc is not None and self.app.proc.poll() is None, (
            f"the app exited:\n{self.app.log_tail()}"
        )
        return want

    _tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def fed_app(bootstrap: str, folder: Path, name: str, topic: str) -> AsyncIterator[Fed]:
    app = RunningApp(write_orders_app(folder, name, topic, partitions=PARTITIONS), bootstrap)
    fed = Fed(app, Feeder(bootstrap, topic), Follower("", name))
    try:
        app.start()
        fed.follower.target = app.target
        fed._tasks = [
            asyncio.create_task(fed.feeder.run()),
            asyncio.create_task(fed.follower.run()),
        ]
        yield fed
    finally:
        fed.feeder.stop.set()
        for task in fed._tasks:
            task.cancel()
        await asyncio.gather(*fed._tasks, return_exceptions=True)
        app.stop()


async def test_leader_kill_and_rolling_restart_keep_the_grid_exact(
    kafka_cluster: KafkaCluster, unique_name: str, tmp_path: Path
) -> None:
    """One node SIGKILLed mid-stream, then all three restarted in turn: the app rides it out.

    The killed node leads every input and changelog partition and coordinates the app's
    transactions (and its consumer group when `pick_app` finds such a name), so the one kill
    moves all of them at once, in whatever step of a transaction the app is.
    """
    cluster = kafka_cluster
    await cluster.wait_in_sync()
    name, victim = await pick_app(cluster, unique_name)
    topic = f"{name}-orders"
    changelog = f"{name}.{GRID}.changelog"
    # Created here first so that the killed node leads them all (the app would create them
    # with the cluster's replication too: see the next test).
    await create_led_by(cluster, victim, {topic: PARTITIONS, changelog: 1, f"{name}.dlq": 1})
    async with fed_app(cluster.bootstrap, tmp_path, name, topic) as fed:
        app, feeder, follower = fed.app, fed.feeder, fed.follower
        assert app.info["guarantee"] == "exactly-once"
        await eventually(lambda: follower.beyond(500), "the app consumes", 30)
        led = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        led.append(TopicPartition(changelog, 0))
        before = await cluster.partitions([topic, changelog])
        assert {before[tp].leader for tp in led} == {victim}

        await asyncio.to_thread(cluster.kill, victim)

        async def moved() -> bool:
            now = await cluster.partitions([topic, changelog])
            return all(now[tp].leader not in (-1, victim) for tp in led)

        await eventually(moved, f"new leaders after node {victim} died", 30)
        seen = follower.orders()
        await eventually(lambda: follower.beyond(seen), "the app consumes on new leaders", 30)
        await asyncio.to_thread(cluster.restart, victim)
        await cluster.wait_in_sync()
        for node in cluster.nodes:
            await asyncio.to_thread(cluster.shut_down, node.node_id)
            await asyncio.to_thread(cluster.restart, node.node_id)
            await cluster.wait_in_sync()

        want = await fed.settle(cluster.bootstrap, topic, 30)
        assert not feeder.failed, feeder.failed[:3]
        async with GridClient(app.target) as client:
            assert await client.snapshot(name, GRID) == want
        assert httpx.get(f"{app.http}/readyz", timeout=5).status_code == 200
        assert app.terminate() == 0, app.log_tail()


async def test_the_app_creates_its_topics_replicated(
    kafka_cluster: KafkaCluster, unique_name: str, tmp_path: Path
) -> None:
    """Topics the app creates (input, changelog, dead letters) get the cluster's replication.

    With one replica, the broker holding a changelog is a single point of failure: while it is
    down every transaction waits on that partition, and after aiokafka's 40 s request timeout
    the send fails with LeaderNotAvailableError and the app exits 1 (seen on this cluster).
    """
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=PARTITIONS)
    with RunningApp(path, kafka_cluster.bootstrap):
        topics = [topic, f"{unique_name}.{GRID}.changelog", f"{unique_name}.dlq"]
        states = await kafka_cluster.partitions(topics)
    replicas = {tp.topic: len(state.replicas) for tp, state in states.items()}
    assert replicas == dict.fromkeys(topics, kafka_cluster.size)


async def test_a_changelog_away_longer_than_the_request_timeout_stalls_then_commits_once(
    kafka_cluster: KafkaCluster, unique_name: str, tmp_path: Path
) -> None:
    """A changelog kept on one broker (an operator's choice): that broker dies for 50 s.

    Every transaction then waits on its partition, and aiokafka fails the send after its
    40 s request timeout (LeaderNotAvailableError). That used to end the app (exit 1); now
    the batch stays in the grids, the commit is retried with the same outputs and input
    positions, the app says it is degraded meanwhile, and it commits once when the broker
    is back.
    """
    cluster = kafka_cluster
    await cluster.wait_in_sync()
    victim = cluster.nodes[-1].node_id
    others = [n.node_id for n in cluster.nodes if n.node_id != victim]
    name = unique_name
    topic = f"{name}-orders"
    changelog = f"{name}.{GRID}.changelog"
    await create_led_by(cluster, others[0], {topic: PARTITIONS, f"{name}.dlq": 1})
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(changelog, -1, -1, replica_assignments={0: [victim]})])
    finally:
        await admin.close()
    async with fed_app(cluster.bootstrap, tmp_path, name, topic) as fed:
        app, follower = fed.app, fed.follower
        await eventually(lambda: follower.beyond(200), "the app consumes", 30)
        await asyncio.to_thread(cluster.kill, victim)

        async def stalled() -> bool:
            ready = httpx.get(f"{app.http}/readyz", timeout=5).text
            return "a batch waits to be committed" in ready

        await eventually(stalled, "the app to say its batch waits (after 40 s)", 60)
        assert app.proc is not None and app.proc.poll() is None, app.log_tail()
        await asyncio.to_thread(cluster.restart, victim)
        await cluster.wait_in_sync()
        await fed.settle(cluster.bootstrap, topic, 60)
        assert httpx.get(f"{app.http}/readyz", timeout=5).text.strip() == "ready: active"
        assert app.metric("aerogrid_commit_retries_total", {"app": name}) >= 1
