"""The browser-facing transport: Connect and gRPC-Web, health and metrics, on one HTTP port.

Excel's add-in runs in a browser runtime, which cannot speak native gRPC (no HTTP/2
trailers from `fetch`), so the grid and catalog services are also served here over
the Connect protocol (https://connectrpc.com/docs/protocol: unary `application/proto`
and `application/json`, server streams `application/connect+proto|json`) and over
gRPC-Web (`application/grpc-web[+proto|+json]` and the `-text` base64 variant), with
CORS, on an ASGI app that uvicorn serves. The same port answers `/healthz`, `/readyz`
and `/metrics` so a container needs one port for browsers and probes.

Why a small hand-written ASGI implementation and not the `connectrpc` library
(0.13.0; `connect-python` 0.9.0 is its older name): we read its server
(`ConnectASGIApplication`) and it is a careful, conformance-tested implementation,
but here it would cost more than the few hundred lines below:

* It is built on `protobuf-py`, a second protobuf runtime (with a native extension),
  and requires `pyqwest`, a Rust HTTP *client* (5.7 MB wheel), both of which would
  ship in every app container next to `google.protobuf`, which our generated code
  and the native gRPC transport use. Its google.protobuf support is a `compat` codec
  shim, and its code generator targets protobuf-py, so the method table would be
  hand-built anyway. (0.9.0, on google.protobuf, is the superseded 0.x line.)
* Our streams yield already-serialized bytes shared by up to thousands of
  subscribers. The library encodes each yielded message through its codec, so we
  would have to smuggle bytes through a fake message type and a custom codec that
  knows the response class to transcode for JSON.
* Authentication needs the peer's address and must produce protocol-correct
  errors, `ServiceError` must map to Connect codes, and CORS, health and metrics
  live outside it: wrappers around every endpoint and around the app regardless.
* It does not serve `application/grpc-web-text`.

We need only unary and server-streaming calls, a handful of headers and two framings,
and the real Connect / gRPC-Web clients (connect-es, tests/node) check us end to end.

Details that follow the specs: unary errors map codes to HTTP statuses
(unauthenticated 401, permission_denied 403, not_found 404, invalid_argument 400...)
with a JSON body `{"code", "message"}`; stream errors go in the end-stream message
(flag 0x02, `{"error": {...}}`) or the gRPC-Web trailers frame (flag 0x80) with HTTP
200; `Connect-Timeout-Ms` and `grpc-timeout` are honoured; gzip-compressed requests
are accepted (responses are not compressed, which clients must accept). When a
client disconnects mid-stream the endpoint's iterator is closed at once, so the
server frees the subscription.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import json
import logging
import re
import struct
import urllib.parse
import zlib
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    MutableMapping,
)
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Generic, Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aerogrid.metrics import REGISTRY
from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.server.connections import REQUEST_TIMEOUT, STALL_SECONDS, SendWatch, refused
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.http_server import ABORT_EXTENSION
from aerogrid.server.identity import Caller
from aerogrid.server.service import Paced, ServiceAPI
from aerogrid.v1 import catalog_pb2, grid_pb2

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "ASGIApp",
    "ASGIMessage",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "CallerAuthenticator",
    "create_http_app",
]

log = logging.getLogger(__name__)

ASGIScope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[ASGIMessage]]
ASGISend = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[ASGIScope, ASGIReceive, ASGISend], Awaitable[None]]
#: What `/readyz` reports: ready or not, optionally with a detail line.
Readiness = bool | tuple[bool, str]

DEFAULT_MAX_REQUEST_BYTES: Final = 4 * 1024 * 1024
"""Requests are small (a subscription, a filter); anything bigger is refused."""


class CallerAuthenticator(Protocol):
    """What the transport needs from `aerogrid.server.auth.Authenticator`."""

    async def authenticate(self, authorization: str | None, *, peer_is_loopback: bool) -> Caller:
        """The caller, or raises a `ServiceError` (unauthenticated / permission_denied)."""
        ...


_ACCEPTED_TYPES: Final = (
    "application/proto, application/json, application/connect+proto, "
    "application/connect+json, application/grpc-web+proto, application/grpc-web+json, "
    "application/grpc-web-text+proto"
)
_CORS_ALLOW_HEADERS: Final = (
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, "
    "connect-content-encoding, connect-accept-encoding, grpc-timeout, grpc-encoding, "
    f"grpc-accept-encoding, x-grpc-web, x-user-agent, {APP_HEADER}, {TENANT_HEADER}"
)
_CORS_EXPOSE_HEADERS: Final = "grpc-status, grpc-message, grpc-status-details-bin"
_CORS_METHODS: Final = "GET, POST, OPTIONS"

_FLAG_COMPRESSED: Final = 0x01
_FLAG_END_STREAM: Final = 0x02  # Connect
_FLAG_TRAILERS: Final = 0x80  # gRPC-Web
_PREFIX: Final = struct.Struct(">BI")

_CONNECT_TIMEOUT = re.compile(r"[0-9]{1,10}")
_GRPC_TIMEOUT = re.compile(r"([0-9]{1,8})([HMSmun])")
_GRPC_TIMEOUT_UNIT: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


class _RpcError(Exception):
    """An error on the wire: a Connect code name and a message for the caller.

    `refused` labels a request refused for its form (malformed, too large, incomplete):
    it is counted and logged, rate-limited (`connections.refused`).
    """

    def __init__(self, code: str, message: str, *, refused: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.refused = refused

    def connect_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def _as_rpc_error(exc: BaseException, where: str) -> _RpcError:
    """Map what a call raised to its wire error; internal errors are logged, not leaked."""
    if isinstance(exc, _RpcError):
        if exc.refused is not None:
            refused("http", exc.refused, f"{where}: {exc.message}")
        return exc
    if isinstance(exc, ServiceError):
        return _RpcError(exc.code.value, exc.message)
    log.error("%s failed", where, exc_info=exc)
    return _RpcError("internal", "internal server error")


# --- methods -------------------------------------------------------------------------

_Req = TypeVar("_Req", bound=Message)


@dataclass(frozen=True, slots=True)
class _Method(Generic[_Req]):
    """One RPC: its message types and the endpoint call (unary or stream)."""

    request_type: type[_Req]
    response_type: type[Message]
    unary: Callable[[_Req, Caller], Awaitable[Message]] | None = None
    stream: Callable[[_Req, Caller], AsyncGenerator[bytes, None]] | None = None
    # Streams only: a serialized response -> JSON (see _json_transcoder).
    to_json: Callable[[bytes], bytes] | None = None


_JSON_CACHE_MAX_BYTES: Final = 64 * 1024


def _json_transcoder(message_type: type[Message]) -> Callable[[bytes], bytes]:
    """Serialized -> JSON, caching small messages (shared deltas), not big snapshots."""

    def transcode(data: bytes) -> bytes:
        return _json_bytes(message_type.FromString(data))

    cached = lru_cache(maxsize=128)(transcode)

    def to_json(data: bytes) -> bytes:
        return cached(data) if len(data) <= _JSON_CACHE_MAX_BYTES else transcode(data)

    return to_json


def _method_table(endpoint: ServiceAPI) -> dict[str, _Method[Any]]:
    """URL path -> method, with paths taken from the descriptors so they match the proto."""
    grid = grid_pb2.DESCRIPTOR.services_by_name["GridService"].full_name
    catalog = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
    return {
        f"/{grid}/ListGrids": _Method(
            grid_pb2.ListGridsRequest, grid_pb2.ListGridsResponse, unary=endpoint.list_grids
        ),
        f"/{grid}/Subscribe": _Method(
            grid_pb2.SubscribeRequest,
            grid_pb2.SubscribeResponse,
            stream=endpoint.subscribe,
            to_json=_json_transcoder(grid_pb2.SubscribeResponse),
        ),
        f"/{catalog}/ListApps": _Method(
            catalog_pb2.ListAppsRequest, catalog_pb2.ListAppsResponse, unary=endpoint.list_apps
        ),
        f"/{catalog}/WatchApps": _Method(
            catalog_pb2.WatchAppsRequest,
            catalog_pb2.WatchAppsResponse,
            stream=endpoint.watch_apps,
            to_json=_json_transcoder(catalog_pb2.WatchAppsResponse),
        ),
    }


# --- protocols and codecs ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Wire:
    """How a request is framed: Connect unary, Connect stream or gRPC-Web (maybe text)."""

    kind: str  # "unary" | "stream" | "grpc-web"
    codec: str  # "proto" | "json"
    text: bool = False


def _negotiate(content_type: str) -> _Wire | None:
    media = content_type.split(";", 1)[0].strip().lower()
    match media:
        case "application/proto":
            return _Wire("unary", "proto")
        case "application/json":
            return _Wire("unary", "json")
        case "application/connect+proto":
            return _Wire("stream", "proto")
        case "application/connect+json":
            return _Wire("stream", "json")
        case "application/grpc-web" | "application/grpc-web+proto":
            return _Wire("grpc-web", "proto")
        case "application/grpc-web+json":
            return _Wire("grpc-web", "json")
        case "application/grpc-web-text" | "application/grpc-web-text+proto":
            return _Wire("grpc-web", "proto", text=True)
        case "application/grpc-web-text+json":
            return _Wire("grpc-web", "json", text=True)
    return None


def _decode(message_type: type[_Req], data: bytes, codec: str) -> _Req:
    message = message_type()
    try:
        if codec == "proto":
            message.ParseFromString(data)
        else:
            json_format.Parse(data.decode("utf-8"), message, ignore_unknown_fields=True)
    except Exception as exc:  # protobuf raises several types for bad input
        name = message_type.DESCRIPTOR.full_name
        raise _RpcError(
            "invalid_argument", f"cannot decode {codec} {name}: {exc}", refused="malformed"
        ) from None
    return message


def _json_bytes(message: Message) -> bytes:
    value = json_format.MessageToDict(message)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _encode(message: Message, codec: str) -> bytes:
    return message.SerializeToString() if codec == "proto" else _json_bytes(message)


def _decompress(data: bytes, encoding: str | None, limit: int) -> bytes:
    if encoding in (None, "", "identity"):
        return data
    if encoding != "gzip":
        raise _RpcError(
            "unimplemented", f"unsupported compression {encoding!r}; supported: gzip, identity"
        )
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _RpcError("invalid_argument", f"bad gzip data: {exc}", refused="malformed") from None
    if len(out) > limit:
        raise _RpcError(
            "resource_exhausted", f"request message exceeds {limit} bytes", refused="too_large"
        )
    return out


def _envelope(flags: int, payload: bytes) -> bytes:
    return _PREFIX.pack(flags, len(payload)) + payload


def _unenvelope(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The single request message of a streaming or gRPC-Web call."""
    if len(body) < _PREFIX.size:
        got = "an empty body" if not body else f"{len(body)} bytes"
        raise _RpcError(
            "invalid_argument",
            f"truncated envelope: expected a 5-byte message prefix, got {got}",
            refused="malformed",
        )
    flags, length = _PREFIX.unpack_from(body)
    payload = body[_PREFIX.size : _PREFIX.size + length]
    if len(payload) < length:
        raise _RpcError(
            "invalid_argument",
            f"truncated envelope: prefix promises {length} bytes, body has {len(payload)}",
            refused="malformed",
        )
    if len(body) > _PREFIX.size + length:
        raise _RpcError(
            "invalid_argument",
            "expected exactly one request message, got more",
            refused="malformed",
        )
    if flags & ~_FLAG_COMPRESSED:
        raise _RpcError(
            "invalid_argument", f"unexpected envelope flags 0x{flags:02x}", refused="malformed"
        )
    if flags & _FLAG_COMPRESSED:
        if encoding in (None, "", "identity"):
            raise _RpcError(
                "invalid_argument", "compressed message but no request compression was declared"
            )
        return _decompress(payload, encoding, limit)
    return payload


