"""Connections are bounded: what a malformed, slow, silent or stalled client gets, and costs.

A grid service runs in the test's process with its real listeners (native gRPC and the
HTTP port, as `aerogrid run` starts them); the clients are real ones (grpcio, GridClient)
or raw sockets doing what no library would (a cut request message, a slowloris, a
subscriber that never reads). Connection counts are small (tens to 200); every wait is
bounded by the limits of `aerogrid.server.connections` plus a margin.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import struct
import time
from collections.abc import AsyncIterator

import grpc
import httpx
import psutil  # type: ignore[import-untyped]
import pytest
from grpc import aio

from aerogrid import metrics
from aerogrid.client import GridClient
from aerogrid.server.auth import AuthSettings
from aerogrid.server.connections import HEADER_TIMEOUT, REQUEST_TIMEOUT, STALL_SECONDS
from aerogrid.v1 import grid_pb2
from support.grid_service import APP, GRID, GridService, grid_service
from support.raw_http2 import PREFACE, grpc_message, open_call, wait_end

pytestmark = pytest.mark.timeout(120)

LIST_GRIDS = "/aerogrid.v1.GridService/ListGrids"
SUBSCRIBE = "/aerogrid.v1.GridService/Subscribe"
#: How late "within the limit" may be on a loaded CI machine.
MARGIN = 4.0

#: Request messages that do not decode: a tag without its value, a length past the end,
#: a varint that never ends, a string that is not UTF-8.
GARBAGE = [b"\x08", b"\x0a\x05ab", b"\xff" * 11, b"\x0a\x02\xff\xfe", b"\x12\x80"]


@pytest.fixture
async def service() -> AsyncIterator[GridService]:
    async with grid_service() as served:
        yield served


def refused(transport: str, reason: str) -> float:
    labels = {"transport": transport, "reason": reason}
    return metrics.REGISTRY.get_sample_value("aerogrid_requests_refused_total", labels) or 0.0


def dropped() -> float:
    return metrics.REGISTRY.get_sample_value("aerogrid_subscribers_dropped_total") or 0.0


async def closed_after(reader: asyncio.StreamReader, limit: float) -> float | None:
    """Seconds until the server closed the connection (reading all it sent), or None."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(limit):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - started


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


# -- native gRPC ------------------------------------------------------------------------


async def test_grpc_garbage_gets_invalid_argument_and_one_log_line(
    service: GridService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    before = refused("grpc", "malformed")
    async with aio.insecure_channel(service.target) as channel:
        list_grids = channel.unary_unary(LIST_GRIDS, None, None)
        subscribe = channel.unary_stream(SUBSCRIBE, None, None)
        codes = []
        for _ in range(20):
            for payload in GARBAGE:
                with pytest.raises(aio.AioRpcError) as unary:
                    await list_grids(payload)
                with pytest.raises(aio.AioRpcError) as stream:
                    async for _message in subscribe(payload):
                        pass
                codes += [unary.value.code(), stream.value.code()]
        details = unary.value.details() or ""
    assert set(codes) == {grpc.StatusCode.INVALID_ARGUMENT}
    assert "cannot decode aerogrid.v1.ListGridsRequest" in details
    assert refused("grpc", "malformed") - before == 200
    assert_no_tracebacks(caplog)
    lines = [r for r in caplog.records if r.name == "aerogrid.server.connections"]
    assert len(lines) == 1, [r.getMessage() for r in lines]


async def test_grpc_garbage_from_a_stranger_is_refused_before_it_is_decoded() -> None:
    async with (
        grid_service(AuthSettings(allow_anonymous_loopback=False)) as served,
        aio.insecure_channel(served.target) as channel,
    ):
        with pytest.raises(aio.AioRpcError) as refused_call:
            await channel.unary_unary(LIST_GRIDS, None, None)(GARBAGE[0])
    assert refused_call.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_grpc_calls_without_a_whole_request_message_end_at_the_deadline(
    service: GridService,
) -> None:
    before = refused("grpc", "incomplete")

    async def nothing() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    async def headers_only(path: str) -> tuple[grpc.StatusCode, str]:
        """A call whose client sends its headers and then no message at all."""
        async with aio.insecure_channel(service.target) as channel:
            call = channel.stream_stream(path, None, None)(nothing())
            try:
                async for _message in call:
                    pass
            except aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
        raise AssertionError("the call ended without a status")

    async def cut_message() -> str:
        """A call whose message prefix promises 100 bytes and 10 follow."""
        host, port = service.target.rsplit(":", 1)
        data = grpc_message(b"\x0a\x05prices", promised=100)
        reader, writer = await open_call(host, int(port), SUBSCRIBE, data)
        try:
            return await wait_end(reader, writer)
        finally:
            writer.close()

    started = time.monotonic()
    async with asyncio.timeout(REQUEST_TIMEOUT + MARGIN):
        unary, stream, cut = await asyncio.gather(
            headers_only(LIST_GRIDS), headers_only(SUBSCRIBE), cut_message()
        )
    elapsed = time.monotonic() - started
    assert elapsed >= REQUEST_TIMEOUT - 1  # ended by the deadline, not by something else
    for code, details in (unary, stream):
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "did not arrive within" in details
    assert cut == "trailers"
    assert refused("grpc", "incomplete") - before == 3


async def test_grpc_port_closes_silent_and_half_preface_connections(
    service: GridService,
) -> None:
    host, port = service.target.rsplit(":", 1)
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(60)]
    for i, (_, writer) in enumerate(connections):
        if i % 2:
            writer.write(PREFACE[:10])  # a preface cut short
    waits = await asyncio.gather(
        *(closed_after(reader, HEADER_TIMEOUT + MARGIN) for reader, _ in connections)
    )
    for _, writer in connections:
        writer.close()
    assert None not in waits, f"{waits.count(None)} of 60 connections still open"


