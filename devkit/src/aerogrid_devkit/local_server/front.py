"""One loopback port for every protocol: a front that routes each connection by its first bytes.

Native gRPC is HTTP/2 (grpc.aio serves it), Connect and gRPC-Web are what a browser's
`fetch` sends, HTTP/1.1 (uvicorn serves it), the Excel add-in's pages must come over
HTTPS (a second uvicorn, with the development certificate, terminates TLS), and no
server speaks the others' protocols or can share a listening socket. So the local
endpoint runs each on an internal ephemeral 127.0.0.1 port, and this front accepts on
the one public port, reads the first bytes of each connection, picks a server with
`classify`, and splices the connection to it byte for byte: nothing is decoded (TLS
included: the front never holds a key), and each direction is flow controlled (a slow
reader slows its writer, never the others).

Bytes no route serves (random bytes, a request cut short, a silent connection) are
closed and counted in `ConnectionCounts.rejected` by reason, and never reach a server;
so is a route the endpoint does not serve (TLS, when there is no certificate: "tls").

What a connection may cost is bounded: at most `max_connections` at once and
`max_handshakes` TLS handshakes in progress (more are closed at once, "busy": each
handshake holds some 300 KiB in the HTTPS server); a TLS client must finish its
handshake within the sniff timeout too ("tls_handshake"); a peer that takes none of
the bytes waiting for it for SEND_TIMEOUT is cut off; and after a flood the memory its
connections held is given back (`connections.FloodRelease`).

Binding is loopback only: `listen_addresses` refuses any other host.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import re
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aerogrid.net import LOOPBACK_HOST, bind_socket, is_loopback
from aerogrid.server.connections import SEND_TIMEOUT, FloodRelease, refused

__all__ = [
    "HTTP2_PREFACE",
    "ConnectionCounts",
    "Front",
    "PortInUseError",
    "Rejected",
    "Route",
    "classify",
    "listen_addresses",
]

log = logging.getLogger(__name__)

#: What every HTTP/2 client with prior knowledge (gRPC's included) sends first (RFC 9113 §3.4).
HTTP2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: An HTTP/1.x request head (request line and headers) must fit in this.
MAX_HEAD_BYTES: Final = 64 * 1024
_CHUNK: Final = 64 * 1024
_TLS_HANDSHAKE: Final = 0x16
_TLS_APPLICATION_DATA: Final = 0x17
_TLS_MAJOR: Final = 0x03
_TLS_HEADER: Final = 5
#: Connections open at once on the public port; more are closed at once ("busy").
MAX_CONNECTIONS: Final = 512
#: TLS connections in their handshake at once; more are closed at once ("busy").
MAX_TLS_HANDSHAKES: Final = 64

_REQUEST_LINE = re.compile(rb"[A-Z]{1,16} [\x21-\x7e]{1,8192} HTTP/1\.[01]\r\n")
# A request line still arriving: a method, maybe a target, maybe the start of a version.
_REQUEST_LINE_SO_FAR = re.compile(rb"[A-Z]{1,16}(?: [\x21-\x7e]{0,8192}(?: [HTP/1.0-9]{0,8}\r?)?)?")


class Route(StrEnum):
    """The internal servers a connection can go to."""

    GRPC = "grpc"
    HTTP = "http"
    #: HTTPS (HTTP/1.1 in TLS): the add-in's pages and the same Connect app.
    TLS = "tls"


class Rejected(Exception):
    """A connection no route serves; `reason` is the counter it is counted under."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PortInUseError(OSError):
    """The endpoint's port is taken on one of its loopback addresses."""


