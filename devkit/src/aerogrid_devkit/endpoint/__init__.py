"""The devkit's one local endpoint: the catalog and every running app's grids on one address.

    async with LocalEndpoint(supervisor) as endpoint:   # 127.0.0.1:50051 (and [::1])
        print(endpoint.url)                               # http://localhost:50051

Native gRPC (GridClient, `aerogrid watch`), Connect and gRPC-Web (the Excel add-in,
any connect-es client) all use that one port, so Excel is configured with one
address however many apps the workspace runs. Inside:

* `gateway.LocalGateway` serves the `GridEndpoint` API for the whole workspace,
  routing each grid call to its app's process;
* the runtime's own transports serve it: a grpc.aio server (`add_services`) and the
  Connect/gRPC-Web ASGI app (`create_http_app`) under uvicorn, each on an internal
  ephemeral 127.0.0.1 port;
* `front.Front` owns the public port and hands each connection to one of them by its
  first bytes.

Who may call: the runtime's rules (`AuthSettings`, from AEROGRID_* by default):
callers on loopback need no token unless AEROGRID_REQUIRE_AUTH=1. The endpoint binds
loopback only, so every caller is on this machine (and the internal servers see
every peer as 127.0.0.1, which is then the truth). What the rules still guard
against is a web page in the user's browser calling localhost: the HTTP transport
treats a request whose `Origin` is neither local (localhost, 127.0.0.1, [::1], any
port) nor listed in `allowed_origins` as not loopback, so it needs a token. The
Excel add-in's pages come from its own source location, local in development
(https://localhost:3000, or this endpoint once it serves the bundle), so it needs no
token; a bundle hosted elsewhere is either listed or sends a token. By default any
origin may *ask* (CORS is open): an unlisted one just gets no anonymous access.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Collection, Iterator
from types import TracebackType
from typing import Self

import uvicorn
from grpc import aio

from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.grpc_server import add_services
from aerogrid.server.http import create_http_app
from aerogrid_devkit.endpoint.front import (
    ConnectionCounts,
    Front,
    PortInUseError,
    Route,
    listen_addresses,
)
from aerogrid_devkit.endpoint.gateway import LocalGateway
from aerogrid_devkit.supervisor import Supervisor

__all__ = ["ConnectionCounts", "LocalEndpoint", "LocalGateway", "PortInUseError"]


def _internal_socket() -> socket.socket:
    """A listening socket on an ephemeral 127.0.0.1 port for the internal HTTP server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(512)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the devkit (its TUI, `aerogrid dev`) owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalEndpoint:
    """The workspace's apps on one loopback port, over native gRPC, Connect and gRPC-Web.

    `port=0` picks a free port (see `.port` after `start()`). A host that is not a
    loopback address is refused (ValueError); a port already taken raises
    `PortInUseError` from `start()`. `auth` defaults to `AuthSettings.from_env()`.
    `allowed_origins` is passed to `create_http_app`: None lets any browser origin
    call (only local ones without a token); a list lets only those call, and trusts
    them (list the local origins in use too). `sniff_timeout` is how long a new
    connection may take to send its first request.
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
    ) -> None:
        listen_addresses(host)  # refuse a non-loopback host now, not at start()
        self.supervisor = supervisor
        self.host = host
        self.port = port
        self._auth = auth
        self._allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self._sniff_timeout = sniff_timeout
        self._front: Front | None = None
        self._gateway: LocalGateway | None = None
        self._grpc: aio.Server | None = None
        self._http: _Uvicorn | None = None
        self._http_task: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """host:port for gRPC clients (GridClient, `aerogrid watch --target`)."""
        host = self.host.strip("[]")
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The base URL for browser clients (Connect, gRPC-Web): what Excel is given."""
        if "127.0.0.1" in listen_addresses(self.host):
            return f"http://localhost:{self.port}"
        return f"http://{self.address}"

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
        front = Front(self.host, self.port, sniff_timeout=self._sniff_timeout)
        front.bind()
        self._front = front
        self.port = front.port
        try:
            gateway = LocalGateway(self.supervisor, self.address)
            self._gateway = gateway
            authenticator = Authenticator(self._auth or AuthSettings.from_env())

            self._grpc = aio.server(options=[("grpc.so_reuseport", 0)])
            add_services(self._grpc, gateway, authenticator, is_loopback)
            grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
            await self._grpc.start()

            http_app = create_http_app(
                gateway,
                authenticator,
                is_ready=lambda: True,
                allowed_origins=self._allowed_origins,
                is_loopback=is_loopback,
            )
            http_socket = _internal_socket()
            http_port: int = http_socket.getsockname()[1]
            self._http = _Uvicorn(
                uvicorn.Config(
                    http_app,
                    log_config=None,  # leave the devkit's logging (and the TUI's screen) alone
                    log_level="warning",
                    lifespan="off",
                    access_log=False,
                    proxy_headers=False,  # the peer is the front; no header may claim otherwise
                    http="h11",
                    ws="none",
                    timeout_graceful_shutdown=1,
                )
            )
            self._http_task = asyncio.create_task(
                self._http.serve(sockets=[http_socket]), name="local-endpoint-http"
            )
            while not self._http.started:
                if self._http_task.done():
                    self._http_task.result()
                    raise RuntimeError("the local endpoint's HTTP server did not start")
                await asyncio.sleep(0.01)

            gateway.start()
            await front.start({Route.GRPC: grpc_port, Route.HTTP: http_port})
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """End every stream (UNAVAILABLE: clients resume elsewhere or later), then close."""
        if self._gateway is not None:
            await self._gateway.close()
        if self._grpc is not None:
            await self._grpc.stop(grace=0.5)
            self._grpc = None
        if self._http is not None and self._http_task is not None:
            self._http.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http_task, 3)
            self._http = self._http_task = None
        if self._front is not None:
            await self._front.close()
        self._gateway = None

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
