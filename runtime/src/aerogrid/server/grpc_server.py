"""Native gRPC (grpc.aio) for the grid and catalog services.

Methods are registered by hand rather than through the generated servicer:

* responses of streams are passed through as already-serialized bytes, so one encoded
  delta is shared by every caught-up subscriber;
* requests arrive as bytes too, read by the handler itself (every method is registered
  as request-streaming, which is the same on the wire): a call whose request message is
  not whole within REQUEST_TIMEOUT ends with DEADLINE_EXCEEDED (grpc.aio would wait for
  it forever), and one that does not decode gets INVALID_ARGUMENT and one rate-limited
  log line (grpc.aio's own deserializer answers UNKNOWN and logs a traceback);
* a subscriber that stopped reading and fell behind the replay window is dropped
  (`connections.SendWatch`), which needs the sends in the handler's hands.

Server reflection describes both services (`grpc_standard`), so grpcurl and other
generic clients need no .proto files; health is `grpc_standard.GrpcHealth`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Final, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf.message import Message
from grpc import aio

from aerogrid.server.connections import REQUEST_TIMEOUT, SendWatch, refused
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.grpc_standard import add_reflection
from aerogrid.server.identity import Caller
from aerogrid.server.service import Paced, ServiceAPI
from aerogrid.v1 import catalog_pb2, grid_pb2

#: The services `add_services` registers (health names them too).
SERVICES: Final = (
    grid_pb2.DESCRIPTOR.services_by_name["GridService"].full_name,
    catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name,
)

_Req = TypeVar("_Req", bound=Message)
_Context = aio.ServicerContext[Any, Any]


class Authenticate(Protocol):
    async def authenticate(
        self, authorization: str | None, *, peer_is_loopback: bool
    ) -> Caller: ...


def _identity(data: bytes) -> bytes:
    return data


async def _abort(context: _Context, exc: ServiceError) -> NoReturn:
    await context.abort(exc.code.grpc_status, exc.message)
    raise AssertionError("unreachable: abort raises")


class _Handlers:
    def __init__(
        self,
        service: ServiceAPI,
        authenticator: Authenticate,
        is_loopback: Callable[[str], bool],
    ) -> None:
        self.service = service
        self.authenticator = authenticator
        self.is_loopback = is_loopback

    async def _caller(self, context: _Context) -> Caller:
        metadata = dict(context.invocation_metadata() or ())
        authorization = metadata.get("authorization")
        token = authorization if isinstance(authorization, str) else None
        try:
            return await self.authenticator.authenticate(
                token, peer_is_loopback=self.is_loopback(context.peer())
            )
        except ServiceError as exc:
            await _abort(context, exc)

    async def _request(
        self, requests: AsyncIterator[bytes], context: _Context, kind: type[_Req]
    ) -> _Req:
        """The call's one request message, once whole (within REQUEST_TIMEOUT) and decoded."""
        name = kind.DESCRIPTOR.full_name
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                data = await anext(requests)
        except TimeoutError:
            refused("grpc", "incomplete", f"no whole {name} from {context.peer()}")
            await context.abort(
                Code.DEADLINE_EXCEEDED.grpc_status,
                f"the request message ({name}) did not arrive within {REQUEST_TIMEOUT:g} s",
            )
        except StopAsyncIteration:
            refused("grpc", "no_message", f"a call without a {name} from {context.peer()}")
            await context.abort(
                Code.INVALID_ARGUMENT.grpc_status, f"the call carried no request message ({name})"
            )
        try:
            return kind.FromString(data)
        except Exception as exc:  # protobuf raises several types for bad input
            refused("grpc", "malformed", f"{name} from {context.peer()}: {exc}")
            await context.abort(Code.INVALID_ARGUMENT.grpc_status, f"cannot decode {name}: {exc}")
            raise  # unreachable: abort raises

    async def _stream(self, stream: AsyncGenerator[bytes, None], context: _Context) -> None:
        """Send a service stream's messages; a ServiceError, or a drop, ends it with its status.

        The stream is closed before the status is sent: a status waits behind the messages
        a stalled client has not read, and the subscription must not wait with it.
        """
        task = asyncio.current_task()
        assert task is not None
        watch = None
        if isinstance(stream, Paced):
            watch = SendWatch(stream.fell_behind, task.cancel, stall_seconds=stream.stall_seconds)
        error: ServiceError | None = None
        try:
            async for message in stream:
                if watch is None:
                    await context.write(message)
                else:
                    with watch.sending():
                        await context.write(message)
        except ServiceError as exc:
            error = exc
        except asyncio.CancelledError:
            if watch is None or watch.error is None:
                raise
            task.uncancel()
            error = watch.error
        finally:
            if watch is not None:
                watch.close()
            await stream.aclose()
        if error is not None:
            context.set_code(error.code.grpc_status)
            context.set_details(error.message)

    async def list_grids(
        self, requests: AsyncIterator[bytes], context: _Context
    ) -> grid_pb2.ListGridsResponse:
        caller = await self._caller(context)
        request = await self._request(requests, context, grid_pb2.ListGridsRequest)
        try:
            return await self.service.list_grids(request, caller)
        except ServiceError as exc:
            await _abort(context, exc)

    async def subscribe(self, requests: AsyncIterator[bytes], context: _Context) -> None:
        caller = await self._caller(context)
        request = await self._request(requests, context, grid_pb2.SubscribeRequest)
        await self._stream(self.service.subscribe(request, caller), context)

    async def list_apps(
        self, requests: AsyncIterator[bytes], context: _Context
    ) -> catalog_pb2.ListAppsResponse:
        caller = await self._caller(context)
        request = await self._request(requests, context, catalog_pb2.ListAppsRequest)
        try:
            return await self.service.list_apps(request, caller)
        except ServiceError as exc:
            await _abort(context, exc)

    async def watch_apps(self, requests: AsyncIterator[bytes], context: _Context) -> None:
        caller = await self._caller(context)
        request = await self._request(requests, context, catalog_pb2.WatchAppsRequest)
        await self._stream(self.service.watch_apps(request, caller), context)


def add_services(
    server: aio.Server,
    service: ServiceAPI,
    authenticator: Authenticate,
    is_loopback: Callable[[str], bool],
) -> None:
    """Register GridService and CatalogService, and reflection describing them.

    Create the server with `connections.GRPC_SERVER_OPTIONS` for its connection limits.
    """
    h = _Handlers(service, authenticator, is_loopback)
    grid_service = grpc.method_handlers_generic_handler(
        SERVICES[0],
        {
            "ListGrids": grpc.stream_unary_rpc_method_handler(
                h.list_grids, response_serializer=grid_pb2.ListGridsResponse.SerializeToString
            ),
            "Subscribe": grpc.stream_stream_rpc_method_handler(
                h.subscribe, response_serializer=_identity
            ),
        },
    )
    catalog_service = grpc.method_handlers_generic_handler(
        SERVICES[1],
        {
            "ListApps": grpc.stream_unary_rpc_method_handler(
                h.list_apps, response_serializer=catalog_pb2.ListAppsResponse.SerializeToString
            ),
            "WatchApps": grpc.stream_stream_rpc_method_handler(
                h.watch_apps, response_serializer=_identity
            ),
        },
    )
    server.add_generic_rpc_handlers((grid_service, catalog_service))
    add_reflection(server, (grid_pb2.DESCRIPTOR, catalog_pb2.DESCRIPTOR))
