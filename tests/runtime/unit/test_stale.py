"""A degraded app's subscribers are told at once, on every heartbeat, and when it recovers.

The engine calls `GridHub.set_degraded(app, reason)` when its broker is unreachable (and
`None` when it is back). These tests drive that call directly on a real hub, endpoint and
gRPC server on loopback, and read what subscribers get: the raw messages, GridClient's
updates and `aerogrid watch`'s output. Heartbeat intervals are long (60 s) where a test
checks that the flag does not wait for the next heartbeat.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

import aerogrid
from aerogrid.client import GridClient, GridUpdate
from aerogrid.server.app_service import AppService, HostedApp
from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.grpc_server import add_services
from aerogrid.server.hub import GridHub
from aerogrid.server.identity import LOCAL_CALLER
from aerogrid.v1 import grid_pb2

APP, GRID = "prices", "quotes"
REASON = "broker localhost:1 unreachable since 10:42:05"
#: Far longer than any wait below: a message that came came because of the change.
LONG_HEARTBEAT_MS = 60_000
#: How long "at once" may take on a loaded CI machine.
PROMPT = 5.0


@dataclass
class Served:
    hub: GridHub
    grid: aerogrid.Grid
    endpoint: AppService
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def change(self, key: str, bid: float) -> None:
        self.grid[key] = {"bid": bid}
        self.hub.publish(APP, self.grid, self.grid.drain_changes())


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    app = aerogrid.App(APP, broker="localhost:1")
    grid = app.Grid(GRID, columns=["bid"])
    grid.ready = True
    hub = GridHub()
    hub.add_grid(APP, grid)
    endpoint = AppService(hub, [HostedApp(APP, "default")])
    server = grpc.aio.server()
    add_services(server, endpoint, Authenticator(AuthSettings()), is_loopback)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    s = Served(hub, grid, endpoint, server, port)
    s.change("a", 1.0)
    yield s
    await server.stop(grace=None)


def subscribe(
    served: Served, heartbeat_ms: int, min_interval_ms: int = 0
) -> AsyncGenerator[bytes, None]:
    request = grid_pb2.SubscribeRequest(
        app=APP, grid=GRID, heartbeat_interval_ms=heartbeat_ms, min_interval_ms=min_interval_ms
    )
    return served.endpoint.subscribe(request, LOCAL_CALLER)


async def receive(stream: AsyncGenerator[bytes, None]) -> grid_pb2.SubscribeResponse:
    return grid_pb2.SubscribeResponse.FromString(await asyncio.wait_for(anext(stream), PROMPT))


async def waiting(stream: AsyncGenerator[bytes, None]) -> asyncio.Task[grid_pb2.SubscribeResponse]:
    """The stream's next message, asked for now: the subscriber blocks waiting for news."""
    task = asyncio.ensure_future(receive(stream))
    for _ in range(10):
        await asyncio.sleep(0)  # no I/O in between: the subscriber is then parked
    assert not task.done()
    return task


def stale_of(message: grid_pb2.Schema | grid_pb2.Heartbeat) -> str | None:
    return message.stale.reason if message.HasField("stale") else None


async def test_subscribers_are_told_at_once_and_again_when_it_is_over(served: Served) -> None:
    stream = subscribe(served, LONG_HEARTBEAT_MS)
    try:
        schema = (await receive(stream)).schema
        assert stale_of(schema) is None
        assert (await receive(stream)).snapshot.complete
        parked = await waiting(stream)
        served.hub.set_degraded(APP, REASON)
        told = await parked
        assert told.WhichOneof("event") == "heartbeat"
        assert stale_of(told.heartbeat) == REASON
        channel = served.hub.channel(APP, GRID)
        assert channel is not None and told.heartbeat.seq == channel.seq  # nothing skipped
        # Saying the same again is no change: nothing is sent; changes still flow.
        served.hub.set_degraded(APP, REASON)
        served.change("b", 2.0)
        assert (await receive(stream)).WhichOneof("event") == "delta"
        parked = await waiting(stream)
        served.hub.set_degraded(APP, None)
        recovered = await parked
        assert recovered.WhichOneof("event") == "heartbeat"
        assert stale_of(recovered.heartbeat) is None
    finally:
        await stream.aclose()


