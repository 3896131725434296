"""`LocalServer`: what listens on the devkit's one local endpoint (the address Excel uses).

The catalog and every running app's grids on one address:

    async with LocalServer(supervisor) as server:   # 127.0.0.1:50051 (and [::1])
        print(server.url)                            # http://localhost:50051
        print(server.addin_url)                      # https://localhost:50051/addin/

Native gRPC (GridClient, `aerogrid watch`), Connect and gRPC-Web (the Excel add-in,
any connect-es client), over plain HTTP or HTTPS, and the add-in's own files
(`/addin/…`, HTTPS for Office) all use that one port, so Excel is configured with one
address however many apps the workspace runs. Inside:

* `gateway.LocalGateway` serves the `ServiceAPI` API for the whole workspace,
  routing each grid call to its app's process;
* the runtime's own transports serve it: a grpc.aio server (`add_services`, with
  reflection, and gRPC health: SERVING for the endpoint itself, and for a service name
  equal to an app's name whether that app's process is running; `health_statuses`) and the
  Connect/gRPC-Web ASGI app (`create_http_app`) under the runtime's HTTP server
  (`http_server.serve_http`: HTTP/1.1 and h2c), each on an internal ephemeral
  127.0.0.1 port; that app is wrapped by `addin.AddinFiles` (the add-in's bundle at
  /addin/);
* `metrics.WorkspaceMetrics` adds every running app's samples to `/metrics`;
* `front.Front` owns the public port and hands each connection to one of them by its
  first request (HTTP/2: by its content type), terminating TLS itself with the
  development certificate of `aerogrid_devkit.devcert` (trusted once by the user),
  ALPN `h2` and `http/1.1`: HTTPS for the add-in, Connect over h2 and gRPC in TLS.

Who may call: the runtime's rules (`AuthSettings`, from AEROGRID_* by default):
callers on loopback need no token unless AEROGRID_REQUIRE_AUTH=1. The endpoint binds
loopback only, so every caller is on this machine (and the internal servers see
every peer as 127.0.0.1, which is then the truth). What the rules still guard
against is a web page in the user's browser calling localhost: the HTTP transport
treats a request whose `Origin` is neither local (localhost, 127.0.0.1, [::1], any
port) nor listed in `allowed_origins` as not loopback, so it needs a token. The
Excel add-in's pages come from its own source location, local in development
(this endpoint's https://localhost:PORT/addin/, or a dev server on localhost), so it
needs no token; a bundle hosted elsewhere is either listed or sends a token. By default any
origin may *ask* (CORS is open): an unlisted one just gets no anonymous access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Self

from grpc import aio

from aerogrid.net import LOOPBACK_HOST, bind_socket
from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.connections import GRPC_SERVER_OPTIONS
from aerogrid.server.grpc_server import SERVICES, add_services
from aerogrid.server.grpc_standard import GrpcHealth
from aerogrid.server.http_server import ALPN_PROTOCOLS, HttpServer, serve_http
from aerogrid.server.web import create_http_app
from aerogrid_devkit.devcert import DevCert, DevCertError, ensure_devcert
from aerogrid_devkit.local_server.addin import AddinCounts, AddinFiles, addin_bundle_dir
from aerogrid_devkit.local_server.front import (
    MAX_CONNECTIONS,
    ConnectionCounts,
    Front,
    PortInUseError,
    Route,
    listen_addresses,
)
from aerogrid_devkit.local_server.gateway import LocalGateway
from aerogrid_devkit.local_server.metrics import WorkspaceMetrics
from aerogrid_devkit.supervisor import Supervisor

__all__ = [
    "AddinCounts",
    "ConnectionCounts",
    "LocalGateway",
    "LocalServer",
    "PortInUseError",
    "addin_bundle_dir",
]

log = logging.getLogger(__name__)


def _server_tls(cert: DevCert) -> ssl.SSLContext:
    """TLS 1.2+ with the development certificate, offering HTTP/2 and HTTP/1.1 (ALPN).

    h2 (gRPC in TLS, Connect from Go, .NET or a browser) and http/1.1 (the add-in's
    fetches in Office's webviews that do not ask for h2), as the runtime's HTTP port.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert.cert, cert.key)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return context


