"""GridClient across the processes of one app: the one it is on dies, it moves on.

Two (or more) real `aerogrid run` processes of one app on one broker; a client given all
their targets starts on one of them; SIGKILL of that process moves its stream to another
process, where it resumes and ends with the exact grid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from aerogrid.client import ClientRow, GridClient
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker
from support.orders import expected_sums, orders

pytestmark = pytest.mark.timeout(300)

GRID = "product_sum"
Rows = dict[str, ClientRow]


@contextlib.contextmanager
def processes(app_file: Path, bootstrap: str, count: int) -> Iterator[list[RunningApp]]:
    """`count` processes of one app, each started once the previous one serves."""
    started: list[RunningApp] = []
    try:
        for _ in range(count):
            started.append(RunningApp(app_file, bootstrap).start(timeout=90))
        yield started
    finally:
        for app in started:
            app.stop()


class Follower:
    """A client following the grid in a task: its copy of the grid, kept up to date."""

    def __init__(self, client: GridClient, app: str, apps: list[RunningApp]) -> None:
        self.client = client
        self.apps = apps
        self.rows: Rows = {}
        self.updates = 0
        self.snapshots = 0
        self._task = asyncio.create_task(self._follow(app))

    async def _follow(self, app: str) -> None:
        async for update in self.client.subscribe(app, GRID):
            self.rows = update.apply_to(self.rows)
            self.updates += 1
            self.snapshots += update.snapshot

    async def has_rows(self, want: object, timeout: float = 90) -> None:
        await self._until(lambda: self.rows == want, f"the grid {want}", timeout)

    async def has_updates(self, timeout: float = 60) -> None:
        await self._until(lambda: self.updates > 0, "a first update", timeout)

    async def _until(self, condition: Callable[[], bool], what: str, timeout: float) -> None:
        """Wait for `condition`; fail saying `what` and the client's state, or why it stopped."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self._task.done():
                self._task.result()  # raises what ended the subscription
                raise AssertionError("the subscription ended")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not within {timeout:.0f} s: {what}; on {self.client.endpoint}, "
                    f"failovers {self.client.failovers}, resumes {dict(self.client.resumes)}, "
                    f"rows {self.rows}\n{self.logs()}"
                )
            await asyncio.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(f"-- {app.target}:\n{app.log_tail(15)}" for app in self.apps)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@contextlib.asynccontextmanager
async def following(apps: list[RunningApp], name: str) -> AsyncIterator[Follower]:
    targets = [app.target for app in apps]
    async with GridClient(targets, reconnect_delay=0.1, reconnect_max=1.0) as client:
        follower = Follower(client, name, apps)
        try:
            yield follower
        finally:
            await follower.stop()


def serving(apps: list[RunningApp], endpoint: str | None) -> RunningApp:
    """The process a client is on."""
    (found,) = [app for app in apps if app.target == endpoint]
    return found