def _percent_encode(text: str) -> str:
    """grpc-message encoding: printable ASCII except '%' as is, everything else %XX."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode()
    )


class _Framing(Protocol):
    content_type: str

    def message(self, payload: bytes) -> bytes: ...

    def end(self, error: _RpcError | None) -> bytes: ...


class _ConnectFraming:
    """Connect streaming: data envelopes, then a JSON end-stream envelope (flag 0x02)."""

    def __init__(self, codec: str) -> None:
        self.content_type = f"application/connect+{codec}"

    def message(self, payload: bytes) -> bytes:
        return _envelope(0, payload)

    def end(self, error: _RpcError | None) -> bytes:
        body = {} if error is None else {"error": error.connect_json()}
        return _envelope(_FLAG_END_STREAM, json.dumps(body, separators=(",", ":")).encode())


class _GrpcWebFraming:
    """gRPC-Web: data frames, then a trailers frame (flag 0x80); base64 in text mode."""

    def __init__(self, codec: str, text: bool) -> None:
        self.text = text
        kind = "grpc-web-text" if text else "grpc-web"
        self.content_type = f"application/{kind}+{codec}"

    def _out(self, frame: bytes) -> bytes:
        # Each frame is base64 on its own (padded), as gRPC-Web text clients expect.
        return base64.b64encode(frame) if self.text else frame

    def message(self, payload: bytes) -> bytes:
        return self._out(_envelope(0, payload))

    def end(self, error: _RpcError | None) -> bytes:
        if error is None:
            trailers = "grpc-status:0\r\n"
        else:
            status = Code(error.code).grpc_number
            trailers = f"grpc-status:{status}\r\ngrpc-message:{_percent_encode(error.message)}\r\n"
        return self._out(_envelope(_FLAG_TRAILERS, trailers.encode("ascii")))


# --- ASGI plumbing -------------------------------------------------------------------


class _Response:
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


def _headers(scope: ASGIScope) -> dict[str, str]:
    """Request headers by lower-case name; the first of repeated headers wins."""
    result: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        result.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return result


async def _read_body(receive: ASGIReceive, limit: int) -> bytes | None:
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
                    raise _RpcError(
                        "resource_exhausted",
                        f"request body exceeds {limit} bytes",
                        refused="too_large",
                    )
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise _RpcError(
            "deadline_exceeded",
            f"the request body did not arrive within {REQUEST_TIMEOUT:g} s",
            refused="incomplete",
        ) from None


async def _until_disconnect(receive: ASGIReceive) -> None:
    """Returns when the client disconnects (once the body is read, receive() waits for it)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _aclose(messages: AsyncGenerator[bytes, None], where: str) -> None:
    try:
        await messages.aclose()
    except Exception:
        log.exception("closing the stream of %s failed", where)


