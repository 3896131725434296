"""An open WatchApps stream follows the Tenants' groups, on the API-server bed.

A Tenant whose spec.groups gains the caller's IdP group shows its apps on the caller's open
stream; once the group is taken off again they are removed there, and later changes to them
are not sent: no reconnection either way (a removed group is a security matter). The bed,
the Tenants a and b and the served catalog are tests/cloud/test_catalog.py's fixtures.
"""

from __future__ import annotations

import asyncio
from typing import Any

from grpc import aio

from aerogrid.v1 import catalog_pb2, catalog_pb2_grpc
from aerogrid_cloud.catalog import CatalogServer
from cloud import test_catalog as bed
from cloud.test_catalog import Tenants, set_groups, set_status
from support.kube_blocking import BlockingKube

#: test_catalog's fixtures, made this module's (pytest finds fixtures by module attribute).
tenants, admin, served = bed.tenants, bed.admin, bed.served

#: How long each step may take, from the change on the API server to the stream's message.
STEP_SECONDS = 15.0


async def next_message(stream: Any, what: str) -> catalog_pb2.WatchAppsResponse:
    """The stream's next message; fails naming `what` after STEP_SECONDS."""
    try:
        message: catalog_pb2.WatchAppsResponse = await asyncio.wait_for(stream.read(), STEP_SECONDS)
    except TimeoutError:
        raise AssertionError(f"not within {STEP_SECONDS:.0f} s: {what}") from None
    return message


def apps_of(message: catalog_pb2.WatchAppsResponse) -> list[tuple[str, str, int]]:
    return sorted((x.tenant, x.name, x.status) for x in message.apps)


async def test_an_open_stream_follows_the_callers_tenants(
    served: CatalogServer, tenants: Tenants, admin: BlockingKube
) -> None:
    a, b = tenants.a, tenants.b
    token = tenants.jwt([tenants.group_a])  # a member of tenant a's group only
    async with aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        stream = stub.WatchApps(
            catalog_pb2.WatchAppsRequest(), metadata=(("authorization", f"Bearer {token}"),)
        )
        try:
            initial = await next_message(stream, "the stream's first message")
            assert initial.initial
            assert [(t, n) for t, n, _ in apps_of(initial)] == [(a, "orders"), (a, "prices")]

            # The group joins tenant b: b's apps come on the open stream, as new apps do.
            set_groups(admin, b, [tenants.group_b, tenants.group_a])
            joined = await next_message(stream, "tenant b's apps once the group joins it")
            assert not joined.initial and not joined.removed
            assert apps_of(joined) == [
                (b, "orders", catalog_pb2.APP_STATUS_STARTING),
                (b, "risk", catalog_pb2.APP_STATUS_STOPPED),
            ]

            # The group leaves tenant b: b's "risk" is removed; "orders" stays a's (clients
            # key apps by name, so a's is sent again rather than the name removed).
            set_groups(admin, b, [tenants.group_b])
            left = await next_message(stream, "tenant b's apps removed once the group leaves")
            assert list(left.removed) == ["risk"]
            assert apps_of(left) == [(a, "orders", catalog_pb2.APP_STATUS_RUNNING)]

            # Nothing of b's is news any more: b's change comes first on the API server's
            # watch, a's after it, and a's is the next (and only) thing the stream says.
            set_status(admin, b, "risk", "Running")
            set_status(admin, a, "prices", "Running")
            after = await next_message(stream, "tenant a's change after tenant b's")
            assert not after.removed
            assert apps_of(after) == [(a, "prices", catalog_pb2.APP_STATUS_RUNNING)]
        finally:
            stream.cancel()
            set_groups(admin, b, [tenants.group_b])
            set_status(admin, b, "risk", "Stopped")
            set_status(admin, a, "prices", "Failed", "image build failed: no nosuchpkg")
