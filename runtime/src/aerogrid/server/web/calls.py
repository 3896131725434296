"""Running one RPC over a negotiated protocol: read, admit, decode, call, answer.

`unary` answers a Connect unary call with one HTTP response. `streamed` serves every
enveloped call (a Connect server stream, any gRPC-Web call): it sends the messages as
they come, ends with the protocol's status frame, and closes the service's iterator as
soon as the client leaves, so the server frees the subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import TypeVar

from google.protobuf.message import Message

from aerogrid.server.connections import STALL_SECONDS, SendWatch
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.service import Paced
from aerogrid.server.web.asgi import (
    ASGIReceive,
    Response,
    abort_connection,
    read_body,
    until_disconnect,
)
from aerogrid.server.web.authentication import PeerAuthentication
from aerogrid.server.web.context import RequestContext, enter_request
from aerogrid.server.web.protocol import EnvelopedProtocol, UnaryProtocol, WireProtocol
from aerogrid.server.web.protocol_error import ProtocolError, wire_error

__all__ = ["CallRunner", "stream_error"]

_P = TypeVar("_P", bound=WireProtocol)

log = logging.getLogger(__name__)


class CallRunner:
    """Runs calls within a request size limit, authenticating each caller."""

    def __init__(self, authentication: PeerAuthentication, max_request_bytes: int) -> None:
        self._authentication = authentication
        self._limit = max_request_bytes

    async def discard_body(self, receive: ASGIReceive) -> None:
        """Read and drop a request's body (within the size limit and REQUEST_TIMEOUT) before
        an early answer: an HTTP/1.1 client still writing a body we did not read would
        see its connection closed under it (a broken pipe) instead of our answer."""
        with contextlib.suppress(ProtocolError):
            await read_body(receive, self._limit)

    async def _admit(self, ctx: RequestContext[_P], body: bytes) -> Message:
        """Check the protocol's headers, authenticate, decode: the request message."""
        protocol = ctx.protocol
        protocol.check_headers(ctx.headers)
        ctx.timeout = protocol.timeout(ctx.headers)
        data = protocol.request_message(body, ctx.headers, self._limit)
        ctx.caller = await self._authentication.caller(ctx.scope, ctx.headers)
        enter_request(ctx)
        request_type: type[Message] = ctx.method.request_type
        return protocol.serialization.decode(request_type, data)

    async def unary(
        self, ctx: RequestContext[UnaryProtocol], receive: ASGIReceive, response: Response
    ) -> None:
        protocol, call = ctx.protocol, ctx.method.unary
        assert call is not None
        try:
            body = await read_body(receive, self._limit)
            if body is None:
                return
            request = await self._admit(ctx, body)
            assert ctx.caller is not None
            deadline = asyncio.timeout(ctx.timeout)
            try:
                async with deadline:
                    result = await call(request, ctx.caller)
            except TimeoutError:
                if deadline.expired():
                    raise ServiceError(Code.DEADLINE_EXCEEDED, "deadline exceeded") from None
                raise
            payload = protocol.serialization.encode(result)
        except Exception as exc:
            status, content_type, body = protocol.error_response(wire_error(exc, ctx.where))
            await response.whole(status, content_type, body, _unary_headers(ctx))
            return
        await response.whole(200, protocol.content_type, payload, _unary_headers(ctx))

    async def streamed(
        self, ctx: RequestContext[EnvelopedProtocol], receive: ASGIReceive, response: Response
    ) -> None:
        """A Connect server stream, or any call over gRPC-Web (framed the same way)."""
        protocol = ctx.protocol
        try:
            body = await read_body(receive, self._limit)
            if body is None:
                return
            request = await self._admit(ctx, body)
        except Exception as exc:
            await stream_error(response, protocol, wire_error(exc, ctx.where))
            return

        # The response starts with the first message (or the end): a call sets its
        # headers before either (`RequestContext.response_headers`).
        pump = asyncio.ensure_future(_pump(ctx, request, response))
        gone = asyncio.ensure_future(until_disconnect(receive))
        try:
            done, _ = await asyncio.wait(
                (pump, gone), timeout=ctx.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            # The server is stopping (http_server cancels requests once its graceful
            # shutdown times out): free the subscription, and tell the client so it
            # can resume elsewhere instead of seeing a cut stream.
            # Cancel first and end the response before awaiting anything: the loop
            # may be about to cancel everything again (asyncio.run's cleanup).
            client_left = gone.done()
            pump.cancel()
            gone.cancel()
            if not client_left:
                shutting_down = ServiceError(Code.UNAVAILABLE, "the server is shutting down")
                with contextlib.suppress(Exception):
                    await _start(ctx, response)
                    await response.body(protocol.end(shutting_down), more=False)
            await _stop(pump, gone)
            raise
        # The pump's `finally` closes the service's iterator, freeing the subscription.
        await _stop(pump, gone)
        error: ServiceError | None = None
        if pump not in done:
            error = ServiceError(Code.DEADLINE_EXCEEDED, "deadline exceeded")
        elif (failure := pump.exception()) is not None:
            error = wire_error(failure, ctx.procedure)
        if gone in done:
            return  # the client left: nobody to tell
        try:
            # A client that stopped reading (or was dropped for it) may never take the
            # end of its stream: it waits behind what it has not read; then cut it off.
            async with asyncio.timeout(STALL_SECONDS):
                await _start(ctx, response)
                await response.body(protocol.end(error, ctx.response_trailers), more=False)
        except TimeoutError:
            abort_connection(ctx.scope)
        except OSError as exc:  # the connection broke between the last message and now
            log.debug("could not end the stream of %s: %s", ctx.procedure, exc)


async def stream_error(
    response: Response, protocol: EnvelopedProtocol, error: ServiceError
) -> None:
    """A call that failed before its first message: HTTP 200 and the status frame alone."""
    await response.start(200, [("content-type", protocol.content_type)])
    await response.body(protocol.end(error), more=False)


def _unary_headers(ctx: RequestContext[UnaryProtocol]) -> list[tuple[str, str]]:
    return ctx.response_headers + ctx.protocol.trailer_headers(ctx.response_trailers)


async def _start(ctx: RequestContext[EnvelopedProtocol], response: Response) -> None:
    """Start a stream's response, with the call's headers, unless it has started."""
    if not response.started:
        content_type = ("content-type", ctx.protocol.content_type)
        await response.start(200, [content_type, *ctx.response_headers])


async def _pump(
    ctx: RequestContext[EnvelopedProtocol], request: Message, response: Response
) -> None:
    """Sends the call's messages; closes the service's iterator however it ends."""
    protocol, method, caller = ctx.protocol, ctx.method, ctx.caller
    assert caller is not None
    if method.unary is not None:
        result = await method.unary(request, caller)
        payload = protocol.serialization.encode(result)
        await _start(ctx, response)
        await response.body(protocol.message(payload), more=True)
        return
    assert method.stream is not None
    messages = method.stream(request, caller)
    task = asyncio.current_task()
    assert task is not None
    watch = None
    if isinstance(messages, Paced):
        stall = messages.stall_seconds
        watch = SendWatch(messages.fell_behind, task.cancel, stall_seconds=stall)
    to_json = None
    if protocol.serialization.name == "json":
        assert method.to_json is not None
        to_json = method.to_json
    try:
        async for data in messages:
            if to_json is not None:
                data = to_json(data)
            if not response.started:
                await _start(ctx, response)
            if watch is None:
                await response.body(protocol.message(data), more=True)
            else:
                with watch.sending():
                    await response.body(protocol.message(data), more=True)
    except asyncio.CancelledError:
        if watch is None or watch.error is None:
            raise
        task.uncancel()
        raise watch.error from None
    finally:
        if watch is not None:
            watch.close()
        await _aclose(messages, ctx.procedure)


async def _aclose(messages: AsyncGenerator[bytes, None], where: str) -> None:
    try:
        await messages.aclose()
    except Exception:
        log.exception("closing the stream of %s failed", where)


async def _stop(*tasks: asyncio.Future[None]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
