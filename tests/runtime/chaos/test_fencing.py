"""Two processes that both believe they are the active cannot both commit.

The active A is paused (SIGSTOP) while orders stream in: its session in the replica
group expires and the standby B takes over. A is then woken (SIGCONT) still believing it
is the active, with a batch in hand. On Apache Kafka B's transactional producer (the
app's one transactional id) fenced A's: whatever A tries to commit fails, so it exits
saying it was fenced, or steps down when it hears of the new assignment first. The
grid is exact and the committed changelog's cycle numbers never go back, which two
committing processes would make them do.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from aerogrid.engine import checkpoints, cycles
from support.apps import RunningApp, write_orders_app
from support.brokers import ApacheKafka, Broker, TansuBroker
from support.orders import converged, expected_sums
from support.replicas import OrderFeed, ReplicaSet, until

pytestmark = pytest.mark.timeout(180)

GRID = "product_sum"
FAILOVER_SECONDS = 2.0


@contextmanager
def paused(app: RunningApp) -> Iterator[None]:
    """SIGSTOP the process group for the block; SIGCONT whatever happens."""
    assert app.proc is not None
    os.killpg(app.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(app.proc.pid, signal.SIGCONT)


def role(app: RunningApp) -> str | None:
    """The role of a process (None: it does not answer)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        return str(app.replica()["role"])
    return None


def exited(app: RunningApp) -> int | None:
    assert app.proc is not None
    return app.proc.poll()


@dataclass(frozen=True)
class Record:
    """A changelog record's cycle: its number, the checkpointed generation that wrote it
    (None with transactions) and whether it ends its grid's cycle."""

    number: int
    generation: int | None
    last: bool


async def changelog(bootstrap: str, topic: str) -> list[Record]:
    """Every record of a changelog that a read_committed reader sees."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)  # changelogs have one partition
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[Record] = []
        while await consumer.position(tp) < end:
            for m in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                mark = cycles.mark_of(m.headers)
                assert mark is not None, m
                cycle = checkpoints.cycle_of(m.headers)
                found.append(Record(mark.number, cycle[0] if cycle else None, mark.last))
        return found
    finally:
        await consumer.stop()


@dataclass(frozen=True)
class Outcome:
    #: A's exit code when it exited by itself (None: it stayed, as a standby).
    code: int | None
    log: str
    changelog: list[Record]


async def pause_the_active_until_replaced(
    broker: Broker, unique_name: str, tmp_path: Path
) -> Outcome:
    """Run A and B, pause A while orders stream until B is the active and committed, wake
    A, wait for A to exit or step down. The grid is exact on B, and on C, a process
    started afterwards that restores it from the changelog."""
    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, unique_name, topic)
    env = {"AEROGRID_FAILOVER_SECONDS": str(FAILOVER_SECONDS)}
    with ReplicaSet(app_file, broker.bootstrap, 3, env=env) as replicas:
        a, b, c = replicas.apps
        await replicas.start(a)
        await replicas.start(b)
        assert role(a) == "active" and role(b) == "standby"
        async with OrderFeed(broker.bootstrap, topic, per_tick=20, tick=0.05) as feed:
            await until(lambda: a.replica()["grids"][GRID]["seq"] > 3, "A commits", 30)
            with paused(a):
                await until(lambda: role(b) == "active", "B takes over", 30)
                seq = b.replica()["grids"][GRID]["seq"]
                await until(lambda: b.replica()["grids"][GRID]["seq"] > seq, "B commits", 30)
            await until(
                lambda: exited(a) is not None or role(a) == "standby",
                "A stops being the active",
                30,
            )
        want = expected_sums(feed.sent)
        assert await converged(b.target, unique_name, GRID, want) == want
        await replicas.start(c)
        assert await converged(c.target, unique_name, GRID, want) == want
        code = exited(a)
        if code is None:
            rows = await converged(a.target, unique_name, GRID, want, timeout=5)
            print(f"A stayed a standby; its copy is {'exact' if rows == want else 'NOT exact'}")
        return Outcome(
            code,
            a.log_file.read_text(),
            await changelog(broker.bootstrap, f"{unique_name}.{GRID}.changelog"),
        )


async def test_a_paused_active_is_fenced_by_its_successor_and_commits_nothing(
    apache_kafka: ApacheKafka, unique_name: str, tmp_path: Path
) -> None:
    """Apache Kafka only: the embedded broker has no transactions (see the next test)."""
    outcome = await pause_the_active_until_replaced(apache_kafka, unique_name, tmp_path)
    if outcome.code is None:  # it heard of the new active before trying to commit
        assert "is a standby again" in outcome.log, outcome.log
    else:
        assert outcome.code == 1, outcome.log
        assert "fenced by another replica" in outcome.log, outcome.log
    # Two committing processes would have written the cycle numbers out of order, or the
    # end of one grid cycle twice.
    numbers = [r.number for r in outcome.changelog]
    assert numbers == sorted(numbers), "a cycle committed after a later one"
    ends = Counter(r.number for r in outcome.changelog if r.last)
    assert max(ends.values()) == 1, "a cycle of the grid committed twice"
    print(f"A exited with {outcome.code}; {len(ends)} cycles committed")


async def test_on_the_embedded_broker_a_paused_active_writes_on_until_it_hears_of_b(
    tansu: TansuBroker, unique_name: str, tmp_path: Path
) -> None:
    """The embedded broker has no transactions, so nothing fences the paused active A.

    What holds: once woken, A writes cycles of its own generation to the changelog
    (and their checkpoints) for a moment, interleaved with B's, until the group tells it
    that B is the active; it then exits (code 1, "lost the active role"), since its own
    copy may hold those cycles, so that its supervisor restarts it from the changelog.
    B's grid stays exact, and so does a replica restored afterwards: a checkpoint of an
    older generation that comes after a newer generation's counts for no one
    (`engine.checkpoints`), so A's late cycles are dropped like those of a cycle cut
    short. What does not hold: A published those cycles to its own subscribers, under
    seqs B used for other states, before it exited.
    """
    outcome = await pause_the_active_until_replaced(tansu, unique_name, tmp_path)
    assert outcome.code == 1, outcome.log
    assert "lost the active role" in outcome.log, outcome.log
    # (The first record, the app's lineage, belongs to no cycle's generation.)
    generations = [r.generation for r in outcome.changelog if r.generation is not None]
    assert generations[0] == 1 and max(generations) == 2, generations
    late = generations[generations.index(2) :].count(1)
    assert late, "A wrote nothing after B began (a fence would be new: say so here)"
    print(f"A wrote {late} records after B began")
