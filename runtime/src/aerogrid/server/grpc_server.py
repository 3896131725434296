"""Native gRPC (grpc.aio) for the grid and catalog services.

Methods are registered by hand rather than through the generated servicer so that
stream responses can be passed through as already-serialized bytes: one encoded delta
is shared by every caught-up subscriber.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol

import grpc
from grpc import aio

from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import Caller
from aerogrid.server.service import GridEndpoint
from aerogrid.v1 import catalog_pb2, grid_pb2

_STATUS = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Code.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.INTERNAL: grpc.StatusCode.INTERNAL,
}


class Authenticate(Protocol):
    async def authenticate(
        self, authorization: str | None, *, peer_is_loopback: bool
    ) -> Caller: ...


def _identity(data: bytes) -> bytes:
    return data


class _Handlers:
    def __init__(
        self,
        endpoint: GridEndpoint,
        authenticator: Authenticate,
        is_loopback: Callable[[str], bool],
    ) -> None:
        self.endpoint = endpoint
        self.authenticator = authenticator
        self.is_loopback = is_loopback

    async def _caller(self, context: aio.ServicerContext[Any, Any]) -> Caller:
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        token = authorization if isinstance(authorization, str) else None
        try:
            return await self.authenticator.authenticate(
                token, peer_is_loopback=self.is_loopback(context.peer())
            )
        except ServiceError as exc:
            await context.abort(_STATUS[exc.code], exc.message)
            raise  # unreachable: abort raises

    async def _relay(
        self, stream: AsyncGenerator[bytes, None], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        """Pass a service stream's messages on; a ServiceError ends it with its status."""
        try:
            async for message in stream:
                yield message
        except ServiceError as exc:
            await context.abort(_STATUS[exc.code], exc.message)
        finally:
            await stream.aclose()

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, context: aio.ServicerContext[Any, Any]
    ) -> grid_pb2.ListGridsResponse:
        caller = await self._caller(context)
        try:
            return await self.endpoint.list_grids(request, caller)
        except ServiceError as exc:
            await context.abort(_STATUS[exc.code], exc.message)
            raise

    async def subscribe(
        self, request: grid_pb2.SubscribeRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        caller = await self._caller(context)
        async for message in self._relay(self.endpoint.subscribe(request, caller), context):
            yield message

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, context: aio.ServicerContext[Any, Any]
    ) -> catalog_pb2.ListAppsResponse:
        caller = await self._caller(context)
        try:
            return await self.endpoint.list_apps(request, caller)
        except ServiceError as exc:
            await context.abort(_STATUS[exc.code], exc.message)
            raise

    async def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        caller = await self._caller(context)
        async for message in self._relay(self.endpoint.watch_apps(request, caller), context):
            yield message


def add_services(
    server: aio.Server,
    endpoint: GridEndpoint,
    authenticator: Authenticate,
    is_loopback: Callable[[str], bool],
) -> None:
    """Register GridService and CatalogService on a grpc.aio server."""
    h = _Handlers(endpoint, authenticator, is_loopback)
    grid_service = grpc.method_handlers_generic_handler(
        "aerogrid.v1.GridService",
        {
            "ListGrids": grpc.unary_unary_rpc_method_handler(
                h.list_grids,
                request_deserializer=grid_pb2.ListGridsRequest.FromString,
                response_serializer=grid_pb2.ListGridsResponse.SerializeToString,
            ),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                h.subscribe,
                request_deserializer=grid_pb2.SubscribeRequest.FromString,
                response_serializer=_identity,
            ),
        },
    )
    catalog_service = grpc.method_handlers_generic_handler(
        "aerogrid.v1.CatalogService",
        {
            "ListApps": grpc.unary_unary_rpc_method_handler(
                h.list_apps,
                request_deserializer=catalog_pb2.ListAppsRequest.FromString,
                response_serializer=catalog_pb2.ListAppsResponse.SerializeToString,
            ),
            "WatchApps": grpc.unary_stream_rpc_method_handler(
                h.watch_apps,
                request_deserializer=catalog_pb2.WatchAppsRequest.FromString,
                response_serializer=_identity,
            ),
        },
    )
    server.add_generic_rpc_handlers((grid_service, catalog_service))
