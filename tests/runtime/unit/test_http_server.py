"""The HTTP port's server (aerogrid.server.http_server): HTTP/2 beside HTTP/1.1, TLS with
ALPN, and a stop that tells streaming clients to go elsewhere."""

from __future__ import annotations

import asyncio
import json
import struct

import httpx

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
