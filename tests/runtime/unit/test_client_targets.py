"""Several targets for one GridClient: parsing, DNS expansion, rotation, pacing, failover.

The policy (`aerogrid.client_targets`) is tested on its own with a fake resolver; the
client is tested against in-process servers, whose stop ends a stream with UNAVAILABLE as
a dying replica's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from aerogrid import client_targets
from aerogrid.backoff import Backoff
from aerogrid.client import GridClient, GridUpdate
from aerogrid.client_targets import (
    HOP_SECONDS,
    RetryPacing,
    TargetAddress,
    Targets,
    parse_targets,
    split_host_port,
)
from aerogrid.v1 import grid_pb2
from support.grid_service import APP, GRID, GridService, grid_service
from support.tls import make_test_pki


def fake_resolver(table: dict[str, list[str]]) -> Any:
    """A resolver answering from `table` (a name missing from it does not resolve)."""
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        if host not in table:
            raise OSError(f"no such host {host}")
        return list(table[host])

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


# -- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "targets"),
    [
        ("localhost:50051", ("localhost:50051",)),
        ("h1:50051,h2:50051", ("h1:50051", "h2:50051")),
        (" h1:1 , h2:2 ,, h1:1", ("h1:1", "h2:2")),
        (["h1:1", "h2:2,h3:3"], ("h1:1", "h2:2", "h3:3")),
        ("[::1]:5,127.0.0.1:5", ("[::1]:5", "127.0.0.1:5")),
        # gRPC's own schemes are dialed as given: `ipv4:` lists addresses with commas itself.
        ("ipv4:10.0.0.1:5,10.0.0.2:5", ("ipv4:10.0.0.1:5,10.0.0.2:5",)),
        ("dns:///shop:50051", ("dns:///shop:50051",)),
    ],
)
def test_targets_are_parsed(given: str | list[str], targets: tuple[str, ...]) -> None:
    assert parse_targets(given) == targets


@pytest.mark.parametrize("given", ["", " , ", []])
def test_no_target_is_an_error(given: str | list[str]) -> None:
    with pytest.raises(ValueError, match="no target"):
        parse_targets(given)


@pytest.mark.parametrize(
    ("target", "split"),
    [
        ("shop:50051", ("shop", 50051)),
        ("shop", ("shop", 443)),
        ("[fd00::1]:7", ("fd00::1", 7)),
        ("[fd00::1]", ("fd00::1", 443)),
        ("fd00::1", None),  # a bare IPv6 literal: gRPC reads it
        ("shop:http", None),
        ("unix:/tmp/grid.sock", None),
        ("[fd00::1]x", None),
    ],
)
def test_host_and_port(target: str, split: tuple[str, int] | None) -> None:
    assert split_host_port(target) == split


# -- addresses and rotation ---------------------------------------------------------


async def test_a_name_with_several_addresses_is_several_targets() -> None:
    resolver = fake_resolver({"shop.svc": ["10.0.0.2", "10.0.0.1", "fd00::3", "10.0.0.1"]})
    targets = Targets(["shop.svc:50051"], resolver=resolver)
    await targets.refresh()
    assert targets.addresses == [
        TargetAddress("10.0.0.2:50051", authority="shop.svc:50051"),
        TargetAddress("10.0.0.1:50051", authority="shop.svc:50051"),
        TargetAddress("[fd00::3]:50051", authority="shop.svc:50051"),
    ]


async def test_a_slow_lookup_leaves_the_name_to_grpc(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hangs(host: str, port: int) -> list[str]:
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    monkeypatch.setattr(client_targets, "RESOLVE_SECONDS", 0.05)
    targets = Targets(["shop.svc:5"], resolver=hangs)
    assert await targets.refresh() == TargetAddress("shop.svc:5")


async def test_literals_loopback_and_single_addresses_are_dialed_as_given() -> None:
    resolver = fake_resolver({"one.svc": ["10.0.0.9"]})
    given = ["127.0.0.1:1", "localhost:2", "[::1]:3", "10.1.1.1:4", "one.svc:5", "gone.svc:6"]
    targets = Targets(given, resolver=resolver)
    await targets.refresh()
    assert targets.addresses == [TargetAddress(t) for t in given]
    # Only the names that could stand for several machines were looked up.
    assert resolver.asked == ["one.svc", "gone.svc"]


async def test_each_client_starts_at_a_random_address() -> None:
    starts: Counter[str] = Counter()
    for _ in range(300):
        targets = Targets(["a:1", "b:1", "c:1"], resolver=fake_resolver({}))
        starts[(await targets.refresh()).address] += 1
    # 100 each on average; a client that always started at the first would put 300 on "a".
    assert set(starts) == {"a:1", "b:1", "c:1"}
    assert min(starts.values()) > 50


async def test_move_on_walks_the_addresses_in_order_and_once_per_failure() -> None:
    targets = Targets(["a:1", "b:1", "c:1"], resolver=fake_resolver({}), rng=random.Random(0))
    first = await targets.refresh()
    order = [first]
    for _ in range(3):
        order.append(targets.move_on(order[-1]))
    assert [a.address for a in order[:3]] in (
        ["a:1", "b:1", "c:1"],
        ["b:1", "c:1", "a:1"],
        ["c:1", "a:1", "b:1"],
    )
    assert order[3] == order[0]  # wraps round
    # A second call that lost the same address finds the client already moved on.
    now = targets.current
    assert now is not None
    assert targets.move_on(order[2]) == now


async def test_an_address_that_failed_lately_is_passed_over() -> None:
    now = [0.0]
    targets = Targets(["a:1", "b:1", "c:1"], resolver=fake_resolver({}), clock=lambda: now[0])
    x0 = await targets.refresh()
    i = targets.addresses.index(x0)
    x1, x2 = targets.addresses[(i + 1) % 3], targets.addresses[(i + 2) % 3]
    assert targets.move_on(x0) == x1
    now[0] = 15.0  # x0 failed long enough ago
    assert targets.move_on(x2) == x1  # another call failed on x2: noted, the client stays
    now[0] = 16.0
    assert targets.move_on(x1) == x0  # x2, next in order, failed a second ago: skipped
    now[0] = 17.0
    # Every address failed lately: the next in order, as without the memory.
    assert targets.move_on(x0) == x1


async def test_a_single_address_stays() -> None:
    targets = Targets(["a:1"], resolver=fake_resolver({}))
    only = await targets.refresh()
    assert targets.move_on(only) == only


async def test_refresh_follows_a_service_that_scaled() -> None:
    table = {"shop.svc": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}
    targets = Targets(["shop.svc:5"], resolver=fake_resolver(table), rng=random.Random(1))
    on = await targets.refresh()
    # Scaled out: the client stays where it is.
    table["shop.svc"] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    assert await targets.refresh() == on
    assert len(targets.addresses) == 4
    # Scaled in, and its address went: it goes to one that is left.
    table["shop.svc"] = [ip for ip in table["shop.svc"] if not on.address.startswith(ip + ":")]
    moved = await targets.refresh()
    assert moved != on
    assert moved in targets.addresses
    assert len(targets.addresses) == 3


# -- pacing -------------------------------------------------------------------------


def test_pacing_hops_within_a_round_and_backs_off_after_it() -> None:
    pacing = RetryPacing(Backoff(initial=1.0, maximum=8.0))
    delays = [pacing.next_delay(3) for _ in range(6)]
    hops = [delays[0], delays[1], delays[3], delays[4]]
    assert all(0 <= d <= HOP_SECONDS for d in hops)
    assert 0.5 <= delays[2] <= 1.0  # the backoff's first delay, jittered
    assert 1.0 <= delays[5] <= 2.0  # and its second: it grows round after round
    pacing.succeeded()
    assert pacing.next_delay(3) <= HOP_SECONDS
    assert pacing.next_delay(3) <= HOP_SECONDS
    assert 0.5 <= pacing.next_delay(3) <= 1.0  # the backoff started over too


def test_pacing_with_one_address_is_the_backoff() -> None:
    pacing = RetryPacing(Backoff(initial=1.0, maximum=8.0))
    delays = [pacing.next_delay(1) for _ in range(3)]
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert 2.0 <= delays[2] <= 4.0


# -- the client against servers -----------------------------------------------------


@contextlib.asynccontextmanager
async def two_services(epoch: str | None) -> AsyncIterator[tuple[GridService, GridService]]:
    """Two in-process services of one grid, with the same rows (and `epoch`, if given)."""
    async with grid_service() as a, grid_service() as b:
        for service in (a, b):
            if epoch is not None:
                service.channel.epoch = epoch
            service.commit({"k1": {"text": "one"}})
        yield a, b


async def next_update(updates: AsyncIterator[GridUpdate]) -> GridUpdate:
    return await asyncio.wait_for(anext(updates), timeout=10)


@pytest.mark.parametrize(("epoch", "kind"), [("shared", "delta"), (None, "snapshot")])
async def test_a_stream_moves_to_the_other_replica_and_resumes(
    epoch: str | None, kind: str
) -> None:
    """Replicas that agree on (epoch, seq) answer the resume with deltas; replicas that do
    not (each its own epoch) with a snapshot. Either way the client ends with the grid."""
    async with (
        two_services(epoch) as (a, b),
        GridClient([a.target, b.target], reconnect_delay=0.1) as client,
    ):
        updates = client.subscribe(APP, GRID)
        first = await next_update(updates)
        assert first.snapshot
        assert first.upserts == {"k1": {"text": "one"}}
        victim, other = (a, b) if client.endpoint == a.target else (b, a)
        await victim.listeners.stop()
        other.commit({"k2": {"text": "two"}})
        update = await next_update(updates)
        rows = update.apply_to(dict(first.upserts))
        assert rows == {"k1": {"text": "one"}, "k2": {"text": "two"}}
        assert update.snapshot == (kind == "snapshot")
        assert client.endpoint == other.target
        assert client.failovers == 1
        assert client.resumes == {kind: 1}


async def test_unary_calls_move_on_at_once_and_snapshot_finds_a_live_replica() -> None:
    async with two_services(None) as (a, b), GridClient([a.target, b.target]) as client:
        assert [g.name for g in await client.grids(APP)] == [GRID]
        victim, other = (a, b) if client.endpoint == a.target else (b, a)
        await victim.listeners.stop()
        assert [g.name for g in await client.grids(APP)] == [GRID]
        assert client.endpoint == other.target
        assert await client.snapshot(APP, GRID, timeout=5) == {"k1": {"text": "one"}}
        assert client.failovers == 1


async def test_refusing_replicas_are_tried_in_turn_with_backoff_between_rounds() -> None:
    """Both replicas refuse (UNAVAILABLE): the second is tried at once after the first,
    and a whole round later the backoff's delay passes before the first is tried again."""
    loop = asyncio.get_running_loop()
    attempts: list[tuple[float, int]] = []
    enough = asyncio.Event()

    def refusing(index: int) -> grpc.GenericRpcHandler[Any, Any]:
        async def subscribe(request: bytes, context: aio.ServicerContext[Any, Any]) -> None:
            attempts.append((loop.time(), index))
            if len(attempts) >= 6:
                enough.set()
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")

        return grpc.method_handlers_generic_handler(
            "aerogrid.v1.GridService",
            {"Subscribe": grpc.unary_stream_rpc_method_handler(subscribe)},
        )

    servers, targets = [], []
    for index in range(2):
        server = aio.server()
        server.add_generic_rpc_handlers((refusing(index),))
        targets.append(f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}")
        await server.start()
        servers.append(server)

    async def follow() -> None:
        async with GridClient(targets, reconnect_delay=0.3, reconnect_max=0.3) as client:
            async for _ in client.subscribe(APP, GRID):
                raise AssertionError("the servers send nothing")

    task = asyncio.create_task(follow())
    try:
        await asyncio.wait_for(enough.wait(), timeout=10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for server in servers:
            await server.stop(None)

    who = [index for _, index in attempts[:6]]
    assert who in ([0, 1] * 3, [1, 0] * 3)  # in turn
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(attempts[:6])]
    # Within a round: the hop's jitter (plus the call's own time); between rounds: the
    # backoff's [0.15, 0.3] s.
    assert all(g < 0.12 for g in gaps[0::2]), gaps
    assert all(g >= 0.14 for g in gaps[1::2]), gaps