async def test_a_rate_limited_subscriber_is_told_at_once_too(served: Served) -> None:
    stream = subscribe(served, LONG_HEARTBEAT_MS, min_interval_ms=LONG_HEARTBEAT_MS)
    try:
        await receive(stream)
        await receive(stream)
        parked = await waiting(stream)
        served.hub.set_degraded(APP, REASON)
        assert stale_of((await parked).heartbeat) == REASON
    finally:
        await stream.aclose()


async def test_every_heartbeat_repeats_it_while_it_lasts(served: Served) -> None:
    stream = subscribe(served, 100)
    try:
        await receive(stream)
        await receive(stream)
        assert stale_of((await receive(stream)).heartbeat) is None
        served.hub.set_degraded(APP, REASON)
        beats = [(await receive(stream)).heartbeat for _ in range(4)]
        assert [stale_of(b) for b in beats] == [REASON] * 4
        served.hub.set_degraded(APP, None)
        assert stale_of((await receive(stream)).heartbeat) is None
        assert stale_of((await receive(stream)).heartbeat) is None
    finally:
        await stream.aclose()


async def test_a_subscriber_joining_while_degraded_learns_it_from_the_schema(
    served: Served,
) -> None:
    served.hub.set_degraded(APP, REASON)
    # A grid added while the app is degraded (a restarted channel) is stale from the start.
    late = aerogrid.App(APP, broker="localhost:1").Grid("late", columns=["x"])
    assert served.hub.add_grid(APP, late).stale == REASON
    other = aerogrid.App("other", broker="localhost:1").Grid("g", columns=["x"])
    assert served.hub.add_grid("other", other).stale is None  # only the app said so
    stream = subscribe(served, LONG_HEARTBEAT_MS)
    try:
        assert stale_of((await receive(stream)).schema) == REASON
        assert (await receive(stream)).snapshot.complete
        served.hub.set_degraded(APP, None)
        assert stale_of((await receive(stream)).heartbeat) is None
    finally:
        await stream.aclose()


async def test_grid_client_updates_carry_the_flag(served: Served) -> None:
    async with GridClient(served.target) as client:
        updates = client.subscribe(APP, GRID, heartbeat_interval_ms=LONG_HEARTBEAT_MS)

        async def next_update() -> GridUpdate:
            return await asyncio.wait_for(anext(updates), PROMPT)

        try:
            first = await next_update()
            assert first.snapshot and not first.stale and first.stale_reason is None
            served.hub.set_degraded(APP, REASON)
            # Yielded though heartbeats were not asked for: the change is news.
            told = await next_update()
            assert (told.heartbeat, told.stale, told.stale_reason) == (True, True, REASON)
            assert told.apply_to({"a": {"bid": 1.0}}) == {"a": {"bid": 1.0}}  # values kept
            served.change("a", 3.0)
            delta = await next_update()
            assert (delta.upserts, delta.stale, delta.stale_reason) == (
                {"a": {"bid": 3.0}},
                True,
                REASON,
            )
            served.hub.set_degraded(APP, None)
            fresh = await next_update()
            assert (fresh.heartbeat, fresh.stale, fresh.stale_reason) == (True, False, None)
        finally:
            await updates.aclose()  # type: ignore[attr-defined]

        served.hub.set_degraded(APP, REASON)
        joined = client.subscribe(APP, GRID)
        try:
            snapshot = await asyncio.wait_for(anext(joined), PROMPT)
            assert snapshot.snapshot and snapshot.stale_reason == REASON
        finally:
            await joined.aclose()  # type: ignore[attr-defined]


async def test_aerogrid_watch_says_stale_and_fresh_again(served: Served) -> None:
    served.hub.set_degraded(APP, REASON)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from aerogrid.cli import main; main()",
        "watch",
        APP,
        GRID,
        "--target",
        served.target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k != "AEROGRID_TOKEN"},
    )
    assert process.stdout is not None
    lines: list[str] = []

    async def until(text: str) -> None:
        while not any(text in line for line in lines):
            line = await process.stdout.readline()  # type: ignore[union-attr]
            assert line, f"watch ended before {text!r}: {lines}"
            lines.append(line.decode())

    try:
        await asyncio.wait_for(until(f"-- stale: {REASON} (showing the last values)"), 20)
        await asyncio.wait_for(until("1.0"), PROMPT)  # and the last values, shown
        served.hub.set_degraded(APP, None)
        await asyncio.wait_for(until("-- fresh again"), PROMPT)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
