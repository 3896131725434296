"""The grid server in-process: hub, endpoint and real gRPC on loopback, no broker.

Grids are mutated directly and published as the engine does after a commit, so these
tests pin down what subscribers see: convergence, conflation, resume, filters, identity.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

import aerogrid
from aerogrid import metrics
from aerogrid.client import GridClient, GridClientError, GridUpdate
from aerogrid.server.app_service import AppService, HostedApp
from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.grpc_server import add_services
from aerogrid.server.hub import GridHub
from aerogrid.server.identity import LOCAL_CALLER, Caller
from aerogrid.v1 import catalog_pb2, grid_pb2


class Server:
    """A grid server for one app with one grid, on a free loopback port."""

    def __init__(self, auth: AuthSettings | None = None, tenant: str = "acme") -> None:
        self.app = aerogrid.App("prices", broker="localhost:1", tenant=tenant)
        self.grid = self.app.Grid("quotes", columns=["bid", "ask", "venue"])
        self.grid.ready = True
        self.hub = GridHub()
        self.channel = self.hub.add_grid("prices", self.grid)
        self.hosted = HostedApp("prices", tenant)
        self.endpoint = AppService(self.hub, [self.hosted])
        self.authenticator = Authenticator(auth or AuthSettings())
        self.server = grpc.aio.server()
        add_services(self.server, self.endpoint, self.authenticator, is_loopback)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def commit(self) -> None:
        """What the engine does after a commit: publish the drained changes."""
        self.hub.publish("prices", self.grid, self.grid.drain_changes())

    def expected(self) -> dict[str, dict[str, Any]]:
        return {str(k): self.grid[k] for k in self.grid}


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    s = Server()
    await s.server.start()
    yield s
    await s.server.stop(grace=None)


def mark_the_end(server: Server, final: list[int]) -> None:
    """Publish one last change and tell the followers its seq (they stop on reaching it)."""
    server.grid["last"] = {"venue": "done"}
    server.commit()
    final[:] = [server.channel.seq]


def apply(state: dict[str, dict[str, Any]], update: GridUpdate) -> dict[str, dict[str, Any]]:
    return update.apply_to(dict(state))


async def follow(
    client: GridClient, until_seq: list[int], **options: Any
) -> dict[str, dict[str, Any]]:
    """Apply updates until the subscriber reached the publisher's final seq."""
    state: dict[str, dict[str, Any]] = {}
    async for update in client.subscribe("prices", "quotes", **options):
        state = apply(state, update)
        if until_seq and update.seq >= until_seq[0]:
            return state
    raise AssertionError("stream ended")


async def test_many_subscribers_converge_on_the_exact_grid(server: Server) -> None:
    rng = random.Random(7)
    server.grid["seed"] = {"bid": 1.0}
    server.commit()
    final: list[int] = []
    async with GridClient(server.target) as client:
        followers = [asyncio.create_task(follow(client, final)) for _ in range(40)]
        await asyncio.sleep(0.3)
        for _ in range(300):
            for _ in range(rng.randint(1, 5)):
                key = f"k{rng.randint(0, 60)}"
                if key in server.grid and rng.random() < 0.2:
                    del server.grid[key]
                else:
                    server.grid[key] = {"bid": rng.random(), "ask": rng.randint(0, 9), "venue": "X"}
            server.commit()
            if rng.random() < 0.1:
                await asyncio.sleep(0)
        mark_the_end(server, final)
        states = await asyncio.wait_for(asyncio.gather(*followers), 20)
    expected = server.expected()
    assert len(expected) > 10
    assert all(state == expected for state in states)


