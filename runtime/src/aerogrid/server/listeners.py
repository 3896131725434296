"""A grid service's two listeners: native gRPC, and Connect / gRPC-Web / probes over HTTP.

`aerogrid run` and the cluster's catalog serve the same way (one `ServiceAPI`, one
authenticator, gRPC on one port, the browser protocols and `/healthz`, `/readyz`,
`/metrics` on another (HTTP/1.1 and HTTP/2, `http_server`), both within the limits of
`connections`); this is that way, once. The gRPC port also serves the standard health
service (`grpc_standard.GrpcHealth`), following the same readiness as `/readyz`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grpc import aio

from aerogrid.net import bind_socket
from aerogrid.server import auth
from aerogrid.server.connections import GRPC_SERVER_OPTIONS
from aerogrid.server.grpc_server import SERVICES, add_services
from aerogrid.server.grpc_standard import LIVENESS, GrpcHealth
from aerogrid.server.http_server import HttpServer, serve_http
from aerogrid.server.service import ServiceAPI
from aerogrid.server.web import Readiness, create_http_app

__all__ = ["Listeners", "start_listeners"]


@dataclass
class Listeners:
    """Both servers, running, and the ports they got."""

    grpc_server: aio.Server
    http_server: HttpServer
    grpc_port: int
    http_port: int
    #: gRPC health: "" and both services follow `is_ready`; `LIVENESS` serves throughout.
    health: GrpcHealth

    async def stop(self) -> None:
        await self.health.stop()
        await asyncio.gather(self.grpc_server.stop(grace=0.5), self.http_server.stop())


async def start_listeners(
    service: ServiceAPI,
    authenticator: auth.Authenticator,
    *,
    host: str,
    port: int,
    http_port: int,
    is_ready: Callable[[], Readiness],
    is_loopback: Callable[[str], bool] | None = None,
    describe: Callable[[], dict[str, Any]] | None = None,
) -> Listeners:
    """Serve `service` over gRPC on `port` and HTTP on `http_port`; OSError if either is taken.

    `is_loopback` decides which peers count as this machine (default: `auth.is_loopback`
    for gRPC peers, the HTTP app's own check for HTTP ones).
    """
    grpc_server = aio.server(options=GRPC_SERVER_OPTIONS)
    add_services(grpc_server, service, authenticator, is_loopback or auth.is_loopback)
    health = GrpcHealth(lambda: _health_statuses(is_ready()))
    health.add_to(grpc_server)
    grpc_port = grpc_server.add_insecure_port(f"{host}:{port}")
    if grpc_port == 0:
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    http_socket = bind_socket(host, http_port)
    http_app = create_http_app(
        service, authenticator, is_ready=is_ready, is_loopback=is_loopback, describe=describe
    )
    await health.start()
    await grpc_server.start()
    http_server = await serve_http(http_app, http_socket)
    return Listeners(grpc_server, http_server, grpc_port, http_socket.getsockname()[1], health)


def _health_statuses(readiness: Readiness) -> dict[str, bool]:
    ready = readiness[0] if isinstance(readiness, tuple) else bool(readiness)
    return {LIVENESS: True, "": ready, **dict.fromkeys(SERVICES, ready)}
