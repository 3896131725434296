"""The HTTP transport (Connect, gRPC-Web, CORS, health) over a real uvicorn server and socket.

This is a transport test: the `ServiceAPI` is the thing being replaced, by a fake
that yields scripted, pre-serialized messages and records what it was asked and
whether its stream was closed. The authenticator is faked too. Requests are raw HTTP
from httpx, so the bytes on the wire (content types, envelopes, end-stream and
trailers) are checked against the protocol specs, not against a client library;
tests/excel/test_node_client_transport.py runs the real connect-es client.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import struct
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import Caller
from aerogrid.server.web import create_http_app
from aerogrid.v1 import catalog_pb2, grid_pb2

GRID = "/aerogrid.v1.GridService"
CATALOG = "/aerogrid.v1.CatalogService"
ALICE = Caller(subject="alice", tenants=frozenset({"acme"}))


class FakeAuthError(ServiceError):
    """Stands in for auth.AuthError, a ServiceError subclass."""


class FakeAuthenticator:
    """'Bearer good' is alice; anything else (or nothing) is refused."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, bool]] = []

    async def authenticate(self, authorization: str | None, *, peer_is_loopback: bool) -> Caller:
        self.seen.append((authorization, peer_is_loopback))
        if authorization is None:
            raise FakeAuthError(Code.UNAUTHENTICATED, "missing bearer token")
        if authorization != "Bearer good":
            raise FakeAuthError(Code.UNAUTHENTICATED, "invalid token")
        return ALICE


def _value(v: object) -> grid_pb2.Value:
    if isinstance(v, bool):
        return grid_pb2.Value(bool_value=v)
    if isinstance(v, int):
        return grid_pb2.Value(int_value=v)
    if isinstance(v, float):
        return grid_pb2.Value(float_value=v)
    if isinstance(v, str):
        return grid_pb2.Value(string_value=v)
    return grid_pb2.Value()


def _row(key: str, *cells: object) -> grid_pb2.Row:
    return grid_pb2.Row(key=key, cells=[_value(c) for c in cells])


SCRIPT = [
    grid_pb2.SubscribeResponse(
        schema=grid_pb2.Schema(
            app="demo",
            grid="prices",
            columns=[grid_pb2.Column(name="px"), grid_pb2.Column(name="venue")],
            epoch="e1",
        )
    ),
    grid_pb2.SubscribeResponse(
        snapshot=grid_pb2.Snapshot(
            seq=7, rows=[_row("AAPL", 1.5, "X"), _row("MSFT", 2.5, "Y")], complete=True
        )
    ),
    grid_pb2.SubscribeResponse(delta=grid_pb2.Delta(seq=8, upserts=[_row("AAPL", 1.75, "X")])),
    grid_pb2.SubscribeResponse(delta=grid_pb2.Delta(seq=9, deletes=["MSFT"])),
]
ENCODED = [m.SerializeToString() for m in SCRIPT]


@dataclass
class FakeEndpoint:
    """A scripted ServiceAPI; the `grid` / `app` names pick a behaviour.

    Streams run in the server's thread, so what the test watches is thread-safe.
    """

    subscribed: list[tuple[grid_pb2.SubscribeRequest, Caller]] = field(default_factory=list)
    stream_closed: threading.Event = field(default_factory=threading.Event)
    stream_opened: threading.Event = field(default_factory=threading.Event)

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, caller: Caller
    ) -> grid_pb2.ListGridsResponse:
        errors = {
            "missing": Code.NOT_FOUND,
            "secret": Code.PERMISSION_DENIED,
            "bad": Code.INVALID_ARGUMENT,
            "busy": Code.UNAVAILABLE,
        }
        if request.app in errors:
            raise ServiceError(errors[request.app], f"no grids for {request.app}")
        if request.app == "crash":
            raise RuntimeError("bug in the endpoint")
        info = grid_pb2.GridInfo(
            app=request.app or "demo",
            name="prices",
            columns=[grid_pb2.Column(name="px")],
            rows=2,
            ready=True,
            seq=2**40,
        )
        return grid_pb2.ListGridsResponse(grids=[info])

    def subscribe(
        self, request: grid_pb2.SubscribeRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        self.subscribed.append((request, caller))
        return self._stream(request.grid)

    async def _stream(self, grid: str) -> AsyncGenerator[bytes, None]:
        self.stream_opened.set()
        try:
            if grid == "fails":
                yield ENCODED[0]
                raise ServiceError(Code.NOT_FOUND, "grid fails was dropped")
            for data in ENCODED:
                yield data
            if grid == "endless":
                import asyncio

                await asyncio.Event().wait()
        finally:
            self.stream_closed.set()

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, caller: Caller
    ) -> catalog_pb2.ListAppsResponse:
        return catalog_pb2.ListAppsResponse(
            apps=[
                catalog_pb2.AppInfo(
                    name="demo", tenant="acme", status=catalog_pb2.APP_STATUS_RUNNING
                )
            ]
        )

    def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        async def stream() -> AsyncGenerator[bytes, None]:
            first = catalog_pb2.WatchAppsResponse(
                apps=[catalog_pb2.AppInfo(name="demo", tenant="acme")], initial=True
            )
            yield first.SerializeToString()

        return stream()


