"""The transport-agnostic API of an endpoint: what gRPC and Connect both serve.

Transports authenticate the caller, then call these methods. Streams yield
*serialized* messages so that one encoded delta can be shared by many subscribers.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol, runtime_checkable

from aerogrid.server.identity import Caller
from aerogrid.v1 import catalog_pb2, grid_pb2


@runtime_checkable
class Paced(Protocol):
    """A subscription stream that can tell when its client fell behind the replay window.

    A transport whose send to that client has been waiting (the client is not reading)
    drops the subscription once this is true: see `connections.SendWatch`.
    """

    def fell_behind(self) -> bool: ...


class GridEndpoint(Protocol):
    """Serves grids and the catalog. Raises `ServiceError` for a caller's mistakes."""

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, caller: Caller
    ) -> grid_pb2.ListGridsResponse: ...

    def subscribe(
        self, request: grid_pb2.SubscribeRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        """Serialized `SubscribeResponse` messages until the caller goes away."""
        ...

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, caller: Caller
    ) -> catalog_pb2.ListAppsResponse: ...

    def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        """Serialized `WatchAppsResponse` messages until the caller goes away."""
        ...
