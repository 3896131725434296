"""uvicorn with the limits of `connections`: h11 with the timeouts uvicorn lacks (HTTP/1.1 only).

What the devkit's local endpoint runs internally until it moves to
`aerogrid.server.http_server.serve_http` (HTTP/1.1 and HTTP/2); the grid service's own HTTP
port uses that already.

uvicorn's h11 protocol times out an idle keep-alive connection only after a response:
a connection that never sends a whole request head (a silent one, a slowloris sending
a header byte every few seconds) is held for as long as the client likes. This protocol
gives every request head `connections.HEADER_TIMEOUT` from the connection's start or
the previous response; a request whose body the app did not wait for (an early error)
closes the connection rather than reading the rest at the client's pace. It offers the
same "aerogrid.abort" extension as `http_server`.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from aerogrid.server.connections import HEADER_TIMEOUT, refused
from aerogrid.server.http_server import ABORT_EXTENSION

__all__ = ["BoundedH11Protocol", "uvicorn_config"]


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for every request head."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        inner = self.app
        extension = {ABORT_EXTENSION: {"abort": self._abort}}

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["extensions"] = {**scope.get("extensions", {}), **extension}
            await inner(scope, receive, send)

        self.app = app

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        if self.conn.their_state not in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            # Answered before the request's body was read (an error): do not read the
            # rest at the client's pace to reuse the connection; close it.
            self.server_state.total_requests += 1
            self._close()
            return
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        started = bool(self.conn.trailing_data[0])
        refused(
            "http",
            "slow_head" if started else "silent",
            f"no whole request head from {self.client} in {HEADER_TIMEOUT:g} s",
        )
        self._close()

    def timeout_keep_alive_handler(self) -> None:
        if not self.transport.is_closing():
            self.conn.send(h11.ConnectionClosed())
        self._close()

    def _close(self) -> None:
        """Close, or abort when unread bytes wait (a graceful close would wait for them)."""
        if self.transport.get_write_buffer_size():
            self.transport.abort()
        else:
            self.transport.close()

    def _abort(self) -> None:
        self._cancel_head_timer()
        self.transport.abort()


def uvicorn_config(
    app: Any, *, tls: ssl.SSLContext | None = None, **options: Any
) -> uvicorn.Config:
    """The uvicorn Config of a grid service's HTTP port: bounded h11, no access log, no lifespan.

    `options` are passed on (e.g. `log_config=None` to leave the caller's logging alone).
    """
    settings: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "access_log": False,
        "http": BoundedH11Protocol,
        "ws": "none",
        "timeout_graceful_shutdown": 1,
        **options,
    }
    if tls is not None:
        settings["ssl_context_factory"] = lambda _config, _default: tls
    return uvicorn.Config(app, **settings)
