"""One loopback port for every protocol: a front that routes each connection by its first request.

Native gRPC is HTTP/2 (grpc.aio serves it); Connect and gRPC-Web are HTTP/1.1 or HTTP/2
(an ASGI server serves them); the Excel add-in's pages must come over HTTPS; and no
server speaks the others' protocols or can share a listening socket. So the local
endpoint runs each on an internal ephemeral 127.0.0.1 port, and this front accepts on
the one public port, reads the first bytes of each connection, picks a server with
`classify` (an HTTP/2 connection by its first request's content type, see `http2`),
and splices the connection to it byte for byte, each direction flow controlled (a slow
reader slows its writer, never the others).

TLS (HTTPS, and gRPC in TLS) is terminated by the front itself, with the development
certificate, offering ALPN `h2` and `http/1.1`: what a TLS connection carries is then
routed like a plaintext one (gRPC, or Connect over h2 or HTTP/1.1), since only the
decrypted request says which server it is for. The TLS bytes are spliced to an internal
TLS listener of the front's own (asyncio's TLS, as any asyncio server's), whose
connections are sniffed and spliced again; the splice in front of it keeps the
handshake's deadline and cap below.

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
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from aerogrid.net import LOOPBACK_HOST, bind_socket, is_loopback
from aerogrid.server.connections import SEND_TIMEOUT, FloodRelease, refused
from aerogrid_devkit.local_server.http2 import (
    HTTP2_PREFACE,
    SERVER_PREFACE,
    DropFirstSettingsAck,
    first_request_is_grpc,
)

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

#: An HTTP/1.x request head (request line and headers), or what an HTTP/2 client sends up
#: to its first request's headers, must fit in this.
MAX_HEAD_BYTES: Final = 64 * 1024
_CHUNK: Final = 64 * 1024
_TLS_HANDSHAKE: Final = 0x16
_TLS_APPLICATION_DATA: Final = 0x17
_TLS_MAJOR: Final = 0x03
_TLS_HEADER: Final = 5
#: Connections open at once on the public port; more are closed at once ("busy").
MAX_CONNECTIONS: Final = 512
#: Seconds the internal TLS listener waits for a handshake beyond the sniff timeout: the
#: front's own deadline (see `_splice_tls`) is the one that acts, and counts.
_INNER_HANDSHAKE_GRACE: Final = 5.0
#: TLS connections in their handshake at once; more are closed at once ("busy").
MAX_TLS_HANDSHAKES: Final = 64

_REQUEST_LINE = re.compile(rb"[A-Z]{1,16} [\x21-\x7e]{1,8192} HTTP/1\.[01]\r\n")
# A request line still arriving: a method, maybe a target, maybe the start of a version.
_REQUEST_LINE_SO_FAR = re.compile(rb"[A-Z]{1,16}(?: [\x21-\x7e]{0,8192}(?: [HTP/1.0-9]{0,8}\r?)?)?")


class Route(StrEnum):
    """The internal servers a connection can go to."""

    #: Native gRPC: HTTP/2 whose first request is application/grpc[+codec].
    GRPC = "grpc"
    #: HTTP/1.1: Connect, gRPC-Web, the add-in's pages, CORS preflights, probes.
    HTTP = "http"
    #: Connect and gRPC-Web over HTTP/2 (any other first request on HTTP/2).
    HTTP2 = "http2"
    #: TLS: terminated by the front, then routed as one of the above.
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

    * the HTTP/2 connection preface (clients with prior knowledge, native gRPC's
      among them) → `Route.GRPC` when the connection's first request is native gRPC
      by its content type, else `Route.HTTP2` (see `http2.first_request_is_grpc`);
    * a complete HTTP/1.x request head → `Route.HTTP` (Connect, gRPC-Web, CORS
      preflights, /healthz). Waiting for the whole head keeps half requests away
      from the server, and lets them be counted here;
    * a TLS record (a handshake, 0x16, then version major 3: a ClientHello) →
      `Route.TLS`: HTTPS for the add-in's pages (Office loads them over HTTPS only)
      and Connect from them, and gRPC in TLS; what it carries is classified again;
    * anything else is refused (reason "garbage", or "too_large" for an endless head).
    """
    if len(head) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(head):
        return None
    if head.startswith(HTTP2_PREFACE):
        try:
            grpc = first_request_is_grpc(head)
        except ValueError:
            raise Rejected("garbage") from None
        if grpc is None:
            if len(head) > MAX_HEAD_BYTES:
                raise Rejected("too_large")
            return None
        return Route.GRPC if grpc else Route.HTTP2
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
    """Connections the front took, by route (a field named like each `Route`), and refused,
    by reason.

    A TLS connection counts under `tls` and, once decrypted, under what it carried.
    """

    grpc: int = 0
    http: int = 0
    http2: int = 0
    #: TLS connections (the add-in's pages, Connect from them, gRPC in TLS).
    tls: int = 0
    #: garbage, too_large (see `classify`), tls (a TLS hello, and no certificate to
    #: answer it with), incomplete (closed before its first
    #: request was whole), timeout (a request too slow to arrive), silent (not a byte
    #: in time), empty (closed without a byte: port probes), unreachable (the internal
    #: server did not answer), busy (too many connections, or TLS handshakes, at
    #: once), tls_handshake (a TLS handshake not finished in time; counted under `tls`
    #: too, as it reached the TLS listener). An HTTP/2 connection that sent no request
    #: in time is not refused: it goes to native gRPC (see `Front`).
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
    """Accepts on the public loopback port(s) and splices each connection to its server.

    An HTTP/2 connection that sends no request within the sniff timeout (a gRPC channel
    connected ahead of its calls) goes to native gRPC, whose server bounds idle
    connections itself.
    """

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

    async def start(self, routes: Mapping[Route, int], tls: ssl.SSLContext | None = None) -> None:
        """Serve: `routes` gives each route's internal port on 127.0.0.1.

        `tls` (its certificate, and ALPN h2 and http/1.1) serves TLS; without it TLS
        hellos are refused ("tls"), as is any other route left out, under its name.
        """
        self._routes = {route: port for route, port in routes.items() if route is not Route.TLS}
        for sock in self._sockets:
            self._servers.append(await asyncio.start_server(self._accept, sock=sock))
        if tls is not None:
            inner = bind_socket(LOOPBACK_HOST, 0)
            self._routes[Route.TLS] = inner.getsockname()[1]
            self._servers.append(
                await asyncio.start_server(
                    self._accept_decrypted,
                    sock=inner,
                    ssl=tls,
                    # A backstop: the splice in front cuts (and counts) a handshake at
                    # its deadline, which must come first, also on a loop running late.
                    ssl_handshake_timeout=self.sniff_timeout + _INNER_HANDSHAKE_GRACE,
                )
            )

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
        await self._handle(reader, writer, decrypted=False)

    async def _accept_decrypted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A TLS connection, handshake done (its raw bytes came through `_accept`)."""
        await self._handle(reader, writer, decrypted=True)

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, decrypted: bool
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve(reader, writer, decrypted)
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

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decrypted: bool
    ) -> None:
        started = asyncio.get_running_loop().time()
        try:
            route, head, through = await self._sniff(reader, writer)
            if decrypted and route is Route.TLS:
                raise Rejected("garbage")  # TLS in TLS
        except Rejected as exc:
            self._reject(exc.reason, writer)
            return
        if route not in self._routes:
            self._reject(route.value, writer)
            return
        if route is not Route.TLS:
            await self._forward(route, head, reader, writer, through)
            return
        if self.handshakes_in_progress >= self.max_handshakes:
            self._reject("busy", writer)
            return
        handshake = _Handshake(self)  # taken before any await: the check and the count agree
        try:
            await self._forward(route, head, reader, writer, None, handshake, started)
        finally:
            handshake.over()

    async def _forward(
        self,
        route: Route,
        head: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        through: Callable[[bytes], bytes] | None,
        handshake: _Handshake | None = None,
        started: float = 0.0,
    ) -> None:
        """Connect to the route's internal server and splice the connection to it.

        `through` sees (and may change) each chunk the client sends, `head` included.
        """
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK_HOST, self._routes[route])
        except OSError as exc:
            log.error("local endpoint: the internal %s server is unreachable: %s", route, exc)
            self._reject("unreachable", writer)
            return
        setattr(self.counts, route.value, getattr(self.counts, route.value) + 1)
        try:
            up_writer.write(head if through is None else through(head))
            if handshake is None:
                await _splice(reader, writer, up_reader, up_writer, through)
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

    async def _sniff(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Route, bytes, Callable[[bytes], bytes] | None]:
        """The route, the bytes read to choose it (all go on to the server), and what the
        client's bytes pass through on their way (None: nothing).

        An HTTP/2 client is sent the front's SETTINGS (see `http2`) once its preface is in.
        """
        head = b""
        through: DropFirstSettingsAck | None = None
        try:
            async with asyncio.timeout(self.sniff_timeout):
                while True:
                    if head:
                        route = classify(head)
                        if route is not None:
                            return route, head, through
                        if through is None and head.startswith(HTTP2_PREFACE):
                            through = DropFirstSettingsAck()
                            writer.write(SERVER_PREFACE)
                    chunk = await reader.read(_CHUNK)
                    if not chunk:
                        raise Rejected("incomplete" if head else "empty")
                    head += chunk
        except TimeoutError:
            if through is not None:
                return Route.GRPC, head, through  # HTTP/2, no request yet: see `Front`
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

    def feed(self, data: bytes) -> bytes:
        """Read `data`'s record headers; returns `data` as it is (a `_pipe` pass-through)."""
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
                    break
                self._skip = int.from_bytes(self._header[3:5], "big")
                self._header = b""
        return data


async def _pipe(
    src: asyncio.StreamReader,
    dst: asyncio.StreamWriter,
    through: Callable[[bytes], bytes] | None = None,
) -> None:
    """Copy until EOF (each chunk passed `through`, if given), waiting for `dst` to drain
    (backpressure); then pass the EOF on.

    A `dst` that takes none of the waiting bytes for SEND_TIMEOUT ends it (TimeoutError).
    """
    while chunk := await src.read(_CHUNK):
        dst.write(chunk if through is None else through(chunk))
        async with asyncio.timeout(SEND_TIMEOUT):
            await dst.drain()
    if dst.can_write_eof() and not dst.is_closing():
        dst.write_eof()


async def _splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    through: Callable[[bytes], bytes] | None = None,
) -> None:
    """Both directions until the server is done (or either side breaks).

    Each chunk the client sends goes `through` (if given) on its way.
    """
    upward = asyncio.create_task(_pipe(client_reader, up_writer, through))
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