async def test_a_name_with_several_addresses_keeps_its_name_for_tls(tmp_path: Path) -> None:
    """Each address of `replicas.test` is dialed with that name as TLS server name, so a
    certificate for the name alone is accepted at either address."""
    pki = make_test_pki(tmp_path, hosts=("replicas.test",))
    server_credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())]
    )

    async def list_grids(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        grid = grid_pb2.GridInfo(app=APP, name=GRID, ready=True)
        return grid_pb2.ListGridsResponse(grids=[grid]).SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "aerogrid.v1.GridService", {"ListGrids": grpc.unary_unary_rpc_method_handler(list_grids)}
    )
    servers: dict[str, aio.Server] = {}
    port = 0
    for host in ("127.0.0.1", "127.0.0.2"):
        server = aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_secure_port(f"{host}:{port}", server_credentials)
        await server.start()
        servers[host] = server
    resolver = fake_resolver({"replicas.test": ["127.0.0.1", "127.0.0.2"]})
    credentials = grpc.ssl_channel_credentials(pki.ca_cert.read_bytes())
    name = f"replicas.test:{port}"
    try:
        async with GridClient(name, credentials=credentials, resolver=resolver) as client:
            used: list[str] = []
            for _ in servers:
                assert [g.name for g in await client.grids(APP)] == [GRID]
                used.append(str(client.endpoint))
                # Stop the one that answered: the next call goes to the other.
                await servers[str(client.endpoint).split("@")[1].split(":")[0]].stop(None)
            assert sorted(used) == [f"{name}@127.0.0.1:{port}", f"{name}@127.0.0.2:{port}"]
            assert client.failovers == 1
    finally:
        for server in servers.values():
            await server.stop(None)