@dataclass
class Served:
    base_url: str
    endpoint: FakeEndpoint
    authenticator: FakeAuthenticator
    ready: list[bool]


@contextlib.contextmanager
def uvicorn_in_thread(app: object, *, graceful: int = 2) -> Iterator[tuple[str, uvicorn.Server]]:
    """Runs `app` under a real uvicorn server on 127.0.0.1 (a free port) in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=graceful,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    with uvicorn_in_thread(app) as (base_url, _):
        yield base_url


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    endpoint = FakeEndpoint()
    authenticator = FakeAuthenticator()
    ready = [True]
    app = create_http_app(endpoint, authenticator, is_ready=lambda: ready[0])
    with serve_in_thread(app) as base_url:
        yield Served(base_url, endpoint, authenticator, ready)


@pytest.fixture
def client(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, timeout=10) as c:
        yield c


AUTH = {"authorization": "Bearer good"}
CONNECT_PROTO = {"content-type": "application/proto", "connect-protocol-version": "1", **AUTH}
CONNECT_JSON = {"content-type": "application/json", "connect-protocol-version": "1", **AUTH}
STREAM_PROTO = {
    "content-type": "application/connect+proto",
    "connect-protocol-version": "1",
    **AUTH,
}
GRPC_WEB = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1", **AUTH}


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


def frames(body: bytes) -> list[tuple[int, bytes]]:
    """Splits a response body into (flags, payload) envelopes, checking none is cut short."""
    out = []
    while body:
        assert len(body) >= 5, f"dangling bytes {body!r}"
        flags, length = struct.unpack_from(">BI", body)
        assert len(body) >= 5 + length, "truncated envelope in the response"
        out.append((flags, body[5 : 5 + length]))
        body = body[5 + length :]
    return out


def subscribe_body(grid: str = "prices") -> bytes:
    return envelope(grid_pb2.SubscribeRequest(app="demo", grid=grid).SerializeToString())


# --- unary -----------------------------------------------------------------------------


def test_unary_connect_proto(client: httpx.Client, served: Served) -> None:
    body = grid_pb2.ListGridsRequest(app="demo").SerializeToString()
    r = client.post(f"{GRID}/ListGrids", content=body, headers=CONNECT_PROTO)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/proto"
    response = grid_pb2.ListGridsResponse.FromString(r.content)
    assert [g.name for g in response.grids] == ["prices"]
    assert response.grids[0].seq == 2**40
    # The peer is 127.0.0.1, which the authenticator is told.
    assert served.authenticator.seen[-1] == ("Bearer good", True)


def test_unary_connect_json(client: httpx.Client) -> None:
    r = client.post(f"{GRID}/ListGrids", content=b'{"app": "demo"}', headers=CONNECT_JSON)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "grids": [
            {
                "app": "demo",
                "name": "prices",
                "columns": [{"name": "px"}],
                "rows": "2",  # 64-bit integers are strings in proto3 JSON
                "ready": True,
                "seq": str(2**40),
            }
        ]
    }


def test_unary_catalog_and_gzip_request(client: httpx.Client) -> None:
    body = gzip.compress(catalog_pb2.ListAppsRequest().SerializeToString() or b"")
    r = client.post(
        f"{CATALOG}/ListApps", content=body, headers={**CONNECT_PROTO, "content-encoding": "gzip"}
    )
    assert r.status_code == 200, r.text
    apps = catalog_pb2.ListAppsResponse.FromString(r.content).apps
    assert [(a.name, a.status) for a in apps] == [("demo", catalog_pb2.APP_STATUS_RUNNING)]


@pytest.mark.parametrize(
    ("app", "status", "code"),
    [
        ("missing", 404, "not_found"),
        ("secret", 403, "permission_denied"),
        ("bad", 400, "invalid_argument"),
        ("busy", 503, "unavailable"),
        ("crash", 500, "internal"),
    ],
)
def test_unary_service_errors_map_to_http_status(
    client: httpx.Client, app: str, status: int, code: str
) -> None:
    body = grid_pb2.ListGridsRequest(app=app).SerializeToString()
    r = client.post(f"{GRID}/ListGrids", content=body, headers=CONNECT_PROTO)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    error = r.json()
    assert error["code"] == code
    if code == "internal":
        assert "bug" not in error["message"]  # internal details stay in the log
    else:
        assert error["message"] == f"no grids for {app}"


@pytest.mark.parametrize("token", [None, "Bearer bad"])
def test_unary_unauthenticated_is_401(client: httpx.Client, token: str | None) -> None:
    headers = {"content-type": "application/proto"}
    if token:
        headers["authorization"] = token
    r = client.post(f"{GRID}/ListGrids", content=b"", headers=headers)
    assert r.status_code == 401
    assert r.json()["code"] == "unauthenticated"


def test_unary_deadline_from_connect_timeout_ms_is_validated(client: httpx.Client) -> None:
    r = client.post(
        f"{GRID}/ListGrids", content=b"", headers={**CONNECT_PROTO, "connect-timeout-ms": "soon"}
    )
    assert r.status_code == 400
    assert "connect-timeout-ms" in r.json()["message"]


# --- Connect streams ---------------------------------------------------------------------


def test_stream_connect_proto(client: httpx.Client, served: Served) -> None:
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body(), headers=STREAM_PROTO)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/connect+proto"
    got = frames(r.content)
    assert [f for f, _ in got] == [0, 0, 0, 0, 2]
    assert [p for _, p in got[:-1]] == ENCODED  # the endpoint's bytes, untouched
    assert json.loads(got[-1][1]) == {}
    request, caller = served.endpoint.subscribed[-1]
    assert (request.app, request.grid, caller) == ("demo", "prices", ALICE)


def test_stream_connect_json(client: httpx.Client) -> None:
    body = b'{"app":"demo","grid":"prices"}'
    headers = {**STREAM_PROTO, "content-type": "application/connect+json"}
    r = client.post(f"{GRID}/Subscribe", content=envelope(body), headers=headers)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/connect+json"
    got = frames(r.content)
    messages = [json.loads(p) for f, p in got if f == 0]
    assert messages[0]["schema"]["columns"] == [{"name": "px"}, {"name": "venue"}]
    assert messages[1]["snapshot"]["rows"][0] == {
        "key": "AAPL",
        "cells": [{"floatValue": 1.5}, {"stringValue": "X"}],
    }
    assert messages[3] == {"delta": {"seq": "9", "deletes": ["MSFT"]}}
    assert got[-1] == (2, b"{}")


def test_stream_watch_apps(client: httpx.Client) -> None:
    body = envelope(catalog_pb2.WatchAppsRequest().SerializeToString())
    r = client.post(f"{CATALOG}/WatchApps", content=body, headers=STREAM_PROTO)
    got = frames(r.content)
    first = catalog_pb2.WatchAppsResponse.FromString(got[0][1])
    assert first.initial and first.apps[0].name == "demo"
    assert got[-1] == (2, b"{}")


def test_stream_error_goes_in_end_stream(client: httpx.Client) -> None:
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body("fails"), headers=STREAM_PROTO)
    assert r.status_code == 200
    got = frames(r.content)
    assert [f for f, _ in got] == [0, 2]
    assert json.loads(got[-1][1]) == {
        "error": {"code": "not_found", "message": "grid fails was dropped"}
    }


def test_stream_unauthenticated_in_end_stream(client: httpx.Client, served: Served) -> None:
    calls = len(served.endpoint.subscribed)
    headers = {k: v for k, v in STREAM_PROTO.items() if k != "authorization"}
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body(), headers=headers)
    assert r.status_code == 200
    assert frames(r.content) == [
        (2, b'{"error":{"code":"unauthenticated","message":"missing bearer token"}}')
    ]
    assert len(served.endpoint.subscribed) == calls  # the endpoint was never called


def test_stream_deadline_from_connect_timeout_ms(client: httpx.Client) -> None:
    headers = {**STREAM_PROTO, "connect-timeout-ms": "300"}
    started = time.monotonic()
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body("endless"), headers=headers)
    assert time.monotonic() - started < 5
    got = frames(r.content)
    assert len(got) == 5
    assert json.loads(got[-1][1])["error"]["code"] == "deadline_exceeded"


# --- gRPC-Web --------------------------------------------------------------------------


def test_grpc_web_stream_with_trailers(client: httpx.Client) -> None:
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body(), headers=GRPC_WEB)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/grpc-web+proto"
    got = frames(r.content)
    assert [f for f, _ in got] == [0, 0, 0, 0, 0x80]
    assert [p for _, p in got[:-1]] == ENCODED
    assert got[-1][1] == b"grpc-status:0\r\n"


def test_grpc_web_unary_and_error_trailers(client: httpx.Client) -> None:
    body = envelope(grid_pb2.ListGridsRequest(app="demo").SerializeToString())
    got = frames(client.post(f"{GRID}/ListGrids", content=body, headers=GRPC_WEB).content)
    assert [f for f, _ in got] == [0, 0x80]
    assert grid_pb2.ListGridsResponse.FromString(got[0][1]).grids[0].name == "prices"

    body = envelope(grid_pb2.ListGridsRequest(app="missing").SerializeToString())
    r = client.post(f"{GRID}/ListGrids", content=body, headers=GRPC_WEB)
    assert r.status_code == 200
    assert frames(r.content) == [(0x80, b"grpc-status:5\r\ngrpc-message:no grids for missing\r\n")]


def test_grpc_web_unauthenticated(client: httpx.Client) -> None:
    headers = {k: v for k, v in GRPC_WEB.items() if k != "authorization"}
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body(), headers=headers)
    assert r.status_code == 200
    assert frames(r.content) == [(0x80, b"grpc-status:16\r\ngrpc-message:missing bearer token\r\n")]


def test_grpc_web_text(client: httpx.Client) -> None:
    import base64

    headers = {**GRPC_WEB, "content-type": "application/grpc-web-text"}
    r = client.post(
        f"{GRID}/Subscribe", content=base64.b64encode(subscribe_body()), headers=headers
    )
    assert r.headers["content-type"] == "application/grpc-web-text+proto"
    # Each frame is base64 on its own, so decode the padded 4-character groups one by one.
    text, raw = r.content, b""
    while text:
        end = text.index(b"=") + 1 if b"=" in text[:4] else 4
        while end < len(text) and text[end : end + 1] == b"=":
            end += 1
        raw += base64.b64decode(text[:end])
        text = text[end:]
    got = frames(raw)
    assert [p for _, p in got[:-1]] == ENCODED
    assert got[-1] == (0x80, b"grpc-status:0\r\n")


# --- CORS, health, metrics ------------------------------------------------------------


def test_cors_preflight(client: httpx.Client) -> None:
    r = client.options(
        f"{GRID}/Subscribe",
        headers={
            "origin": "https://addin.example",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type,connect-protocol-version",
            "access-control-request-private-network": "true",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "https://addin.example"
    assert "POST" in r.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
        "authorization",
        "grpc-timeout",
        # The routing headers every grid call of the add-in sends (a cluster's gateway
        # routes on them): without them a browser refuses every cross-origin Subscribe.
        "x-aerogrid-app",
        "x-aerogrid-tenant",
    } <= allowed
    assert r.headers["access-control-allow-private-network"] == "true"


def test_cors_headers_on_calls(client: httpx.Client) -> None:
    headers = {**GRPC_WEB, "origin": "https://addin.example"}
    r = client.post(f"{GRID}/Subscribe", content=subscribe_body(), headers=headers)
    assert r.headers["access-control-allow-origin"] == "https://addin.example"
    exposed = {h.strip() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"grpc-status", "grpc-message", "grpc-status-details-bin"} <= exposed


def test_cors_allowlist() -> None:
    app = create_http_app(
        FakeEndpoint(),
        FakeAuthenticator(),
        is_ready=lambda: True,
        allowed_origins=["https://addin.example"],
    )
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url) as c:
        preflight = {"access-control-request-method": "POST"}
        ok = c.options(
            f"{GRID}/Subscribe", headers={"origin": "https://addin.example", **preflight}
        )
        assert ok.headers["access-control-allow-origin"] == "https://addin.example"
        evil = c.options(
            f"{GRID}/Subscribe", headers={"origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in evil.headers


def test_health_ready_metrics(client: httpx.Client, served: Served) -> None:
    r = client.get("/healthz")
    assert (r.status_code, r.text) == (200, "ok\n")
    assert client.get("/readyz").status_code == 200
    served.ready[0] = False
    try:
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200  # alive, just not ready
    finally:
        served.ready[0] = True
    assert client.get("/metrics").status_code == 401  # see test_metrics_access.py
    r = client.get("/metrics", headers=AUTH)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE aerogrid_subscribers gauge" in r.text


# --- malformed requests ----------------------------------------------------------------


def test_garbage_and_malformed_requests_then_still_serving(client: httpx.Client) -> None:
    # Garbage protobuf in a unary call.
    r = client.post(f"{GRID}/ListGrids", content=b"\xff\xff\xff\xff\xff", headers=CONNECT_PROTO)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_argument"
    assert "aerogrid.v1.ListGridsRequest" in r.json()["message"]
    # Garbage JSON.
    r = client.post(f"{GRID}/ListGrids", content=b"{not json", headers=CONNECT_JSON)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_argument")
    # A truncated envelope on a stream.
    truncated = subscribe_body()[:-3]
    r = client.post(f"{GRID}/Subscribe", content=truncated, headers=STREAM_PROTO)
    assert r.status_code == 200
    [(flags, end)] = frames(r.content)
    error = json.loads(end)["error"]
    assert flags == 2 and error["code"] == "invalid_argument"
    assert "truncated envelope" in error["message"]
    # Half a prefix over gRPC-Web.
    r = client.post(f"{GRID}/Subscribe", content=b"\x00\x00", headers=GRPC_WEB)
    assert frames(r.content)[0][1].startswith(b"grpc-status:3\r\n")
    # A wrong content type.
    r = client.post(f"{GRID}/ListGrids", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    assert "application/proto" in r.headers["accept-post"]
    assert "unsupported content-type" in r.text
    # A unary content type on a streaming method.
    r = client.post(f"{GRID}/Subscribe", content=b"", headers=CONNECT_PROTO)
    assert r.status_code == 415
    # An unknown procedure, unary and streaming.
    r = client.post(f"{GRID}/Nope", content=b"", headers=CONNECT_PROTO)
    assert (r.status_code, r.json()["code"]) == (404, "unimplemented")
    r = client.post(f"{GRID}/Nope", content=subscribe_body(), headers=STREAM_PROTO)
    assert json.loads(frames(r.content)[0][1])["error"]["code"] == "unimplemented"
    # Unsupported compression, wrong protocol version, a GET on an RPC.
    r = client.post(
        f"{GRID}/ListGrids", content=b"", headers={**CONNECT_PROTO, "content-encoding": "br"}
    )
    assert r.json()["code"] == "unimplemented"
    r = client.post(
        f"{GRID}/ListGrids", content=b"", headers={**CONNECT_PROTO, "connect-protocol-version": "2"}
    )
    assert r.json()["code"] == "invalid_argument"
    assert client.get(f"{GRID}/ListGrids").status_code == 405
    assert client.get("/nothing-here").status_code == 404
    # The server still serves.
    body = grid_pb2.ListGridsRequest(app="demo").SerializeToString()
    assert client.post(f"{GRID}/ListGrids", content=body, headers=CONNECT_PROTO).status_code == 200


def test_oversized_request_is_refused(client: httpx.Client) -> None:
    r = client.post(f"{GRID}/ListGrids", content=b"\0" * (5 * 1024 * 1024), headers=CONNECT_PROTO)
    assert (r.status_code, r.json()["code"]) == (429, "resource_exhausted")


# --- disconnects -----------------------------------------------------------------------


@pytest.mark.parametrize("headers", [STREAM_PROTO, GRPC_WEB], ids=["connect", "grpc-web"])
def test_client_disconnect_closes_the_endpoint_stream(
    served: Served, headers: dict[str, str]
) -> None:
    endpoint = served.endpoint
    endpoint.stream_closed.clear()
    endpoint.stream_opened.clear()
    with (
        httpx.Client(base_url=served.base_url, timeout=10) as c,
        c.stream(
            "POST", f"{GRID}/Subscribe", content=subscribe_body("endless"), headers=headers
        ) as r,
    ):
        # Read by hand: leaving a `for` over iter_raw() would close the connection.
        chunks = r.iter_raw()
        received = b""
        while len(frames_prefix(received)) < len(ENCODED):
            received += next(chunks)
        assert endpoint.stream_opened.is_set()
        # All messages arrived and the stream now idles, open on the server.
        time.sleep(0.2)
        assert not endpoint.stream_closed.is_set()
    # Leaving the blocks closes the connection mid-stream.
    assert endpoint.stream_closed.wait(5), "the endpoint's iterator was not closed"


def frames_prefix(body: bytes) -> list[bytes]:
    """The complete envelopes at the start of a partial body."""
    out = []
    while len(body) >= 5:
        _, length = struct.unpack_from(">BI", body)
        if len(body) < 5 + length:
            break
        out.append(body[5 : 5 + length])
        body = body[5 + length :]
    return out


def test_server_shutdown_ends_streams_with_unavailable() -> None:
    """A stopping server closes subscriptions and tells clients, rather than cutting them."""
    endpoint = FakeEndpoint()
    app = create_http_app(endpoint, FakeAuthenticator(), is_ready=lambda: True)
    with (
        uvicorn_in_thread(app, graceful=1) as (base_url, server),
        httpx.Client(base_url=base_url, timeout=10) as c,
        c.stream(
            "POST", f"{GRID}/Subscribe", content=subscribe_body("endless"), headers=STREAM_PROTO
        ) as r,
    ):
        chunks = r.iter_raw()
        received = b""
        while len(frames_prefix(received)) < len(ENCODED):
            received += next(chunks)
        server.should_exit = True
        received += b"".join(chunks)  # until the server ends the response
        assert endpoint.stream_closed.wait(5)
    got = frames(received)
    assert got[-1][0] == 2
    assert json.loads(got[-1][1])["error"]["code"] == "unavailable"


@pytest.mark.parametrize(
    ("origin", "loopback"),
    [
        (None, True),  # not a browser: a local process
        ("http://localhost:3000", True),  # a page served from this machine
        ("http://127.0.0.1:8080", True),
        ("https://evil.example", False),  # any web site the user happens to visit
    ],
)
def test_browser_pages_from_elsewhere_get_no_loopback_privileges(
    client: httpx.Client, served: Served, origin: str | None, loopback: bool
) -> None:
    headers = dict(CONNECT_PROTO)
    if origin is not None:
        headers["origin"] = origin
    client.post(f"{GRID}/ListGrids", content=b"", headers=headers)
    assert served.authenticator.seen[-1] == ("Bearer good", loopback)


def test_listed_origins_keep_loopback_privileges() -> None:
    authenticator = FakeAuthenticator()
    app = create_http_app(
        FakeEndpoint(),
        authenticator,
        is_ready=lambda: True,
        allowed_origins=["https://addin.example"],
    )
    with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url) as c:
        for origin in ("https://addin.example", "https://evil.example"):
            c.post(f"{GRID}/ListGrids", content=b"", headers={**CONNECT_PROTO, "origin": origin})
    assert [loopback for _, loopback in authenticator.seen] == [True, False]
