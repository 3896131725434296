"""Replicas of one app on one broker: kills, a rolling restart, resumes, serve-only.

Real `aerogrid run` processes of the seed orders app (`support.replicas.ReplicaSet`, ports
fixed across restarts), real `GridClient` subscribers given every process's target, and
orders streaming in throughout. The failover timeout is 2 s (`AEROGRID_FAILOVER_SECONDS`;
the test Kafka allows it, a default Apache Kafka's minimum session timeout is 6 s).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from aerogrid.client import GridClient, GridUpdate
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker
from support.orders import converged, expected_sums, orders
from support.replicas import OrderFeed, ReplicaSet, StreamLosses, Subscriber, until

pytestmark = pytest.mark.timeout(300)

GRID = "product_sum"
FAST = {"AEROGRID_FAILOVER_SECONDS": "2"}
SUBSCRIBERS = 300
KINDS = ("delta", "snapshot")


def resumes(app: RunningApp, kind: str) -> float:
    """Subscriptions this process resumed by `kind` ("delta" or "snapshot")."""
    return app.metric("aerogrid_resumes_total", {"grid": GRID, "kind": kind})


async def same_epoch(replicas: ReplicaSet, timeout: float = 30.0) -> str:
    """Wait until every live process names one epoch for the grid: the active announced
    the app's lineage and every process read it. Before that each process has an epoch
    of its own, and a stream opened then keeps it (the server does not tell it the new
    one), so its next resume on another process is a snapshot."""
    epochs: set[str] = set()

    def agreed() -> bool:
        epochs.clear()
        epochs.update(app.replica()["grids"][GRID]["epoch"] for app in replicas.alive())
        return len(epochs) == 1 and not next(iter(epochs)).startswith("new-")

    await until(agreed, lambda: f"one epoch on every process: {epochs}", timeout)
    return epochs.pop()


@dataclass
class Moved:
    """What losing one process did to the subscribers."""

    victim: str
    subscribers: int
    seconds: float
    #: How the clients that moved were answered, and what the surviving servers counted.
    client_kinds: Counter[str] = field(default_factory=Counter)
    server_kinds: Counter[str] = field(default_factory=Counter)


async def lose(
    replicas: ReplicaSet,
    victim: RunningApp,
    subscribers: list[Subscriber],
    losses: StreamLosses,
    *,
    kill: bool,
) -> Moved:
    """SIGKILL (or SIGTERM) `victim` and wait until each of its subscribers resumed on
    another process; the subscribers of the other processes must not move at all."""
    mine = [s for s in subscribers if s.endpoint == victim.target]
    before = {s: s.moves for s in subscribers}
    survivors = [app for app in replicas.alive() if app is not victim]
    served = {app.target: {k: resumes(app, k) for k in KINDS} for app in survivors}
    losses.dying.add(victim.target)
    if kill:
        victim.kill()
    else:
        assert await asyncio.to_thread(victim.terminate) == 0, victim.log_tail()

    def resumed(s: Subscriber) -> bool:
        return s.endpoint != victim.target and s.moves[1].total() > before[s][1].total()

    seconds = await until(
        lambda: all(resumed(s) for s in mine),
        lambda: (
            f"{victim.info['replica']}'s subscribers resumed elsewhere: "
            f"{sum(not resumed(s) for s in mine)} of {len(mine)} not yet"
        ),
        60,
        subscribers=subscribers,
    )
    moved = [s for s in subscribers if s.moves != before[s]]
    assert set(moved) == set(mine), "a subscriber of a surviving process lost its stream"
    result = Moved(str(victim.info["replica"]), len(mine), seconds)
    for s in mine:
        result.client_kinds += s.moves[1] - before[s][1]
    for app in survivors:
        for kind in KINDS:
            result.server_kinds[kind] += int(resumes(app, kind) - served[app.target][kind])
    print(result)
    return result


async def test_three_replicas_and_300_subscribers_survive_kills_and_a_rolling_restart(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """SIGKILL of the active, then of a standby, both started again, then a rolling restart.

    Throughout, orders stream in and 300 subscribers (one GridClient each, given the three
    targets: each starts on one at random) follow the grid. Only the subscribers of the
    process that goes lose their stream, and they resume on another process from the
    deltas they missed; the standby that takes over counts the failover; at the end every
    process and every subscriber holds the exact grid. The same on both brokers (the
    embedded one through checkpoints).
    """
    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, unique_name, topic)
    subscribers: list[Subscriber] = []
    with (
        ReplicaSet(app_file, broker.bootstrap, 3, env=FAST) as replicas,
        StreamLosses() as losses,
    ):
        await replicas.start()
        async with OrderFeed(broker.bootstrap, topic) as feed:
            await same_epoch(replicas)
            subscribers = [
                Subscriber(replicas.targets, unique_name, GRID, min_interval_ms=200)
                for _ in range(SUBSCRIBERS)
            ]
            try:
                await until(
                    lambda: all(s.updates for s in subscribers),
                    "every subscriber's first snapshot",
                    60,
                    subscribers=subscribers,
                )
                spread = Counter(s.endpoint for s in subscribers)
                assert set(spread) == set(replicas.targets), spread
                moves: list[Moved] = []

                # 1. SIGKILL of the active: a standby takes over, warm.
                first = await replicas.wait_for_active()
                moves.append(await lose(replicas, first, subscribers, losses, kill=True))
                second = await replicas.wait_for_active(not_=first, timeout=30)
                assert second.metric("aerogrid_failovers_total") == 1
                assert second.replica()["failovers"] == 1

                # 2. SIGKILL of the standby: its subscribers go to the one process left.
                (standby,) = [app for app in replicas.alive() if app is not second]
                moves.append(await lose(replicas, standby, subscribers, losses, kill=True))

                # 3. Both started again; 4. a rolling restart, one process at a time.
                await replicas.start(first, standby)
                losses.dying -= {first.target, standby.target}
                for app in replicas.apps:
                    moves.append(await lose(replicas, app, subscribers, losses, kill=False))
                    await replicas.start(app)
                    losses.dying.discard(app.target)
            finally:
                await feed.stop()
                want = expected_sums(feed.sent)
                try:
                    await until(
                        lambda: all(s.rows == want for s in subscribers),
                        lambda: f"{sum(s.rows != want for s in subscribers)} subscribers inexact",
                        60,
                        subscribers=subscribers,
                    )
                finally:
                    await asyncio.gather(*(s.stop() for s in subscribers))
        for app in replicas.apps:
            assert await converged(app.target, unique_name, GRID, want) == want
    assert not losses.unexpected, losses.unexpected[:5]
    assert set(losses.codes) == {"UNAVAILABLE"}, losses.codes
    # Every move was a resume from deltas: the clients and the servers say so.
    for moved in moves:
        assert moved.client_kinds == Counter(delta=moved.subscribers), moved
        assert moved.server_kinds == Counter(delta=moved.subscribers), moved
    print(f"spread {sorted(spread.values())}, orders {len(feed.sent)}, lost {dict(losses.codes)}")


async def test_a_subscriber_resumes_on_another_replica_with_only_the_deltas_it_missed(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """A subscriber read the grid on the active A up to (epoch, seq); A is SIGKILLed and
    orders for other products arrive; resuming on B from (epoch, seq) it is sent deltas
    of those products only (no snapshot), and B counts a resume from deltas."""
    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, unique_name, topic)
    seen = orders(300, seed=41)
    missed: list[tuple[bytes | None, bytes | None]] = [
        (f"late-{i}".encode(), json.dumps({"product": f"late{i % 2}", "quantity": 1}).encode())
        for i in range(30)
    ]
    with ReplicaSet(app_file, broker.bootstrap, 2, env=FAST) as replicas:
        await replicas.start()
        a, b = replicas.apps
        await produce(broker.bootstrap, topic, seen)
        epoch = await same_epoch(replicas)
        want = expected_sums(seen)
        rows: dict[str, dict[str, object]] = {}
        async with GridClient(a.target) as client:
            async for update in client.subscribe(unique_name, GRID):
                rows = update.apply_to(rows)
                if rows == want:
                    assert update.epoch == epoch
                    seq = update.seq
                    break
        a.kill()
        await produce(broker.bootstrap, topic, missed)
        before = {kind: resumes(b, kind) for kind in KINDS}
        updates: list[GridUpdate] = []
        want = expected_sums(seen + missed)
        async with GridClient(b.target) as client:
            async with asyncio.timeout(30):
                async for update in client.subscribe(
                    unique_name, GRID, resume_epoch=epoch, resume_seq=seq
                ):
                    updates.append(update)
                    rows = update.apply_to(rows)
                    if rows == want:
                        break
            assert client.resumes == Counter(delta=1)
        assert not any(u.snapshot for u in updates), updates
        assert {key for u in updates for key in u.upserts} == {"late0", "late1"}, updates
        assert all(u.epoch == epoch and u.seq > seq for u in updates), updates
        assert resumes(b, "delta") == before["delta"] + 1
        assert resumes(b, "snapshot") == before["snapshot"]


async def test_a_serve_only_replica_never_processes_and_serves_the_exact_grid(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """`--serve-only` follows and serves; left alone it does not take over: the grid just
    stops moving while its readiness says serve-only; when an active is back it catches up."""
    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, unique_name, topic)
    first, second = orders(200, seed=51), orders(200, seed=52)
    extra = [(), ("--serve-only",)]
    with ReplicaSet(app_file, broker.bootstrap, 2, env=FAST, extra_args=extra) as replicas:
        await replicas.start()
        active, serving = replicas.apps
        await produce(broker.bootstrap, topic, first)
        assert await converged(serving.target, unique_name, GRID, expected_sums(first)) == (
            expected_sums(first)
        )
        active.kill()
        await produce(broker.bootstrap, topic, second)
        await asyncio.sleep(3 * float(FAST["AEROGRID_FAILOVER_SECONDS"]))
        state = serving.replica()
        assert (state["role"], state["active"], state["failovers"]) == ("serve-only", None, 0)
        ready = httpx.get(f"{serving.http}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.text.startswith("ready: serve-only, lag 0")
        assert serving.metric("aerogrid_replica_role", {"role": "serve-only"}) == 1
        assert serving.metric("aerogrid_replica_role", {"role": "active"}) == 0
        async with GridClient(serving.target) as client:
            assert await client.snapshot(unique_name, GRID) == expected_sums(first)
        await replicas.start(active)
        want = expected_sums(first + second)
        assert await converged(serving.target, unique_name, GRID, want) == want
        assert serving.replica()["role"] == "serve-only"