async def test_slow_subscriber_is_conflated_and_does_not_slow_others(server: Server) -> None:
    before = (
        metrics.REGISTRY.get_sample_value(
            "aerogrid_rows_conflated_total", {"app": "prices", "grid": "quotes"}
        )
        or 0.0
    )
    slow = server.endpoint.subscribe(
        grid_pb2.SubscribeRequest(app="prices", grid="quotes"), LOCAL_CALLER
    )
    # schema and (empty) snapshot, then the slow subscriber stops reading
    assert grid_pb2.SubscribeResponse.FromString(await anext(slow)).HasField("schema")
    assert grid_pb2.SubscribeResponse.FromString(await anext(slow)).HasField("snapshot")
    final: list[int] = []
    async with GridClient(server.target) as client:
        fast = asyncio.create_task(follow(client, final))
        await asyncio.sleep(0.2)
        for i in range(500):
            server.grid[f"k{i % 10}"] = {"bid": float(i)}
            server.commit()
            await asyncio.sleep(0)
        mark_the_end(server, final)
        fast_state = await asyncio.wait_for(fast, 10)
    assert fast_state == server.expected()
    # the slow one now wakes up: one merged delta with the latest value of each row
    message = grid_pb2.SubscribeResponse.FromString(await anext(slow))
    await slow.aclose()
    assert message.delta.seq == server.channel.seq
    assert len(message.delta.upserts) == 11  # k0..k9 and the end marker
    assert message.delta.conflated == 490
    assert {r.key: r.cells[0].float_value for r in message.delta.upserts}["k9"] == 499.0
    after = metrics.REGISTRY.get_sample_value(
        "aerogrid_rows_conflated_total", {"app": "prices", "grid": "quotes"}
    )
    assert after is not None and after >= before + 490


async def test_subscriber_too_far_behind_gets_a_fresh_snapshot(server: Server) -> None:
    server.channel.max_entries = 5
    slow = server.endpoint.subscribe(
        grid_pb2.SubscribeRequest(app="prices", grid="quotes"), LOCAL_CALLER
    )
    await anext(slow), await anext(slow)
    for i in range(20):
        server.grid[f"k{i}"] = {"bid": float(i)}
        server.commit()
    message = grid_pb2.SubscribeResponse.FromString(await anext(slow))
    await slow.aclose()
    assert message.snapshot.complete and message.snapshot.seq == server.channel.seq
    assert len(message.snapshot.rows) == 20


async def test_resume_after_reconnect_gets_only_missed_deltas(server: Server) -> None:
    server.grid["a"] = {"bid": 1.0}
    server.commit()
    async with GridClient(server.target) as client:
        updates = client.subscribe("prices", "quotes")
        first = await anext(updates)
        assert first.snapshot and first.upserts == {"a": {"bid": 1.0, "ask": None, "venue": None}}
        await updates.aclose()  # type: ignore[attr-defined]
        server.grid["b"] = {"bid": 2.0}
        server.commit()
        del server.grid["a"]
        server.commit()
        resumed = client.subscribe(
            "prices", "quotes", resume_epoch=first.epoch, resume_seq=first.seq
        )
        update = await anext(resumed)
        await resumed.aclose()  # type: ignore[attr-defined]
        assert not update.snapshot
        assert update.upserts == {"b": {"bid": 2.0, "ask": None, "venue": None}}
        assert update.deletes == ["a"]
        # an unknown epoch (another server incarnation) gets a fresh snapshot
        other = client.subscribe("prices", "quotes", resume_epoch="stale", resume_seq=first.seq)
        fresh = await anext(other)
        await other.aclose()  # type: ignore[attr-defined]
        assert fresh.snapshot and set(fresh.upserts) == {"b"}


async def test_key_and_column_filters_and_heartbeats(server: Server) -> None:
    server.grid["a"] = {"bid": 1.0, "ask": 2, "venue": "L"}
    server.grid["b"] = {"bid": 3.0}
    server.commit()
    async with GridClient(server.target) as client:
        updates = client.subscribe(
            "prices",
            "quotes",
            keys=["a"],
            columns=["venue", "bid"],
            heartbeat_interval_ms=100,
            heartbeats=True,
        )
        snapshot = await anext(updates)
        assert snapshot.upserts == {"a": {"venue": "L", "bid": 1.0}}
        beat = await asyncio.wait_for(anext(updates), 2)
        assert beat.heartbeat and beat.seq == snapshot.seq
        server.grid["b"] = {"bid": 9.0}
        server.grid["a"] = {"bid": 5.0, "venue": "N"}
        server.commit()
        delta = await asyncio.wait_for(anext(updates), 2)
        while delta.heartbeat:
            delta = await asyncio.wait_for(anext(updates), 2)
        assert delta.upserts == {"a": {"venue": "N", "bid": 5.0}}
        await updates.aclose()  # type: ignore[attr-defined]
        with pytest.raises(GridClientError) as info:
            await client.snapshot("prices", "quotes-nope")
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(GridClientError, match="no column"):
            async for _ in client.subscribe("prices", "quotes", columns=["nope"], reconnect=False):
                pass