def _default_is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _timeout_seconds(headers: dict[str, str], wire: _Wire) -> float | None:
    if wire.kind == "grpc-web":
        raw = headers.get("grpc-timeout")
        if raw is None:
            return None
        match = _GRPC_TIMEOUT.fullmatch(raw.strip())
        if match is None:
            raise _RpcError("invalid_argument", f"malformed grpc-timeout {raw!r}")
        return int(match.group(1)) * _GRPC_TIMEOUT_UNIT[match.group(2)]
    raw = headers.get("connect-timeout-ms")
    if raw is None:
        return None
    if _CONNECT_TIMEOUT.fullmatch(raw.strip()) is None:
        raise _RpcError("invalid_argument", f"malformed connect-timeout-ms {raw!r}")
    return int(raw) / 1000


class _HttpApp:
    """The ASGI app; see the module docstring."""

    def __init__(
        self,
        endpoint: ServiceAPI,
        authenticator: CallerAuthenticator,
        is_ready: Callable[[], Readiness],
        allowed_origins: Collection[str] | None,
        is_loopback: Callable[[str], bool],
        max_request_bytes: int,
    ) -> None:
        self._methods = _method_table(endpoint)
        self._authenticator = authenticator
        self._is_ready = is_ready
        self._allowed_origins = None if allowed_origins is None else frozenset(allowed_origins)
        self._is_loopback = is_loopback
        self._limit = max_request_bytes

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            # A WebSocket: we serve none; refuse it rather than leave it hanging.
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = _headers(scope)
        origin = headers.get("origin")
        allowed = origin is not None and self._origin_allowed(origin)
        extra: list[tuple[bytes, bytes]] = []
        if allowed and origin is not None:
            extra = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-expose-headers", _CORS_EXPOSE_HEADERS.encode()),
                (b"vary", b"Origin"),
            ]
        response = _Response(send, extra)
        try:
            await self._route(scope, receive, headers, response, allowed)
        except Exception:
            log.exception("HTTP request %s %s failed", scope.get("method"), scope.get("path"))
            if not response.started:
                await response.whole(500, "text/plain; charset=utf-8", b"internal server error\n")

    def _origin_allowed(self, origin: str) -> bool:
        return self._allowed_origins is None or origin in self._allowed_origins

    def _origin_trusted(self, origin: str) -> bool:
        if self._allowed_origins is not None and origin in self._allowed_origins:
            return True
        try:
            host = urllib.parse.urlsplit(origin).hostname
        except ValueError:
            return False
        return host is not None and (host == "localhost" or _default_is_loopback(host))

    async def _lifespan(self, receive: ASGIReceive, send: ASGISend) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        headers: dict[str, str],
        response: _Response,
        cors_allowed: bool,
    ) -> None:
        method = scope["method"]
        path: str = scope["path"]
        root = scope.get("root_path") or ""
        if root and path.startswith(root) and path not in self._methods:
            path = path[len(root) :]
        if method == "OPTIONS":
            await self._preflight(headers, response, cors_allowed)
            return
        rpc = self._methods.get(path)
        if rpc is not None:
            if method != "POST":
                await response.whole(
                    405,
                    "text/plain; charset=utf-8",
                    b"RPCs take POST\n",
                    [("allow", "POST, OPTIONS")],
                )
                return
            await self._rpc(scope, receive, headers, response, path, rpc)
            return
        if method in ("GET", "HEAD"):
            if path == "/healthz":
                await response.whole(200, "text/plain; charset=utf-8", b"ok\n")
                return
            if path == "/readyz":
                ready, detail = self._ready()
                body = ("ready" if ready else "not ready") + (f": {detail}" if detail else "")
                await response.whole(
                    200 if ready else 503, "text/plain; charset=utf-8", (body + "\n").encode()
                )
                return
            if path == "/metrics":
                await self._metrics(scope, headers, response)
                return
        wire = _negotiate(headers.get("content-type", "")) if method == "POST" else None
        if wire is not None:
            # Looks like an RPC to a procedure we don't have: answer in its protocol.
            error = _RpcError("unimplemented", f"unknown procedure {path}")
            if wire.kind == "unary":
                await self._unary_error(response, error, status=404)
            else:
                await self._stream_error(response, wire, error)
            return
        await response.whole(404, "text/plain; charset=utf-8", b"not found\n")

    async def _metrics(
        self, scope: ASGIScope, headers: dict[str, str], response: _Response
    ) -> None:
        """The metrics, for whom a grid call would admit: a valid token, or loopback.

        They name the apps and grids served here, which other tenants must not learn.
        """
        try:
            await self._authenticate(scope, headers)
        except ServiceError as exc:
            status = exc.code.http_status
            challenge = [("www-authenticate", "Bearer")] if status == 401 else []
            body = f"{exc.message}\n".encode()
            await response.whole(status, "text/plain; charset=utf-8", body, challenge)
            return
        await response.whole(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))

    def _ready(self) -> tuple[bool, str]:
        try:
            answer = self._is_ready()
        except Exception:
            log.exception("is_ready() failed")
            return False, "the readiness check failed"
        return answer if isinstance(answer, tuple) else (bool(answer), "")

    async def _preflight(
        self, headers: dict[str, str], response: _Response, cors_allowed: bool
    ) -> None:
        out = [("allow", _CORS_METHODS)]
        if cors_allowed:
            out += [
                ("access-control-allow-methods", _CORS_METHODS),
                ("access-control-allow-headers", _CORS_ALLOW_HEADERS),
                ("access-control-max-age", "7200"),
            ]
            # Chrome's Private Network Access asks before a public page calls loopback.
            if headers.get("access-control-request-private-network", "").lower() == "true":
                out.append(("access-control-allow-private-network", "true"))
        await response.start(204, out)
        await response.body(b"", more=False)

    async def _authenticate(self, scope: ASGIScope, headers: dict[str, str]) -> Caller:
        client = scope.get("client")
        host = client[0] if client else None
        loopback = host is not None and self._is_loopback(str(host))
        origin = headers.get("origin")
        if loopback and origin is not None and not self._origin_trusted(origin):
            # A browser page from elsewhere calling us on this machine: any web site the
            # user visits could, so it gets no loopback privileges (e.g. anonymous
            # access) unless its origin is listed or is itself local.
            loopback = False
        return await self._authenticator.authenticate(
            headers.get("authorization"), peer_is_loopback=loopback
        )

    async def _rpc(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        headers: dict[str, str],
        response: _Response,
        path: str,
        rpc: _Method[Any],
    ) -> None:
        content_type = headers.get("content-type", "")
        wire = _negotiate(content_type)
        expected = "unary" if rpc.unary is not None else "stream"
        if wire is None or wire.kind not in (expected, "grpc-web"):
            shown = content_type or "none"
            error = _RpcError(
                "invalid_argument",
                f"unsupported content-type {shown!r} for {path}; "
                + (
                    "use application/proto or application/json"
                    if expected == "unary"
                    else "use application/connect+proto or application/connect+json"
                )
                + " (Connect), or application/grpc-web+proto (gRPC-Web)",
            )
            await self._unary_error(response, error, status=415, accept_post=True)
            return
        if wire.kind == "unary":
            await self._connect_unary(scope, receive, headers, response, path, rpc, wire)
        else:
            await self._streamed(scope, receive, headers, response, path, rpc, wire)

    async def _unary_error(
        self,
        response: _Response,
        error: _RpcError,
        *,
        status: int | None = None,
        accept_post: bool = False,
    ) -> None:
        extra = [("accept-post", _ACCEPTED_TYPES)] if accept_post else []
        await response.whole(
            status or Code(error.code).http_status,
            "application/json",
            json.dumps(error.connect_json(), separators=(",", ":")).encode(),
            extra,
        )

    async def _stream_error(self, response: _Response, wire: _Wire, error: _RpcError) -> None:
        framing = _framing(wire)
        await response.start(200, [("content-type", framing.content_type)])
        await response.body(framing.end(error), more=False)

    async def _connect_unary(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        headers: dict[str, str],
        response: _Response,
        path: str,
        rpc: _Method[Any],
        wire: _Wire,
    ) -> None:
        assert rpc.unary is not None
        try:
            body = await _read_body(receive, self._limit)
            if body is None:
                return
            _check_connect_version(headers)
            timeout = _timeout_seconds(headers, wire)
            body = _decompress(body, headers.get("content-encoding"), self._limit)
            caller = await self._authenticate(scope, headers)
            request = _decode(rpc.request_type, body, wire.codec)
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    result = await rpc.unary(request, caller)
            except TimeoutError:
                if deadline.expired():
                    raise _RpcError("deadline_exceeded", "deadline exceeded") from None
                raise
            payload = _encode(result, wire.codec)
        except Exception as exc:
            await self._unary_error(response, _as_rpc_error(exc, _where(scope, path)))
            return
        await response.whole(200, f"application/{wire.codec}", payload)

    async def _streamed(
        self,
        scope: ASGIScope,
        receive: ASGIReceive,
        headers: dict[str, str],
        response: _Response,
        path: str,
        rpc: _Method[Any],
        wire: _Wire,
    ) -> None:
        """A Connect server stream, or any call over gRPC-Web (framed the same way)."""
        framing = _framing(wire)
        try:
            body = await _read_body(receive, self._limit)
            if body is None:
                return
            if wire.kind == "stream":
                _check_connect_version(headers)
            timeout = _timeout_seconds(headers, wire)
            if wire.text:
                try:
                    body = base64.b64decode(body, validate=True)
                except (binascii.Error, ValueError):
                    raise _RpcError(
                        "invalid_argument", "body is not valid base64", refused="malformed"
                    ) from None
            encoding_header = (
                "grpc-encoding" if wire.kind == "grpc-web" else "connect-content-encoding"
            )
            payload = _unenvelope(body, headers.get(encoding_header), self._limit)
            caller = await self._authenticate(scope, headers)
            request = _decode(rpc.request_type, payload, wire.codec)
        except Exception as exc:
            await self._stream_error(response, wire, _as_rpc_error(exc, _where(scope, path)))
            return

        await response.start(200, [("content-type", framing.content_type)])
        pump = asyncio.ensure_future(
            self._pump(rpc, request, caller, wire, framing, response, path)
        )
        gone = asyncio.ensure_future(_until_disconnect(receive))
        try:
            done, _ = await asyncio.wait(
                (pump, gone), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            # The server is stopping (uvicorn cancels requests once its graceful
            # shutdown times out): free the subscription, and tell the client so it
            # can resume elsewhere instead of seeing a cut stream.
            # Cancel first and end the response before awaiting anything: the loop
            # may be about to cancel everything again (asyncio.run's cleanup).
            client_left = gone.done()
            pump.cancel()
            gone.cancel()
            if not client_left:
                shutting_down = _RpcError("unavailable", "the server is shutting down")
                with contextlib.suppress(Exception):
                    await response.body(framing.end(shutting_down), more=False)
            await _stop(pump, gone)
            raise
        # The pump's `finally` closes the endpoint's iterator, freeing the subscription.
        await _stop(pump, gone)
        error: _RpcError | None = None
        if pump not in done:
            error = _RpcError("deadline_exceeded", "deadline exceeded")
        elif (failure := pump.exception()) is not None:
            error = _as_rpc_error(failure, path)
        if gone in done:
            return  # the client left: nobody to tell
        try:
            # A client that stopped reading (or was dropped for it) may never take the
            # end of its stream: it waits behind what it has not read; then cut it off.
            async with asyncio.timeout(STALL_SECONDS):
                await response.body(framing.end(error), more=False)
        except TimeoutError:
            _abort(scope)
        except OSError as exc:  # the connection broke between the last message and now
            log.debug("could not end the stream of %s: %s", path, exc)

    async def _pump(
        self,
        rpc: _Method[Any],
        request: Message,
        caller: Caller,
        wire: _Wire,
        framing: _Framing,
        response: _Response,
        path: str,
    ) -> None:
        """Sends the call's messages; closes the endpoint's iterator however it ends."""
        if rpc.unary is not None:
            result = await rpc.unary(request, caller)
            await response.body(framing.message(_encode(result, wire.codec)), more=True)
            return
        assert rpc.stream is not None
        messages = rpc.stream(request, caller)
        task = asyncio.current_task()
        assert task is not None
        watch = None
        if isinstance(messages, Paced):
            stall = messages.stall_seconds
            watch = SendWatch(messages.fell_behind, task.cancel, stall_seconds=stall)
        try:
            async for data in messages:
                if wire.codec == "json":
                    assert rpc.to_json is not None
                    data = rpc.to_json(data)
                if watch is None:
                    await response.body(framing.message(data), more=True)
                else:
                    with watch.sending():
                        await response.body(framing.message(data), more=True)
        except asyncio.CancelledError:
            if watch is None or watch.error is None:
                raise
            task.uncancel()
            raise watch.error from None
        finally:
            if watch is not None:
                watch.close()
            await _aclose(messages, path)


def _where(scope: ASGIScope, path: str) -> str:
    client = scope.get("client")
    return f"{path} from {client[0]}:{client[1]}" if client else path


def _abort(scope: ASGIScope) -> None:
    """Cut the request's connection, when the server offers it (see http_server.py)."""
    extension = scope.get("extensions", {}).get(ABORT_EXTENSION)
    if extension is not None:
        extension["abort"]()


async def _stop(*tasks: asyncio.Future[None]) -> None:
    for task in tasks:
        if not task.done():
            task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _framing(wire: _Wire) -> _Framing:
    if wire.kind == "grpc-web":
        return _GrpcWebFraming(wire.codec, wire.text)
    return _ConnectFraming(wire.codec)


def _check_connect_version(headers: dict[str, str]) -> None:
    version = headers.get("connect-protocol-version")
    if version is not None and version.strip() != "1":
        raise _RpcError("invalid_argument", f"connect-protocol-version must be 1, got {version!r}")


def create_http_app(
    endpoint: ServiceAPI,
    authenticator: CallerAuthenticator,
    *,
    is_ready: Callable[[], Readiness],
    allowed_origins: Collection[str] | None = None,
    is_loopback: Callable[[str], bool] | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> ASGIApp:
    """The ASGI app serving `endpoint` over Connect and gRPC-Web, plus health and metrics.

    `authenticator` sees each call's `authorization` header and whether the peer is on
    loopback, before the endpoint is called. `is_ready` drives `/readyz`: a bool, or
    (ready, detail) where the detail line says what a ready app lacks (degraded, a weaker
    guarantee) or why it is not ready.
    `allowed_origins` lists the browser origins that CORS lets call us (None: any
    origin; every call is still authenticated). A loopback call from a browser page
    whose origin is neither listed nor local (localhost, 127.0.0.1, [::1]) is not
    reported as loopback, so a web site cannot borrow the local user's privileges.
    `is_loopback` tells whether a peer host (`scope["client"][0]`, an IP address as
    text) is local; by default an IP loopback check (pass
    `aerogrid.server.auth.is_loopback` to share one definition). A peer without an
    address (a Unix socket) is not loopback.
    """
    return _HttpApp(
        endpoint,
        authenticator,
        is_ready,
        allowed_origins,
        is_loopback or _default_is_loopback,
        max_request_bytes,
    )
