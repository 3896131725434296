"""GridClient names the app (and tenant) of grid calls, for a cluster gateway's routes."""

from __future__ import annotations

import re
from typing import Any

import grpc
from grpc import aio

from aerogrid.client import GridClient
from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.v1 import grid_pb2
from support.paths import REPO


async def test_grid_calls_carry_the_app_and_tenant_headers() -> None:
    seen: list[dict[str, str]] = []

    async def list_grids(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        seen.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        return grid_pb2.ListGridsResponse().SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "aerogrid.v1.GridService",
        {"ListGrids": grpc.unary_unary_rpc_method_handler(list_grids)},
    )
    server = aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with GridClient(f"127.0.0.1:{port}", token="t0k", tenant="trading") as client:
            await client.grids("orders")
            await client.grids()  # every app's grids: no app to route on
        async with GridClient(f"127.0.0.1:{port}") as client:
            await client.grids("orders")
    finally:
        await server.stop(None)
    routed, unrouted, untenanted = seen
    assert routed[APP_HEADER] == "orders" and routed[TENANT_HEADER] == "trading"
    assert routed["authorization"] == "Bearer t0k"
    assert APP_HEADER not in unrouted and TENANT_HEADER not in unrouted
    assert untenanted[APP_HEADER] == "orders" and TENANT_HEADER not in untenanted


async def test_a_snapshot_waits_for_an_endpoint_that_is_not_up_and_keeps_the_cause() -> None:
    import socket
    import time

    import pytest

    from aerogrid.client import GridClientError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the with ends: nothing listens
    started = time.monotonic()
    async with GridClient(f"127.0.0.1:{port}", reconnect_delay=0.1) as client:
        with pytest.raises(GridClientError, match=r"still, after 1s") as caught:
            await client.snapshot("orders", "product_sum", timeout=1)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started >= 0.8  # it kept trying for the timeout


def test_the_addin_sends_the_same_routing_headers() -> None:
    """The add-in's copy of the header names (TypeScript) matches the runtime's."""
    source = (REPO / "excel/src/transport.ts").read_text()
    found = dict(re.findall(r'export const (\w+_HEADER) = "([^"]+)"', source))
    assert found == {"APP_HEADER": APP_HEADER, "TENANT_HEADER": TENANT_HEADER}
