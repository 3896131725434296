"""The devkit's local endpoint with the real grpcurl, plaintext: reflection of the services
it routes (no .proto files), calls through it to an app, and gRPC health for the endpoint
itself and, with an app's name as the service, for that app.

A workspace of one orders app (declared under another name than its workspace key) and
one app that crashes at import, on the embedded broker, behind one LocalServer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.supervisor import Supervisor
from support.apps import produce, write_orders_app
from support.brokers import Broker
from support.grpcurl import Grpcurl, grpcurl_binary
from support.orders import converged, expected_sums, orders
from support.workspace import eventually, supervised_endpoint

pytestmark = pytest.mark.asyncio(loop_scope="module")

GRID_SERVICE = "aerogrid.v1.GridService"
CATALOG_SERVICE = "aerogrid.v1.CatalogService"


@dataclass
class Endpoint:
    supervisor: Supervisor
    server: LocalServer
    grpcurl: Grpcurl
    #: The orders app's declared name (what clients and health use).
    app: str


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def endpoint(
    tansu: Broker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Endpoint]:
    binary = grpcurl_binary()
    base = tmp_path_factory.mktemp("workspace")
    name = f"sums-{uuid.uuid4().hex[:8]}"
    (base / "orders").mkdir()
    (base / "broken").mkdir()
    files: dict[str, Path] = {
        "orders": write_orders_app(base / "orders", name, f"{name}-orders", partitions=1),
        "broken": base / "broken" / "app.py",
    }
    files["broken"].write_text("import aerogrid\nraise RuntimeError('broken on purpose')\n")
    records = orders(30, seed=7)
    await produce(tansu.bootstrap, f"{name}-orders", records)
    async with supervised_endpoint(files, tansu.bootstrap, running=["orders"], tls=False) as (
        supervisor,
        server,
    ):
        want = expected_sums(records)
        assert await converged(server.address, name, "product_sum", want) == want
        yield Endpoint(supervisor, server, Grpcurl(binary, server.address), name)


async def test_grpcurl_lists_describes_and_calls_through_the_endpoint(endpoint: Endpoint) -> None:
    grpcurl, app = endpoint.grpcurl, endpoint.app
    listed = (await asyncio.to_thread(grpcurl.ok, "list")).split()
    assert set(listed) >= {
        GRID_SERVICE,
        CATALOG_SERVICE,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    described = await asyncio.to_thread(grpcurl.ok, "describe", CATALOG_SERVICE)
    assert "rpc WatchApps ( .aerogrid.v1.WatchAppsRequest ) returns ( stream" in described

    (catalog,) = await asyncio.to_thread(grpcurl.call, f"{CATALOG_SERVICE}/ListApps")
    assert {a["name"] for a in catalog["apps"]} == {app, "broken"}
    (grids,) = await asyncio.to_thread(grpcurl.call, f"{GRID_SERVICE}/ListGrids", {"app": app})
    assert [g["name"] for g in grids["grids"]] == ["product_sum"]
    events = await asyncio.to_thread(
        grpcurl.stream,
        f"{GRID_SERVICE}/Subscribe",
        {"app": app, "grid": "product_sum", "heartbeatIntervalMs": 200},
        1.5,
    )
    kinds = [next(iter(event)) for event in events]
    assert kinds[:2] == ["schema", "snapshot"], kinds
    assert "heartbeat" in kinds[2:], kinds


async def test_health_of_the_endpoint_and_of_each_app(endpoint: Endpoint) -> None:
    grpcurl, app = endpoint.grpcurl, endpoint.app

    async def health(service: str) -> str:
        return await asyncio.to_thread(grpcurl.health, service)

    for service in ("", GRID_SERVICE, CATALOG_SERVICE, app):
        assert await health(service) == "SERVING", service
    assert await health("broken") == "NOT_SERVING"  # known, its process is not running
    assert await health("orders") == "NOT_FOUND"  # a workspace key, not a declared name
    assert await health("no-such-app") == "NOT_FOUND"

    async def app_stopped() -> bool:
        return await health(app) == "NOT_SERVING"

    await endpoint.supervisor.stop_app("orders")
    await eventually(app_stopped, "the stopped app NOT_SERVING", timeout=10)
    assert await health("") == "SERVING"  # the endpoint itself still serves