# -- the HTTP port ------------------------------------------------------------------------


async def test_http_port_closes_silent_partial_and_slowloris_connections(
    service: GridService,
) -> None:
    host, port = service.http.removeprefix("http://").rsplit(":", 1)
    before = refused("http", "slow_head") + refused("http", "silent")
    head = f"GET /healthz HTTP/1.1\r\nhost: {host}\r\nx-padding: ".encode()
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(150)]
    partial, slowloris = connections[50:100], connections[100:]
    for _, writer in partial:
        writer.write(head)

    async def drip(writer: asyncio.StreamWriter) -> None:
        """A slowloris: a request head one byte a second, never finished."""
        writer.write(head)
        while True:
            await asyncio.sleep(1)
            writer.write(b"a")
            await writer.drain()

    drips = [asyncio.create_task(drip(writer)) for _, writer in slowloris]
    try:
        async with asyncio.timeout(5):  # meanwhile, the port serves
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(f"GET /healthz HTTP/1.1\r\nhost: {host}\r\n\r\n".encode())
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            writer.close()
        waits = await asyncio.gather(
            *(closed_after(reader, HEADER_TIMEOUT + MARGIN) for reader, _ in connections)
        )
    finally:
        for task in drips:
            task.cancel()
        await asyncio.gather(*drips, return_exceptions=True)
        for _, writer in connections:
            writer.close()
    assert None not in waits, f"{waits.count(None)} of 150 connections still open"
    assert refused("http", "slow_head") + refused("http", "silent") - before == 150


async def test_http_garbage_gets_invalid_argument_and_one_log_line(
    service: GridService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    before = refused("http", "malformed")
    calls = [
        (LIST_GRIDS, "application/proto", GARBAGE[1]),
        (LIST_GRIDS, "application/json", b"{not json"),
        (SUBSCRIBE, "application/connect+proto", b"\x00\x00\x00\x00\x09abc"),
        (SUBSCRIBE, "application/grpc-web+proto", struct.pack(">BI", 0, 4) + GARBAGE[3]),
    ]
    async with httpx.AsyncClient(base_url=service.http) as client:
        for _ in range(10):
            for path, content_type, body in calls:
                response = await client.post(
                    path, content=body, headers={"content-type": content_type}
                )
                if content_type.startswith("application/grpc-web"):
                    assert b"grpc-status:3" in response.content
                elif path == SUBSCRIBE:
                    assert b'"code":"invalid_argument"' in response.content
                else:
                    assert response.status_code == 400
                    assert response.json()["code"] == "invalid_argument"
    assert refused("http", "malformed") - before == 40
    assert_no_tracebacks(caplog)
    lines = [r for r in caplog.records if r.name == "aerogrid.server.connections"]
    assert len(lines) == 1, [r.getMessage() for r in lines]


async def test_http_request_body_cut_short_ends_at_the_deadline(service: GridService) -> None:
    host, port = service.http.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {LIST_GRIDS} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/proto\r\n"
        "content-length: 100\r\n\r\n0123456789".encode()
    )
    started = time.monotonic()
    async with asyncio.timeout(REQUEST_TIMEOUT + MARGIN):
        answer = await reader.read()  # the answer, then the server closes the connection
    writer.close()
    assert time.monotonic() - started >= REQUEST_TIMEOUT - 1
    assert answer.startswith(b"HTTP/1.1 504"), answer[:200]
    assert b'"code":"deadline_exceeded"' in answer


