"""The HTTP server of a grid service's HTTP port: hypercorn, HTTP/1.1 and HTTP/2, h2c and TLS.

Connect and gRPC-Web clients speak HTTP/2 where they can (Go's and .NET's clients, `buf
curl --http2-prior-knowledge`, browsers over TLS), so the port serves HTTP/1.1, HTTP/2
with prior knowledge (h2c) and, with a TLS context, ALPN `h2` and `http/1.1`. uvicorn
speaks only HTTP/1.1; hypercorn (pinned) serves ASGI over h11 and h2 from the same
protocol code, so we run its per-connection server (`TCPServer`) under our own accept
loop rather than its `serve()`, which owns signals, binds and shutdown. That loop adds
what hypercorn lacks and `connections` requires:

* every connection shows a whole request head (HTTP/1.1) or opens a stream (HTTP/2)
  within `connections.HEADER_TIMEOUT` of its start or of its previous response
  (hypercorn's keep-alive timer, which runs until a request head is complete), and one
  that never did is counted and logged as refused ("silent" or "slow_head");
* an ASGI extension, "aerogrid.abort", that cuts a connection whose client stopped
  reading: a response's last bytes would wait behind what it has not read, and a
  graceful close would wait with them (see web/calls.py);
* `connections`, the open connections (a test and a shutdown wait for them);
* a response head that leaves with its body, and HTTP/2 that survives late request data
  (`http_protocols`).

What differs from the uvicorn server it replaces: an idle HTTP/1.1 keep-alive connection
is closed after HEADER_TIMEOUT (10 s, uvicorn's was 5 s), and so is an HTTP/2 connection
with no stream open. A request answered before its body was read (an early error)
still closes its HTTP/1.1 connection (hypercorn's own rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from typing import Any, Final

import h11
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.utils import wrap_app

from aerogrid.net import LISTEN_BACKLOG
from aerogrid.server.connections import HEADER_TIMEOUT, refused
from aerogrid.server.http_protocols import install

__all__ = ["ABORT_EXTENSION", "ALPN_PROTOCOLS", "HttpServer", "serve_http"]

#: scope["extensions"][ABORT_EXTENSION]["abort"]() cuts the request's connection.
ABORT_EXTENSION: Final = "aerogrid.abort"
#: What a TLS port offers, in order of preference.
ALPN_PROTOCOLS: Final = ("h2", "http/1.1")
#: Seconds requests in progress get to finish once the server stops, before they are cancelled.
GRACEFUL_SECONDS: Final = 1.0


def _config() -> Config:
    config = Config()
    config.keep_alive_timeout = HEADER_TIMEOUT
    config.graceful_timeout = GRACEFUL_SECONDS
    config.accesslog = None
    config.errorlog = None
    config.alpn_protocols = list(ALPN_PROTOCOLS)
    config.include_server_header = False
    return config


class _Connection(TCPServer):
    """hypercorn's connection, counting one closed for never sending a request head."""

    requests = 0

    async def _close(self) -> None:
        # A TLS peer that closed first makes the close itself fail (for example
        # APPLICATION_DATA_AFTER_CLOSE_NOTIFY); hypercorn does not expect that.
        with contextlib.suppress(ssl.SSLError, OSError):
            await super()._close()

    async def _idle_timeout(self) -> None:
        try:
            await asyncio.wait_for(self.context.terminated.wait(), self.config.keep_alive_timeout)
        except TimeoutError:
            self._count_refused()
        await asyncio.shield(self._initiate_server_close())

    def _count_refused(self) -> None:
        protocol = getattr(self, "protocol", None)
        inner = getattr(protocol, "protocol", None)
        if not isinstance(inner, H11Protocol) or self.requests:
            return  # a kept-alive connection that did its work, or an idle HTTP/2 one
        conn = inner.connection
        started = conn.their_state is not h11.IDLE or bool(conn.trailing_data[0])
        peer = self.writer.get_extra_info("peername")
        refused(
            "http",
            "slow_head" if started else "silent",
            f"no whole request head from {peer} in {HEADER_TIMEOUT:g} s",
        )


class HttpServer:
    """Serves one ASGI app on listening sockets until `stop()`."""

    def __init__(self, app: Any, *, tls: ssl.SSLContext | None = None) -> None:
        install()  # hypercorn's protocols with our changes (http_protocols.py)
        self._app = app
        self._tls = tls
        self._config = _config()
        self._context = WorkerContext(None)
        self._servers: list[asyncio.Server] = []
        #: The tasks serving open connections, one each.
        self.connections: set[asyncio.Task[None]] = set()
        #: The tasks running the app, one per request in progress.
        self._requests: set[asyncio.Task[Any]] = set()

    async def listen(self, sock: socket.socket) -> None:
        """Start accepting connections on a bound socket (`aerogrid.net.bind_socket`)."""
        if self._tls is not None:
            self._tls.set_alpn_protocols(list(ALPN_PROTOCOLS))
        server = await asyncio.start_server(
            self._serve_connection,
            sock=sock,
            ssl=self._tls,
            ssl_handshake_timeout=HEADER_TIMEOUT if self._tls is not None else None,
            backlog=LISTEN_BACKLOG,
        )
        self._servers.append(server)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        task.add_done_callback(self.connections.discard)
        connection: _Connection | None = None
        extension = {ABORT_EXTENSION: {"abort": writer.transport.abort}}
        inner = self._app

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if connection is not None and scope.get("type") == "http":
                connection.requests += 1
            scope["extensions"] = {**(scope.get("extensions") or {}), **extension}
            request = asyncio.current_task()
            assert request is not None
            self._requests.add(request)
            try:
                await inner(scope, receive, send)
            finally:
                self._requests.discard(request)

        loop = asyncio.get_running_loop()
        connection = _Connection(
            wrap_app(app, 0, "asgi"), loop, self._config, self._context, {}, reader, writer
        )
        try:
            await connection.run()
        except (asyncio.CancelledError, ssl.SSLError, OSError):
            # Cancelled by stop(), or the peer went away: the connection is over either
            # way, and asyncio would log this connection task's end as an error. What the
            # cancelled calls wrote last (a stream's UNAVAILABLE end) gets a moment to go.
            writer.transport.close()
            loop.call_later(GRACEFUL_SECONDS, writer.transport.abort)

    async def stop(self) -> None:
        """Stop accepting, let requests in progress finish for GRACEFUL_SECONDS, cancel the rest.

        A cancelled stream ends with UNAVAILABLE ("the server is shutting down"), so its
        client resumes elsewhere (web/calls.py); its connection then closes as usual. A
        connection still open after that is cut.
        """
        await self._context.terminated.set()
        for server in self._servers:
            server.close()
        still = set(self.connections)
        for cancel in (self._cancel_requests, self._cancel_connections):
            if still:
                _, still = await asyncio.wait(still, timeout=GRACEFUL_SECONDS)
            if still:
                cancel()
        if still:
            await asyncio.wait(still, timeout=GRACEFUL_SECONDS)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), GRACEFUL_SECONDS)

    def _cancel_requests(self) -> None:
        for task in self._requests:
            task.cancel()

    def _cancel_connections(self) -> None:
        for task in self.connections:
            task.cancel()


async def serve_http(
    app: Any, sock: socket.socket, *, tls: ssl.SSLContext | None = None
) -> HttpServer:
    """Serve the ASGI `app` on the bound socket `sock` (HTTP/1.1 and h2c; with `tls`, ALPN
    h2 and http/1.1), started; `await server.stop()` ends it."""
    server = HttpServer(app, tls=tls)
    await server.listen(sock)
    return server