async def test_min_interval_merges_updates(server: Server) -> None:
    async with GridClient(server.target) as client:
        updates = client.subscribe("prices", "quotes", min_interval_ms=300)
        await anext(updates)
        for i in range(30):
            server.grid["x"] = {"bid": float(i)}
            server.commit()
            await asyncio.sleep(0.02)
        seen: list[GridUpdate] = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not seen or seen[-1].upserts.get("x", {}).get("bid") != 29.0:
            seen.append(await asyncio.wait_for(anext(updates), 3))
        await updates.aclose()  # type: ignore[attr-defined]
        assert 1 <= len(seen) <= 4  # 30 changes over ~0.6 s at most one per 300 ms
        assert sum(u.conflated for u in seen) >= 20
        assert loop.time() - started < 3


async def test_catalog_lists_and_watches_status(server: Server) -> None:
    async with GridClient(server.target) as client:
        apps = await client.apps()
        assert [(a.name, a.tenant, a.status) for a in apps] == [("prices", "acme", "starting")]
        assert apps[0].grids[0].columns == ["bid", "ask", "venue"]
    watch = server.endpoint.watch_apps(catalog_pb2.WatchAppsRequest(), LOCAL_CALLER)
    initial = catalog_pb2.WatchAppsResponse.FromString(await anext(watch))
    assert initial.initial and initial.apps[0].name == "prices"
    server.hosted.set_status(catalog_pb2.APP_STATUS_RUNNING)
    change = catalog_pb2.WatchAppsResponse.FromString(await asyncio.wait_for(anext(watch), 2))
    await watch.aclose()
    assert change.apps[0].status == catalog_pb2.APP_STATUS_RUNNING


# -- identity -------------------------------------------------------------------------


def failures(reason: str) -> float:
    return (
        metrics.REGISTRY.get_sample_value("aerogrid_auth_failures_total", {"reason": reason}) or 0.0
    )


async def test_tokens_tenants_and_refusals(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                "acme-token": {"subject": "alice", "tenants": ["acme"]},
                "globex-token": {"subject": "bob", "tenants": ["globex"]},
            }
        )
    )
    s = Server(AuthSettings(tokens_file=tokens, allow_anonymous_loopback=False), tenant="acme")
    s.grid["a"] = {"bid": 1.0}
    s.commit()
    await s.server.start()
    try:
        async with GridClient(s.target, token="acme-token") as alice:
            assert await alice.snapshot("prices", "quotes") == {
                "a": {"bid": 1.0, "ask": None, "venue": None}
            }
            assert [a.name for a in await alice.apps()] == ["prices"]

        cross = failures("cross_tenant")
        async with GridClient(s.target, token="globex-token") as bob:
            assert await bob.apps() == []
            with pytest.raises(GridClientError) as info:
                await bob.snapshot("prices", "quotes")
            # Exactly what an app that does not exist gets: names cannot be probed.
            with pytest.raises(GridClientError) as none:
                await bob.snapshot("nosuchapp", "quotes")
            assert info.value.code == grpc.StatusCode.NOT_FOUND
            assert info.value.message == none.value.message.replace("nosuchapp", "prices")
        assert failures("cross_tenant") == cross + 1

        unknown = failures("unknown_token")
        async with GridClient(s.target, token="nope") as mallory:
            with pytest.raises(GridClientError) as info:
                await mallory.snapshot("prices", "quotes")
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
            assert "nope" not in info.value.message
        assert failures("unknown_token") == unknown + 1

        missing = failures("missing")
        async with GridClient(s.target) as anonymous:
            with pytest.raises(GridClientError) as info:
                await anonymous.apps()
            assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert failures("missing") == missing + 1
    finally:
        await s.server.stop(grace=None)


async def test_endpoint_refuses_other_tenants_directly() -> None:
    s = Server(tenant="acme")
    outsider = Caller(subject="eve", tenants=frozenset({"initech"}))
    listed = await s.endpoint.list_grids(grid_pb2.ListGridsRequest(), outsider)
    assert list(listed.grids) == []
    cross = failures("cross_tenant")
    answers = []
    for app in ("prices", "nosuchapp"):
        for call in (
            s.endpoint.list_grids(grid_pb2.ListGridsRequest(app=app), outsider),
            anext(
                s.endpoint.subscribe(grid_pb2.SubscribeRequest(app=app, grid="quotes"), outsider)
            ),
        ):
            with pytest.raises(ServiceError) as info:
                await call
            answers.append((info.value.code, info.value.message.replace(app, "APP")))
    # The same code and message for another tenant's app as for one that does not exist.
    assert answers[:2] == answers[2:]
    assert answers[0][0] == Code.NOT_FOUND
    assert failures("cross_tenant") == cross + 2


