"""The devkit's gateway drops a subscriber that stopped reading, rather than hold it forever.

The app behind the gateway would drop its own (the gateway's) stream once behind its
window, but its status waits behind the bytes the stalled client has not read: the
gateway's hop must drop the client itself. Here the app is a grid service in the
test's process; the supervisor reports it running on its port, as it does for a
process it started; the gateway is served by the runtime's own gRPC transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio

from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.connections import GRPC_SERVER_OPTIONS
from aerogrid.server.grpc_server import add_services
from aerogrid.v1 import grid_pb2
from aerogrid_devkit.local_server.gateway import LocalGateway
from aerogrid_devkit.supervisor import Supervisor
from support.grid_service import APP, GRID, GridService, grid_service

pytestmark = pytest.mark.timeout(120)

RELAY_STALL = 2.0


@pytest.fixture
async def gateway_target(tmp_path: Path) -> AsyncIterator[tuple[str, GridService]]:
    async with grid_service() as app_server:
        supervisor = Supervisor({APP: tmp_path / "app.py"}, "127.0.0.1:1")
        gateway = LocalGateway(supervisor, "127.0.0.1:0", relay_stall_seconds=RELAY_STALL)
        gateway.start()
        process = supervisor.apps[APP]
        (replica,) = process.replicas
        replica.status, replica.ports = "running", {"grpc": app_server.listeners.grpc_port}
        for notify in supervisor.on_change:
            notify(process)
        server = aio.server(options=GRPC_SERVER_OPTIONS)
        add_services(server, gateway, Authenticator(AuthSettings()), is_loopback)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            yield f"127.0.0.1:{port}", app_server
        finally:
            await gateway.close()
            await server.stop(None)


async def test_stalled_subscriber_of_the_gateway_is_dropped_by_the_gateway(
    gateway_target: tuple[str, GridService],
) -> None:
    target, app_server = gateway_target
    app_server.commit({"k0": {"text": "first"}})
    app_server.channel.max_entries = 20
    async with aio.insecure_channel(target) as channel:
        request = grid_pb2.SubscribeRequest(app=APP, grid=GRID).SerializeToString()
        call = channel.unary_stream("/aerogrid.v1.GridService/Subscribe", None, None)(request)
        await anext(aiter(call))  # the stream is open (its schema came); now it stalls
        deadline = time.monotonic() + 40
        commit = 0
        while app_server.channel.subscribers:  # until the gateway cancels the app's stream
            assert time.monotonic() < deadline, "the stalled subscriber was never dropped"
            commit += 1
            app_server.commit({f"k{i}": {"text": f"{commit}:" + "x" * 1000} for i in range(100)})
            await asyncio.sleep(0.05)
        with pytest.raises(aio.AioRpcError) as ended:
            async for _message in call:
                pass
    assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Dropped by the gateway's hop (its stall), not passed on from the app's.
    assert f"read nothing for {RELAY_STALL:g} s" in (ended.value.details() or "")