def classify(head: bytes) -> Route | None:
    """The route for a connection whose first bytes are `head`; None: read more first.

    Raises `Rejected` when no route serves those bytes. The dispatch of the front:

    * the HTTP/2 connection preface (native gRPC clients send it first: they speak
      HTTP/2 with prior knowledge) → `Route.GRPC`;
    * a complete HTTP/1.x request head → `Route.HTTP` (Connect, gRPC-Web, CORS
      preflights, /healthz). Waiting for the whole head keeps half requests away
      from the server, and lets them be counted here;
    * a TLS record (a handshake, 0x16, then version major 3: a ClientHello) →
      `Route.TLS`: HTTPS, for the add-in's pages (Office loads them over HTTPS only)
      and Connect from them. Its server offers HTTP/1.1 only (ALPN), so browsers
      speak that inside; gRPC over TLS is not served (native clients use h2c here);
    * anything else is refused (reason "garbage", or "too_large" for an endless head).

    Note h2c is taken to be gRPC: a Connect client needs HTTP/1.1 here (browsers, and
    the add-in, use it), in TLS or not.
    """
    if len(head) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(head):
        return None
    if head.startswith(HTTP2_PREFACE):
        return Route.GRPC
    if head[0] == _TLS_HANDSHAKE:
        if len(head) < 2:
            return None
        if head[1] != _TLS_MAJOR:
            raise Rejected("garbage")
        return Route.TLS
    line_end = head.find(b"\r\n")
    if line_end < 0:
        if _REQUEST_LINE_SO_FAR.fullmatch(head) is None:
            raise Rejected("garbage")
        return None
    if _REQUEST_LINE.match(head) is None:
        raise Rejected("garbage")
    if b"\r\n\r\n" not in head:
        if len(head) > MAX_HEAD_BYTES:
            raise Rejected("too_large")
        return None
    return Route.HTTP


@dataclass
class ConnectionCounts:
    """Connections the front took, by route, and refused, by reason."""

    grpc: int = 0
    http: int = 0
    #: HTTPS connections (the add-in's pages, Connect from them).
    tls: int = 0
    #: garbage, too_large (see `classify`), tls (a TLS hello, and no certificate to
    #: answer it with), incomplete (closed before its first
    #: request was whole), timeout (a request too slow to arrive), silent (not a byte
    #: in time), empty (closed without a byte: port probes), unreachable (the internal
    #: server did not answer), busy (too many connections, or TLS handshakes, at
    #: once), tls_handshake (a TLS handshake not finished in time; counted under `tls`
    #: too, as it reached the HTTPS server).
    rejected: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def listen_addresses(host: str) -> list[str]:
    """The loopback addresses to listen on for `host`; ValueError for any other host.

    "127.0.0.1" and "localhost" mean both 127.0.0.1 and ::1 (when this machine has
    IPv6), so `localhost` works whichever way a client resolves it. What counts as
    loopback is `aerogrid.net.is_loopback`.
    """
    bare = host.strip().removeprefix("[").removesuffix("]")
    if not is_loopback(bare):
        raise ValueError(
            f"the local endpoint listens on loopback only, and {host!r} is not a loopback "
            "address (use 127.0.0.1, ::1 or localhost)"
        )
    if bare.lower() == "localhost" or bare == LOOPBACK_HOST:
        return [LOOPBACK_HOST, "::1"]
    address = ipaddress.ip_address(bare)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return [str(address.ipv4_mapped)]  # ::ffff:127.x is the IPv4 socket's address
    return [str(address)]


def _bind_all(addresses: list[str], port: int) -> list[socket.socket]:
    """Listening sockets on one port for every address (a second one only if it exists)."""
    for _ in range(20 if port == 0 else 1):
        sockets: list[socket.socket] = []
        try:
            sockets.append(bind_socket(addresses[0], port))
            chosen = sockets[0].getsockname()[1]
            for extra in addresses[1:]:
                try:
                    sockets.append(bind_socket(extra, chosen))
                except OSError as exc:
                    if exc.errno not in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                        raise
                    log.debug("no %s on this machine: listening on %s only", extra, addresses[0])
            return sockets
        except OSError as exc:
            for sock in sockets:
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            if port == 0:
                continue  # the free port picked on 127.0.0.1 is taken on ::1: pick again
            taken = addresses[len(sockets)]
            raise PortInUseError(
                errno.EADDRINUSE,
                f"port {port} on {taken} is in use (another aerogrid dev?) — "
                "set [endpoint] port in aerogrid.toml",
            ) from None
    raise PortInUseError(errno.EADDRINUSE, "no port is free on every loopback address")