async def test_client_reconnects_by_itself_and_resumes_with_deltas() -> None:
    """The server goes away mid-stream and comes back on the same port (same hub)."""
    s = Server()
    s.grid["a"] = {"bid": 1.0}
    s.commit()
    await s.server.start()
    port = s.port
    async with GridClient(s.target, reconnect_delay=0.1) as client:
        updates = client.subscribe("prices", "quotes")
        first = await anext(updates)
        assert first.snapshot
        await s.server.stop(grace=None)
        s.grid["b"] = {"bid": 2.0}
        s.commit()
        again = grpc.aio.server()
        add_services(again, s.endpoint, s.authenticator, is_loopback)
        assert again.add_insecure_port(f"127.0.0.1:{port}") == port
        await again.start()
        try:
            resumed = await asyncio.wait_for(anext(updates), 10)
            assert not resumed.snapshot  # resumed from its seq: only what it missed
            assert resumed.upserts == {"b": {"bid": 2.0, "ask": None, "venue": None}}
            assert resumed.seq == s.channel.seq
        finally:
            await updates.aclose()  # type: ignore[attr-defined]
            await again.stop(grace=None)


async def test_a_stalled_grpc_subscriber_slows_no_one_and_catches_up(server: Server) -> None:
    """A real gRPC subscriber that stops reading (its HTTP/2 window fills up) while a
    fast one follows 300 updates of 20 KB rows; then it reads on and converges."""
    payload = "x" * 20_000
    final: list[int] = []
    async with (
        GridClient(server.target) as stalled_client,
        GridClient(server.target) as fast_client,
    ):
        stalled = stalled_client.subscribe("prices", "quotes")
        assert (await anext(stalled)).snapshot
        fast = asyncio.create_task(follow(fast_client, final))
        await asyncio.sleep(0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i in range(300):
            server.grid[f"k{i % 20}"] = {"bid": float(i), "venue": payload}
            server.commit()
            await asyncio.sleep(0.001)
        mark_the_end(server, final)
        fast_state = await asyncio.wait_for(fast, 20)
        fast_seconds = loop.time() - started
        assert fast_state == server.expected()
        # 6 MB were published; the stalled stream holds at most a window's worth
        state: dict[str, dict[str, Any]] = {}
        merged = 0
        while True:
            update = await asyncio.wait_for(anext(stalled), 10)
            state = apply(state, update)
            merged += update.conflated
            if update.seq == server.channel.seq:
                break
        await stalled.aclose()  # type: ignore[attr-defined]
    assert state == server.expected()
    assert merged > 0  # it received merged deltas, not 300 separate ones
    assert fast_seconds < 15


async def test_a_batch_waiting_to_commit_holds_back_no_full_snapshot(server: Server) -> None:
    """A batch in the grid waits (minutes, in an outage) for a broker to commit it.

    The engine holds the state lock meanwhile; a new full-column subscriber still gets
    the last committed grid at once, and never the waiting batch's rows.
    """
    server.grid["AAPL"] = {"bid": 1.0}
    server.commit()
    async with GridClient(server.target) as client:
        assert await client.snapshot("prices", "quotes") == server.expected()  # image built
        committed = server.expected()
        async with server.hub.state_lock:  # the engine, with a batch it cannot commit
            server.grid["MSFT"] = {"bid": 2.0}
            server.grid["AAPL"] = {"bid": 9.0}
            rows = await asyncio.wait_for(client.snapshot("prices", "quotes"), 5)
            assert rows == committed
            # A filtered snapshot is cut from the grid itself: it waits for the commit.
            filtered = asyncio.ensure_future(first_update(client, columns=["bid"]))
            await asyncio.sleep(0.3)
            assert not filtered.done()
            server.commit()
        update = await filtered
        assert update.snapshot
        assert update.upserts == {k: {"bid": v["bid"]} for k, v in server.expected().items()}


async def first_update(client: GridClient, **options: Any) -> GridUpdate:
    async for update in client.subscribe("prices", "quotes", **options):
        return update
    raise AssertionError("stream ended")