async def test_client_moves_to_another_process_and_converges_exactly(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, unique_name, topic)
    first, second = orders(300, seed=21), orders(300, seed=22)
    with processes(app_file, broker.bootstrap, 2) as apps:
        await produce(broker.bootstrap, topic, first)
        async with following(apps, unique_name) as follower:
            await follower.has_rows(expected_sums(first), 60)
            victim = serving(apps, follower.client.endpoint)
            survivor = next(app for app in apps if app is not victim)
            failovers, resumes = follower.client.failovers, sum(follower.client.resumes.values())

            victim.kill()
            await produce(broker.bootstrap, topic, second)
            await follower.has_rows(expected_sums(first + second))

            assert follower.client.endpoint == survivor.target
            assert follower.client.failovers == failovers + 1
            assert sum(follower.client.resumes.values()) == resumes + 1
            assert survivor.proc is not None and survivor.proc.poll() is None

            # `aerogrid watch` with both endpoints, the dead one among them, the same way.
            watch = ["watch", unique_name, GRID, "--once", "--json"]
            both = f"{victim.target},{survivor.target}"
            watched = subprocess.run(
                [sys.executable, "-m", "aerogrid", *watch, "--endpoint", both],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert json.loads(watched.stdout.strip().splitlines()[-1]) == follower.rows


# -- with the replica sets of the runtime (one active, standbys, shared (epoch, seq)) ----


async def roles_settle(
    apps: list[RunningApp], timeout: float = 60
) -> tuple[RunningApp, list[RunningApp]]:
    """Wait for one active and standbys for the rest: (the active, the standbys)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [app.replica()["role"] for app in apps]
        if sorted(found) == ["active"] + ["standby"] * (len(apps) - 1):
            standbys = [app for app, r in zip(apps, found, strict=True) if r == "standby"]
            return apps[found.index("active")], standbys
        if time.monotonic() > deadline:
            raise AssertionError(f"roles did not settle: {found}")
        await asyncio.sleep(0.2)


async def one_lineage(apps: list[RunningApp], timeout: float = 60) -> None:
    """Wait until every process serves the grid under one epoch, past its first cycle.

    A replica of a new app numbers its grid provisionally until it reads the active's first
    changelog record; only then do its (epoch, seq) mean the same as the others'.
    """
    deadline = time.monotonic() + timeout
    while True:
        grids = [app.replica()["grids"][GRID] for app in apps]
        if len({g["epoch"] for g in grids}) == 1 and min(g["seq"] for g in grids) > 0:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the replicas do not agree on an epoch: {grids}")
        await asyncio.sleep(0.1)


def on(followers: list[Follower], app: RunningApp) -> list[Follower]:
    return [f for f in followers if f.client.endpoint == app.target]


async def test_resumes_after_failover_are_served_from_deltas(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """Three replicas; SIGKILL of the active, then of a standby: the subscribers of each
    resume on another replica with the deltas they missed (never a snapshot), those of
    the survivors never reconnect, and every one ends with the exact grid."""
    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, unique_name, topic)
    batches = [orders(200, seed=31 + i) for i in range(3)]
    with processes(app_file, broker.bootstrap, 3) as apps:
        await roles_settle(apps)
        await produce(broker.bootstrap, topic, batches[0])
        await one_lineage(apps)
        async with contextlib.AsyncExitStack() as stack:
            followers: list[Follower] = []
            # Clients start at random replicas: add them until every replica has one.
            while len(followers) < 6 or not all(on(followers, app) for app in apps):
                assert len(followers) < 40, "clients do not spread over the replicas"
                follower = await stack.enter_async_context(following(apps, unique_name))
                await follower.has_updates()
                followers.append(follower)
            for step in (1, 2):
                alive = [app for app in apps if app.proc is not None and app.proc.poll() is None]
                active, standbys = await roles_settle(alive)
                victim = active if step == 1 else standbys[0]
                moved = on(followers, victim)
                before = {id(f): (f.client.failovers, f.client.resumes.copy()) for f in followers}
                victim.kill()
                await produce(broker.bootstrap, topic, batches[step])
                want = expected_sums([r for batch in batches[: step + 1] for r in batch])
                for follower in followers:
                    await follower.has_rows(want)
                for follower in followers:
                    failovers, resumes = before[id(follower)]
                    if follower in moved:
                        # Resumed once, from deltas; it may have tried the replica killed
                        # before on its way (another client found that one dead, not it).
                        resumes["delta"] += 1
                        assert follower.client.failovers - failovers in (1, 2)
                    else:  # never disconnected
                        assert follower.client.failovers == failovers
                    assert follower.client.resumes == resumes
            assert [f.snapshots for f in followers] == [1] * len(followers)
            (last,) = [app for app in apps if app.proc is not None and app.proc.poll() is None]
            assert last.replica()["role"] == "active"
            assert last.metric("aerogrid_resumes_total", {"kind": "snapshot"}) == 0
            assert last.metric("aerogrid_resumes_total", {"kind": "delta"}) >= 1