# -- subscribers that stop reading ------------------------------------------------------------


async def publish_until_dropped(service: GridService, limit: float = 40.0) -> None:
    """Commit 100 rows of 1 KB every 50 ms until the grid has no subscriber left."""
    service.channel.max_entries = 20  # a short window, so a stalled subscriber falls out fast
    deadline = time.monotonic() + limit
    commit = 0
    while service.channel.subscribers:
        assert time.monotonic() < deadline, "the stalled subscriber was never dropped"
        commit += 1
        service.commit({f"k{i}": {"text": f"{commit}:" + "x" * 1000} for i in range(100)})
        await asyncio.sleep(0.05)


async def test_stalled_grpc_subscriber_is_dropped_and_grid_client_resumes(
    service: GridService,
) -> None:
    before = dropped()
    service.commit({"k0": {"text": "first"}})
    async with GridClient(service.target, reconnect_delay=0.1) as client:
        updates = client.subscribe(APP, GRID)
        first = await anext(updates)
        assert first.snapshot
        # Stalled: the stream is not read while the grid moves on.
        await publish_until_dropped(service)
        assert dropped() - before == 1
        service.commit({"last": {"text": "done"}})
        final = service.channel.seq
        rows = first.apply_to({})
        snapshots = 0
        async with asyncio.timeout(30):
            async for update in updates:
                rows = update.apply_to(rows)
                snapshots += update.snapshot
                if update.seq >= final:
                    break
    assert snapshots >= 1  # resumed from a fresh snapshot, as the window had moved on
    assert rows == {str(k): service.grid[k] for k in service.grid}


async def test_stalled_connect_subscriber_is_dropped_and_cut_off(service: GridService) -> None:
    before = dropped()
    host, port = service.http.removeprefix("http://").rsplit(":", 1)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills fast: nothing is read
    sock.connect((host, int(port)))
    body = grid_pb2.SubscribeRequest(app=APP, grid=GRID).SerializeToString()
    envelope = struct.pack(">BI", 0, len(body)) + body
    sock.sendall(
        f"POST {SUBSCRIBE} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/connect+proto"
        f"\r\ncontent-length: {len(envelope)}\r\n\r\n".encode()
        + envelope
    )
    try:
        await asyncio.sleep(0.5)
        assert service.channel.subscribers == 1
        await publish_until_dropped(service)
        assert dropped() - before == 1
        # Its end-of-stream would wait behind all it has not read: the server cuts the
        # connection instead (a graceful close would wait for the client to read too).
        connections = service.listeners.http_server.connections
        for _ in range(int((STALL_SECONDS + MARGIN) / 0.2)):
            if not connections:
                break
            await asyncio.sleep(0.2)
        assert not connections, "the stalled subscriber's connection is still open"
        reader, writer = await asyncio.open_connection(sock=sock)
        assert await closed_after(reader, 5) is not None
        writer.close()
    finally:
        sock.close()


# -- memory under steady load ----------------------------------------------------------------


async def test_memory_under_steady_load_levels_off(service: GridService) -> None:
    """4,000 commits of 140 of 1,000 rows, with a live and two stalled subscribers.

    The hub's window of recent changes is bounded by the grid's size (replaying more
    changes than the grid has rows costs more than a snapshot), so it stops growing
    within the first commits; a window of a fixed 4,096 entries would hold all of them.
    """
    process = psutil.Process()
    rng = random.Random(5)
    keys = [f"product-{i:04d}" for i in range(1000)]
    service.commit({key: {"text": "0"} for key in keys})

    async def follow(client: GridClient) -> None:
        async for _update in client.subscribe(APP, GRID):
            pass

    async def load(commits: int) -> None:
        for commit in range(commits):
            service.commit({key: {"text": f"{commit}"} for key in rng.sample(keys, 140)})
            if commit % 20 == 0:
                await asyncio.sleep(0)  # let the subscribers run, as between real batches

    async with (
        GridClient(service.target) as client,
        aio.insecure_channel(service.target) as channel,
    ):
        request = grid_pb2.SubscribeRequest(app=APP, grid=GRID).SerializeToString()
        stalled = [channel.unary_stream(SUBSCRIBE, None, None)(request) for _ in range(2)]
        live = asyncio.create_task(follow(client))
        await load(500)  # warm up: the grid's image, the caches, the first messages
        before = process.memory_info().rss
        await load(4000)
        after = process.memory_info().rss
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
        for call in stalled:
            call.cancel()
    mib = 1024 * 1024
    assert after - before < 25 * mib, (before / mib, after / mib)