def health_statuses(gateway: LocalGateway) -> dict[str, bool]:
    """The endpoint's gRPC health: itself and its services serve; each app by its name."""
    return {"": True, **dict.fromkeys(SERVICES, True), **gateway.app_readiness()}


class LocalServer:
    """The workspace's apps on one loopback port, over native gRPC, Connect and gRPC-Web.

    `port=0` picks a free port (see `.port` after `start()`). A host that is not a
    loopback address is refused (ValueError); a port already taken raises
    `PortInUseError` from `start()`. `auth` defaults to `AuthSettings.from_env()`.
    `allowed_origins` is passed to `create_http_app`: None lets any browser origin
    call (only local ones without a token); a list lets only those call, and trusts
    them (list the local origins in use too). `sniff_timeout` is how long a new
    connection may take to send its first request (or finish its TLS handshake);
    `max_connections` how many may be open at once.

    `tls` (default on) serves HTTPS on the same port with the development certificate
    from `devcert_dir` (default: `devcert.devcert_dir()`, made there if missing). When
    it cannot be made, the endpoint still starts: TLS hellos are refused (counted as
    rejected "tls"), `tls_problem` says why and a warning is logged. `addin_dir`
    chooses the add-in's bundle folder (default: `addin_bundle_dir()`, looked up per
    request).
    """

    def __init__(
        self,
        supervisor: Supervisor,
        host: str = "127.0.0.1",
        port: int = 50051,
        *,
        auth: AuthSettings | None = None,
        allowed_origins: Collection[str] | None = None,
        sniff_timeout: float = 10.0,
        max_connections: int = MAX_CONNECTIONS,
        tls: bool = True,
        devcert_dir: Path | None = None,
        addin_dir: Path | None = None,
    ) -> None:
        listen_addresses(host)  # refuse a non-loopback host now, not at start()
        self.supervisor = supervisor
        self.host = host
        self.port = port
        self._auth = auth
        self._allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self._sniff_timeout = sniff_timeout
        self._max_connections = max_connections
        self._front: Front | None = None
        self._gateway: LocalGateway | None = None
        self._grpc: aio.Server | None = None
        self._health: GrpcHealth | None = None
        self._http: HttpServer | None = None
        self._tls = tls
        self._devcert_dir = devcert_dir
        self._addin_dir = addin_dir
        self._addin: AddinFiles | None = None
        #: The development certificate served, once started with TLS.
        self.devcert: DevCert | None = None
        #: Why HTTPS is not served (None: it is, or was not asked for).
        self.tls_problem: str | None = None

    @property
    def address(self) -> str:
        """host:port for gRPC clients (GridClient, `aerogrid watch --target`)."""
        host = self.host.strip("[]")
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL for browser clients (Connect, gRPC-Web): what Excel is given."""
        if LOOPBACK_HOST in listen_addresses(self.host):
            return f"http://localhost:{self.port}"
        return f"http://{self.address}"

    @property
    def https_url(self) -> str | None:
        """The HTTPS base URL (same port), or None when TLS is not served."""
        if self.devcert is None:
            return None
        return "https://" + self.url.split("://", 1)[1]

    @property
    def addin_url(self) -> str | None:
        """Where Excel loads the add-in from (the manifest's default bundle URL), or None."""
        https = self.https_url
        return None if https is None else f"{https}/addin/"

    def addin_status(self) -> str:
        """One line for `aerogrid dev`/`demo`: where Excel loads the add-in, or why it cannot."""
        if self.addin_url is None:
            return self.tls_problem or "the Excel add-in is not served (no HTTPS)"
        line = f"Excel add-in on {self.addin_url}"
        folder = self.addin_dir()
        if folder is None or not folder.is_dir():
            line += ' (not built yet: run "make excel")'
        if self.devcert is not None and self.devcert.ca_created:
            line += "; new development CA: trust it once with aerogrid excel certificate --install"
        return line

    def addin_dir(self) -> Path | None:
        """The add-in bundle folder served now (it may not exist yet: not built)."""
        return self._addin_dir if self._addin_dir is not None else addin_bundle_dir()

    @property
    def addin_requests(self) -> AddinCounts:
        """Requests for the add-in's files: served, and refused by reason."""
        return self._addin.counts if self._addin is not None else AddinCounts()

    @property
    def listening(self) -> list[str]:
        """The loopback addresses listened on: 127.0.0.1 and ::1 (where the machine has it)."""
        return list(self._front.addresses) if self._front is not None else []

    @property
    def connections(self) -> ConnectionCounts:
        """Connections taken by protocol, and refused by reason (garbage, timeouts...)."""
        return self._front.counts if self._front is not None else ConnectionCounts()

    @property
    def gateway(self) -> LocalGateway:
        if self._gateway is None:
            raise RuntimeError("the local endpoint is not started")
        return self._gateway

    async def start(self) -> None:
        # The public port first: a taken port is the likely failure, and the clearest.
        front = Front(
            self.host,
            self.port,
            sniff_timeout=self._sniff_timeout,
            max_connections=self._max_connections,
        )
        front.bind()
        self._front = front
        self.port = front.port
        try:
            gateway = LocalGateway(self.supervisor, self.address)
            self._gateway = gateway
            authenticator = Authenticator(self._auth or AuthSettings.from_env())

            self._grpc = aio.server(options=GRPC_SERVER_OPTIONS)
            add_services(self._grpc, gateway, authenticator, is_loopback)
            self._health = GrpcHealth(lambda: health_statuses(gateway))
            self._health.add_to(self._grpc)
            gateway.on_change = self._health.notify
            grpc_port = self._grpc.add_insecure_port(f"{LOOPBACK_HOST}:0")
            await self._health.start()
            await self._grpc.start()

            http_app = create_http_app(
                gateway,
                authenticator,
                is_ready=lambda: True,
                allowed_origins=self._allowed_origins,
                is_loopback=is_loopback,
            )
            self._addin = app = AddinFiles(
                WorkspaceMetrics(http_app, self.supervisor), self.addin_dir
            )
            sock = bind_socket(LOOPBACK_HOST, 0)
            http_port: int = sock.getsockname()[1]
            self._http = await serve_http(app, sock)  # HTTP/1.1 and h2c
            routes = {Route.GRPC: grpc_port, Route.HTTP: http_port, Route.HTTP2: http_port}
            tls = self._tls_context() if self._tls else None

            gateway.start()
            await front.start(routes, tls)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """End every stream (UNAVAILABLE: clients resume elsewhere or later), then close."""
        if self._health is not None:
            await self._health.stop()
            self._health = None
        if self._gateway is not None:
            await self._gateway.close()
        if self._grpc is not None:
            await self._grpc.stop(grace=0.5)
            self._grpc = None
        if self._http is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.stop(), 5)
            self._http = None
        if self._front is not None:
            await self._front.close()
        self._gateway = None

    def _tls_context(self) -> ssl.SSLContext | None:
        """The development certificate's TLS context; None (and why) when there is none."""
        try:
            cert = ensure_devcert(self._devcert_dir)
            context = _server_tls(cert)
        except (DevCertError, ssl.SSLError, OSError) as exc:
            self.tls_problem = f"no HTTPS on the local endpoint: {exc}"
            log.warning("%s", self.tls_problem)
            return None
        self.devcert = cert
        self.tls_problem = None
        return context

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
