"""`ServiceAPI`: the transport-agnostic API that gRPC and Connect both serve.

Implemented by `app_service.AppService` (one `aerogrid run` process), the devkit's
`LocalGateway` (a workspace) and the cluster's `ClusterCatalog`. "Endpoint" in this
code base means only an address a client connects to.

Transports authenticate the caller, then call these methods. Streams yield
*serialized* messages so that one encoded delta can be shared by many subscribers.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

from aerogrid.server.identity import Caller
from aerogrid.v1 import catalog_pb2, grid_pb2


@runtime_checkable
class Paced(Protocol):
    """A subscription stream that can tell when its client fell behind the replay window.

    A transport whose send to that client has been waiting `stall_seconds` (the client
    is not reading) drops the subscription once this is true: see `connections.SendWatch`.
    """

    stall_seconds: float

    def fell_behind(self) -> bool: ...


class PacedStream(AsyncGenerator[bytes, None]):
    """A stream's messages, with what `Paced` asks: when its client fell behind."""

    def __init__(
        self,
        messages: AsyncGenerator[bytes, None],
        fell_behind: Callable[[], bool],
        stall_seconds: float,
    ) -> None:
        self._messages = messages
        self.fell_behind = fell_behind
        self.stall_seconds = stall_seconds

    def __anext__(self) -> Coroutine[Any, Any, bytes]:
        return self._messages.__anext__()

    def asend(self, value: None) -> Coroutine[Any, Any, bytes]:
        return self._messages.asend(value)

    def athrow(
        self, typ: Any, val: Any = None, tb: TracebackType | None = None
    ) -> Coroutine[Any, Any, bytes]:
        return self._messages.athrow(typ, val, tb)

    def aclose(self) -> Coroutine[Any, Any, None]:
        return self._messages.aclose()


class ServiceAPI(Protocol):
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