class Front:
    """Accepts on the public loopback port(s) and splices each connection to its server."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sniff_timeout: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
        max_handshakes: int = MAX_TLS_HANDSHAKES,
    ) -> None:
        self.addresses = listen_addresses(host)
        self.port = port
        #: How long a new connection may take to show what it is (TLS: to finish its handshake).
        self.sniff_timeout = sniff_timeout
        self.max_connections = max_connections
        self.max_handshakes = max_handshakes
        self.counts = ConnectionCounts()
        #: TLS handshakes in progress (each holds a `_Handshake` slot).
        self.handshakes_in_progress = 0
        self._release = FloodRelease(every=max_handshakes)
        self._sockets: list[socket.socket] = []
        self._servers: list[asyncio.Server] = []
        self._routes: dict[Route, int] = {}
        self._connections: set[asyncio.Task[None]] = set()

    def bind(self) -> None:
        """Take the port now (PortInUseError if taken), before anything else starts."""
        self._sockets = _bind_all(self.addresses, self.port)
        self.port = self._sockets[0].getsockname()[1]
        self.addresses = [sock.getsockname()[0] for sock in self._sockets]

    async def start(self, routes: Mapping[Route, int]) -> None:
        """Serve: `routes` gives each route's internal port on 127.0.0.1.

        A route left out is refused and counted under its name (e.g. "tls").
        """
        self._routes = dict(routes)
        for sock in self._sockets:
            self._servers.append(await asyncio.start_server(self._accept, sock=sock))

    async def close(self) -> None:
        """Stop accepting and close every connection still open."""
        for server in self._servers:
            server.close()
        for sock in self._sockets:
            sock.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_connections:
            self._reject("busy", writer)
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # `close()` ends it. Not re-raised: Python 3.11's streams would log a cancelled
            # connection task as an error ("Exception in callback").
            pass
        except Exception:
            log.exception("local endpoint: connection from %s failed", _peer(writer))
        finally:
            self._connections.discard(task)
            await _close(writer)
            self._release.closed(len(self._connections))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        started = asyncio.get_running_loop().time()
        try:
            route, head = await self._sniff(reader)
        except Rejected as exc:
            self._reject(exc.reason, writer)
            return
        if route not in self._routes:
            self._reject(route.value, writer)
            return
        if route is not Route.TLS:
            await self._forward(route, head, reader, writer)
            return
        if self.handshakes_in_progress >= self.max_handshakes:
            self._reject("busy", writer)
            return
        handshake = _Handshake(self)  # taken before any await: the check and the count agree
        try:
            await self._forward(route, head, reader, writer, handshake, started)
        finally:
            handshake.over()

    async def _forward(
        self,
        route: Route,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: _Handshake | None = None,
        started: float = 0.0,
    ) -> None:
        """Connect to the route's internal server and splice the connection to it."""
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK_HOST, self._routes[route])
        except OSError as exc:
            log.error("local endpoint: the internal %s server is unreachable: %s", route, exc)
            self._reject("unreachable", writer)
            return
        if route is Route.GRPC:
            self.counts.grpc += 1
        elif route is Route.TLS:
            self.counts.tls += 1
        else:
            self.counts.http += 1
        try:
            up_writer.write(head)
            if handshake is None:
                await _splice(reader, writer, up_reader, up_writer)
            else:
                await self._splice_tls(
                    reader, writer, up_reader, up_writer, head, handshake, started
                )
        finally:
            await _close(up_writer)

    async def _splice_tls(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        head: bytes,
        handshake: _Handshake,
        started: float,
    ) -> None:
        """Splice a TLS connection, cutting it if its handshake is not over in time."""
        records = _TlsRecords()
        records.feed(head)
        splice = asyncio.create_task(_splice(reader, writer, up_reader, up_writer, records.feed))
        finished = asyncio.create_task(records.done.wait())
        try:
            remaining = started + self.sniff_timeout - asyncio.get_running_loop().time()
            await asyncio.wait(
                (splice, finished), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            finished.cancel()
            handshake.over()
        if not records.done.is_set() and not splice.done():
            splice.cancel()
            self._reject("tls_handshake", writer)
        await asyncio.gather(splice, return_exceptions=True)

    async def _sniff(self, reader: asyncio.StreamReader) -> tuple[Route, bytes]:
        """The route and the bytes read to choose it (all of them go on to the server)."""
        head = b""
        try:
            async with asyncio.timeout(self.sniff_timeout):
                while True:
                    if head:
                        route = classify(head)
                        if route is not None:
                            return route, head
                    chunk = await reader.read(_CHUNK)
                    if not chunk:
                        raise Rejected("incomplete" if head else "empty")
                    head += chunk
        except TimeoutError:
            raise Rejected("timeout" if head else "silent") from None
        except ConnectionError:
            raise Rejected("incomplete") from None

    def _reject(self, reason: str, writer: asyncio.StreamWriter) -> None:
        self.counts.rejected[reason] += 1
        if reason in ("busy", "tls_handshake"):
            refused("local endpoint", reason, f"a connection from {_peer(writer)}")
        else:
            log.debug("local endpoint: refused a connection from %s (%s)", _peer(writer), reason)
        if reason in ("garbage", "too_large") and not writer.is_closing():
            body = b"not an AeroGrid request: speak gRPC, Connect or gRPC-Web here\n"
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n"
                b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )


class _Handshake:
    """One of the front's TLS handshake slots, taken at once, given back once."""

    def __init__(self, front: Front) -> None:
        self._front = front
        self._held = True
        front.handshakes_in_progress += 1

    def over(self) -> None:
        if self._held:
            self._held = False
            self._front.handshakes_in_progress -= 1


class _TlsRecords:
    """Follows the TLS records a client sends, until its first application data record.

    That record ends the handshake: TLS 1.3 sends the client's Finished in one, TLS 1.2
    its first request (after the Finished). Only record headers are read: nothing is
    decrypted.
    """

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self._header = b""
        self._skip = 0

    def feed(self, data: bytes) -> None:
        at = 0
        while at < len(data) and not self.done.is_set():
            if self._skip:
                step = min(self._skip, len(data) - at)
                self._skip -= step
                at += step
                continue
            take = _TLS_HEADER - len(self._header)
            self._header += data[at : at + take]
            at += take
            if len(self._header) == _TLS_HEADER:
                if self._header[0] == _TLS_APPLICATION_DATA:
                    self.done.set()
                    return
                self._skip = int.from_bytes(self._header[3:5], "big")
                self._header = b""


async def _pipe(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    seen: Callable[[bytes], None] | None = None,
) -> None:
    """Copy until EOF, waiting for `dst` to drain (backpressure); then pass the EOF on.

    A `dst` that takes none of the waiting bytes for SEND_TIMEOUT ends it (TimeoutError).
    """
    while chunk := await src.read(_CHUNK):
        if seen is not None:
            seen(chunk)
        dst.write(chunk)
        async with asyncio.timeout(SEND_TIMEOUT):
            await dst.drain()
    if dst.can_write_eof() and not dst.is_closing():
        dst.write_eof()


async def _splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    seen: Callable[[bytes], None] | None = None,
) -> None:
    """Both directions until the server is done (or either side breaks).

    `seen` is shown each chunk the client sends.
    """
    upward = asyncio.create_task(_pipe(client_reader, up_writer, seen))
    downward = asyncio.create_task(_pipe(up_reader, client_writer))
    try:
        done, _ = await asyncio.wait((upward, downward), return_when=asyncio.FIRST_COMPLETED)
        if upward in done and upward.exception() is None:
            # The client sent its EOF: the server answers what it has, then closes.
            await asyncio.wait((downward,))
    finally:
        for task in (upward, downward):
            task.cancel()
        await asyncio.gather(upward, downward, return_exceptions=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close a connection, flushing briefly; a peer that reads nothing is cut off."""
    writer.close()
    try:
        async with asyncio.timeout(1.0):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass


def _peer(writer: asyncio.StreamWriter) -> str:
    with contextlib.suppress(Exception):
        return str(writer.get_extra_info("peername"))
    return "?"
