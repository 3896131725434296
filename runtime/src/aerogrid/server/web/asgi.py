"""ASGI plumbing of the web transport: types, the response of one request, reading a body."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from aerogrid.server.connections import REQUEST_TIMEOUT
from aerogrid.server.errors import Code
from aerogrid.server.http_server import ABORT_EXTENSION
from aerogrid.server.web.protocol_error import ProtocolError

__all__ = [
    "ASGIApp",
    "ASGIMessage",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "Response",
    "abort_connection",
    "read_body",
    "request_headers",
    "serve_lifespan",
    "until_disconnect",
]

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]

TEXT_PLAIN = "text/plain; charset=utf-8"


class Response:
    """The response of one request: tracks whether it started, adds the CORS headers."""

    def __init__(self, send: ASGISend, extra_headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._extra = extra_headers
        self.started = False

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self.started = True
        await self._send(
            {"type": "http.response.start", "status": status, "headers": raw + self._extra}
        )

    async def body(self, data: bytes, *, more: bool) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def whole(
        self,
        status: int,
        content_type: str,
        data: bytes,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        await self.start(status, [("content-type", content_type), *headers])
        await self.body(data, more=False)


def request_headers(scope: ASGIScope) -> dict[str, str]:
    """Request headers by lower-case name; the first of repeated headers wins."""
    result: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        result.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return result


async def read_body(receive: ASGIReceive, limit: int) -> bytes | None:
    """The whole request body (within REQUEST_TIMEOUT), or None when the client went away."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(
                        Code.RESOURCE_EXHAUSTED,
                        f"request body exceeds {limit} bytes",
                        refused="too_large",
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise ProtocolError(
            Code.DEADLINE_EXCEEDED,
            f"the request body did not arrive within {REQUEST_TIMEOUT:g} s",
            refused="incomplete",
        ) from None


async def until_disconnect(receive: ASGIReceive) -> None:
    """Returns when the client disconnects (once the body is read, receive() waits for it)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def abort_connection(scope: ASGIScope) -> None:
    """Cut the request's connection, when the server offers it (see http_server.py)."""
    extension = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if extension is not None:
        extension["abort"]()


async def serve_lifespan(receive: ASGIReceive, send: ASGISend) -> None:
    """Answer the server's start-up and shut-down messages (nothing to do for either)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
