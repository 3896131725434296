"""The devkit's one port under a flood: a connection cap, a TLS handshake deadline, memory back.

A LocalServer (no apps: the limits are the front's and its servers') with the
development certificate, on a free port, in the test's process, so psutil's RSS is the
endpoint's. Floods are small: a few hundred raw connections.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import httpx
import psutil  # type: ignore[import-untyped]
import pytest

from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.local_server.front import MAX_TLS_HANDSHAKES
from aerogrid_devkit.supervisor import Supervisor

pytestmark = pytest.mark.timeout(120)

SNIFF_TIMEOUT = 2.0
MARGIN = 4.0
MIB = 1024 * 1024


@pytest.fixture
async def endpoint() -> AsyncIterator[LocalServer]:
    served = LocalServer(
        Supervisor({}, "127.0.0.1:1"), port=0, sniff_timeout=SNIFF_TIMEOUT, max_connections=100
    )
    await served.start()
    assert served.devcert is not None, served.tls_problem
    try:
        yield served
    finally:
        await served.stop()


def client_hello() -> bytes:
    """A real TLS ClientHello, as a browser's first bytes."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_all(port: int, count: int, first: bytes) -> list[Connection]:
    """`count` connections that each send `first` and then nothing."""
    connections = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(first)
        connections.append((reader, writer))
    return connections


async def closed_by_server(connection: Connection, limit: float) -> bool:
    """Whether the server closed (or reset) the connection within `limit` seconds."""
    try:
        async with asyncio.timeout(limit):
            while await connection[0].read(65536):
                pass
    except TimeoutError:
        return False
    except OSError:
        pass
    return True


def close_all(connections: list[Connection]) -> None:
    for _, writer in connections:
        writer.close()


async def https_works(endpoint: LocalServer) -> bool:
    assert endpoint.devcert is not None and endpoint.https_url is not None
    context = ssl.create_default_context(cafile=str(endpoint.devcert.ca_cert))
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        return (await client.get(f"{endpoint.https_url}/healthz")).status_code == 200


async def test_half_open_tls_flood_is_capped_timed_out_and_its_memory_returned(
    endpoint: LocalServer,
) -> None:
    process = psutil.Process()
    hello = client_hello()
    assert await https_works(endpoint)  # warm up what one TLS connection allocates once
    before = process.memory_info().rss
    peaks = []
    for _ in range(3):
        flood = await open_all(endpoint.port, 300, hello)
        await asyncio.sleep(0.5)
        peaks.append(process.memory_info().rss)
        started = time.monotonic()
        closed = await asyncio.gather(*(closed_by_server(c, SNIFF_TIMEOUT + MARGIN) for c in flood))
        waited = time.monotonic() - started
        close_all(flood)
        assert all(closed), f"{closed.count(False)} half-open TLS connections still open"
        assert waited < SNIFF_TIMEOUT + MARGIN
    await asyncio.sleep(1)
    after = process.memory_info().rss
    rejected = endpoint.connections.rejected
    assert rejected["tls_handshake"] == endpoint.connections.tls - 1  # all but the warm-up
    assert endpoint.connections.tls - 1 <= 3 * MAX_TLS_HANDSHAKES
    assert rejected["busy"] >= 3 * (300 - MAX_TLS_HANDSHAKES)
    assert max(peaks) - before < 60 * MIB, (before / MIB, [p / MIB for p in peaks])
    assert after - before < 15 * MIB, (before / MIB, after / MIB)
    assert await https_works(endpoint)  # and real clients are served after the flood


async def test_connections_over_the_cap_are_closed_at_once(endpoint: LocalServer) -> None:
    flood = await open_all(endpoint.port, 130, b"")
    try:
        # The 30 over the cap of 100 are closed at once; the 100 silent ones at the deadline.
        early = await asyncio.gather(*(closed_by_server(c, 1.0) for c in flood))
        assert early.count(True) == 30
        late = await asyncio.gather(*(closed_by_server(c, SNIFF_TIMEOUT + MARGIN) for c in flood))
        assert all(late)
    finally:
        close_all(flood)
    assert endpoint.connections.rejected["busy"] == 30
    assert endpoint.connections.rejected["silent"] == 100
    assert await https_works(endpoint)
