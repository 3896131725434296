"""The HTTP port's server (aerogrid.server.http_server): HTTP/2 beside HTTP/1.1, TLS with
ALPN, and a stop that tells streaming clients to go elsewhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import h2.connection
import h2.events
import httpx

from aerogrid.net import bind_socket
from aerogrid.server.http_server import serve_http
from aerogrid.v1 import grid_pb2
from support.grid_service import APP, GRID, grid_service

SUBSCRIBE = "/aerogrid.v1.GridService/Subscribe"


def frames(data: bytes) -> list[tuple[int, bytes]]:
    out, at = [], 0
    while at + 5 <= len(data):
        flags, length = struct.unpack_from(">BI", data, at)
        out.append((flags, data[at + 5 : at + 5 + length]))
        at += 5 + length
    return out


async def test_h2c_and_http1_on_one_port() -> None:
    async with grid_service() as service:
        for http2 in (False, True):
            async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
                response = await client.get(f"{service.http}/healthz")
            assert response.status_code == 200
            assert response.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


async def test_stop_ends_a_stream_with_unavailable() -> None:
    async with grid_service() as service:
        service.commit({"k": {"text": "v"}})
        body = grid_pb2.SubscribeRequest(app=APP, grid=GRID).SerializeToString()
        headers = {"content-type": "application/connect+proto"}
        async with (
            httpx.AsyncClient(http1=False, http2=True) as client,
            client.stream(
                "POST",
                f"{service.http}{SUBSCRIBE}",
                content=struct.pack(">BI", 0, len(body)) + body,
                headers=headers,
            ) as response,
        ):
            chunks = response.aiter_raw()
            received = await anext(chunks)
            stopping = asyncio.create_task(service.listeners.stop())
            async with asyncio.timeout(10):
                async for chunk in chunks:
                    received += chunk
            await stopping
    flags, end = frames(received)[-1]
    assert flags == 0x02
    assert json.loads(end)["error"]["code"] == "unavailable"


async def _late_body(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app whose body follows its head after a pause (as an error answered at a
    deadline may, on a busy machine)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 504, "headers": []})
    await asyncio.sleep(0.3)
    await send({"type": "http.response.body", "body": BODY, "more_body": False})


BODY = b'{"code":"deadline_exceeded"}'


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[tuple[str, int]]:
    sock = bind_socket("127.0.0.1", 0)
    address = sock.getsockname()
    server = await serve_http(app, sock)
    try:
        yield address[0], address[1]
    finally:
        await server.stop()


async def test_http1_head_leaves_with_the_body() -> None:
    """A client whose deadline fires between head and body would see an error status with
    an empty body (the Connect conformance suite did, under load): they go in one write."""
    async with _serving(_late_body) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        first = await asyncio.wait_for(reader.read(65536), 5)
        writer.close()
    assert first.startswith(b"HTTP/1.1 504"), first
    assert BODY in first, first


async def test_http2_headers_leave_with_the_data() -> None:
    async with _serving(_late_body) as (host, port):
        reader, writer = await asyncio.open_connection(host, port)
        client = h2.connection.H2Connection()
        client.initiate_connection()
        client.send_headers(
            1,
            [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")],
            end_stream=True,
        )
        writer.write(client.data_to_send())
        batch: list[h2.events.Event] = []
        async with asyncio.timeout(5):
            while not any(isinstance(e, h2.events.ResponseReceived) for e in batch):
                batch = client.receive_data(await reader.read(65536))
                writer.write(client.data_to_send())
        writer.close()
    data = [e.data for e in batch if isinstance(e, h2.events.DataReceived)]
    assert b"".join(data) == BODY, batch
