"""The ASGI app of the web transport: routing a request to CORS, a probe or an RPC."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from aerogrid import net
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.service import ServiceAPI
from aerogrid.server.web import probes
from aerogrid.server.web.asgi import (
    TEXT_PLAIN,
    ASGIApp,
    ASGIReceive,
    ASGIScope,
    ASGISend,
    Response,
    request_headers,
    serve_lifespan,
)
from aerogrid.server.web.authentication import CallerAuthenticator, PeerAuthentication
from aerogrid.server.web.calls import CallRunner, stream_error
from aerogrid.server.web.connect import unary_error_response
from aerogrid.server.web.context import RequestContext
from aerogrid.server.web.cors import CorsPolicy
from aerogrid.server.web.methods import Method, method_table
from aerogrid.server.web.negotiation import ACCEPTED_TYPES, negotiate
from aerogrid.server.web.probes import Probes, Readiness
from aerogrid.server.web.protocol import Headers, UnaryProtocol

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "create_http_app", "create_rpc_app"]

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
"""Requests are small (a subscription, a filter); anything bigger is refused."""


def create_http_app(
    service: ServiceAPI,
    authenticator: CallerAuthenticator,
    *,
    is_ready: Callable[[], Readiness],
    allowed_origins: Collection[str] | None = None,
    is_loopback: Callable[[str], bool] | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    describe: Callable[[], dict[str, Any]] | None = None,
) -> ASGIApp:
    """The ASGI app serving `service` over Connect and gRPC-Web, plus health and metrics.

    `authenticator` sees each call's `authorization` header and whether the peer is on
    loopback, before the service is called. `is_ready` drives `/readyz`: a bool, or
    (ready, detail) where the detail line says what a ready app lacks (degraded, a weaker
    guarantee) or why it is not ready.
    `allowed_origins` lists the browser origins that CORS lets call us (None: any
    origin; every call is still authenticated). A loopback call from a browser page
    whose origin is neither listed nor local (localhost, 127.0.0.1, [::1]) is not
    reported as loopback, so a web site cannot borrow the local user's privileges.
    `is_loopback` tells whether a peer host (`scope["client"][0]`, an IP address as
    text) is local; by default `aerogrid.net.is_loopback`. A peer without an address
    (a Unix socket) is not loopback.
    """
    return create_rpc_app(
        method_table(service),
        authenticator,
        is_ready=is_ready,
        allowed_origins=allowed_origins,
        is_loopback=is_loopback,
        max_request_bytes=max_request_bytes,
        describe=describe,
    )


def create_rpc_app(
    methods: Mapping[str, Method[Any]],
    authenticator: CallerAuthenticator,
    *,
    is_ready: Callable[[], Readiness],
    allowed_origins: Collection[str] | None = None,
    is_loopback: Callable[[str], bool] | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    describe: Callable[[], dict[str, Any]] | None = None,
) -> ASGIApp:
    """The same app for any procedures (by URL path), e.g. the Connect conformance service.

    A call reaches its request's headers, timeout, and response headers and trailers
    through `context.current_request()`.
    """
    cors = CorsPolicy(allowed_origins)
    authentication = PeerAuthentication(authenticator, is_loopback or net.is_loopback, cors)
    return _WebApp(
        methods,
        cors,
        Probes(is_ready, authentication, describe),
        CallRunner(authentication, max_request_bytes),
    )


class _WebApp:
    """The ASGI app; see the package docstring."""

    def __init__(
        self,
        methods: Mapping[str, Method[Any]],
        cors: CorsPolicy,
        probes: Probes,
        calls: CallRunner,
    ) -> None:
        self._methods = methods
        self._cors = cors
        self._probes = probes
        self._calls = calls

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            # A WebSocket: we serve none; refuse it rather than leave it hanging.
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = request_headers(scope)
        response = Response(send, self._cors.response_headers(headers.get("origin")))
        try:
            await self._route(scope, receive, headers, response)
        except Exception:
            log.exception("HTTP request %s %s failed", scope.get("method"), scope.get("path"))
            if not response.started:
                await response.whole(500, TEXT_PLAIN, b"internal server error\n")

    async def _route(
        self, scope: ASGIScope, receive: ASGIReceive, headers: Headers, response: Response
    ) -> None:
        http_method: str = scope["method"]
        path: str = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root) and path not in self._methods:
            path = path[len(root) :]
        if http_method == "OPTIONS":
            await self._cors.preflight(headers, response)
        elif path in self._methods:
            await self._rpc(path, scope, receive, headers, response)
        elif http_method in ("GET", "HEAD") and path in probes.PATHS:
            await self._probes.serve(path, scope, headers, response)
        elif (protocol := negotiate(http_method, headers)) is not None:
            # Looks like an RPC to a procedure we don't have: answer in its protocol.
            await self._calls.discard_body(receive)
            error = ServiceError(Code.UNIMPLEMENTED, f"unknown procedure {path}")
            if isinstance(protocol, UnaryProtocol):
                await response.whole(*unary_error_response(error, status=404))
            else:
                await stream_error(response, protocol, error)
        else:
            await self._calls.discard_body(receive)
            await response.whole(404, TEXT_PLAIN, b"not found\n")

    async def _rpc(
        self,
        path: str,
        scope: ASGIScope,
        receive: ASGIReceive,
        headers: Headers,
        response: Response,
    ) -> None:
        method = self._methods[path]
        if scope["method"] != "POST":
            await self._calls.discard_body(receive)
            await response.whole(405, TEXT_PLAIN, b"RPCs take POST\n", [("allow", "POST, OPTIONS")])
            return
        protocol = negotiate("POST", headers)
        if protocol is None or not protocol.serves(method):
            shown = headers.get("content-type", "") or "none"
            use = (
                "use application/proto or application/json"
                if method.unary is not None
                else "use application/connect+proto or application/connect+json"
            )
            await self._calls.discard_body(receive)
            # HTTP 415 and no Connect error body: a client reports it as UNKNOWN whatever
            # its protocol (it cannot know which we would have spoken), as connect-go does.
            text = (
                f"unsupported content-type {shown!r} for {path}; {use} (Connect), "
                "or application/grpc-web+proto (gRPC-Web)\n"
            )
            await response.whole(415, TEXT_PLAIN, text.encode(), [("accept-post", ACCEPTED_TYPES)])
        elif isinstance(protocol, UnaryProtocol):
            await self._calls.unary(
                RequestContext(path, method, protocol, headers, scope), receive, response
            )
        else:
            await self._calls.streamed(
                RequestContext(path, method, protocol, headers, scope), receive, response
            )
