"""The real browser-side client (connect-es, tests/excel/node) against the HTTP transport.

A transport test: the `ServiceAPI` behind the uvicorn-served ASGI app is a fake
that plays a scripted subscription (schema, a snapshot in two chunks, deltas, a
heartbeat, then idles until the client leaves), so the exact grid the client builds
is known. It checks that connect-es, over Connect (binary and JSON) and gRPC-Web,
understands our framing, errors and value encoding. Needs Node.js and npm: skipped
without them, except under CI=true where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, Iterator

import pytest
import uvicorn
from google.protobuf.timestamp_pb2 import Timestamp

from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import Caller
from aerogrid.server.web import create_http_app
from aerogrid.v1 import catalog_pb2, grid_pb2
from support.paths import REPO

pytestmark = pytest.mark.node

NODE_DIR = REPO / "tests" / "excel" / "node"
EXCEL = REPO / "excel"
TOKEN = "s3cret"


def ts(seconds: int, nanos: int) -> grid_pb2.Value:
    return grid_pb2.Value(timestamp_value=Timestamp(seconds=seconds, nanos=nanos))


def row(key: str, *cells: grid_pb2.Value) -> grid_pb2.Row:
    return grid_pb2.Row(key=key, cells=list(cells))


COLUMNS = ["qty", "px", "name", "live", "amount", "at", "note"]
V = grid_pb2.Value
SUBSCRIPTION = [
    grid_pb2.SubscribeResponse(
        schema=grid_pb2.Schema(
            app="demo", grid="orders", columns=[grid_pb2.Column(name=c) for c in COLUMNS]
        )
    ),
    grid_pb2.SubscribeResponse(
        snapshot=grid_pb2.Snapshot(
            seq=10,
            rows=[
                row(
                    "A",
                    V(int_value=2**60),
                    V(float_value=1.25),
                    V(string_value="alpha"),
                    V(bool_value=True),
                    V(decimal_value="12.50"),
                    ts(1_700_000_000, 123_000_000),
                    V(),
                ),
                row("B", V(int_value=-7), V(float_value=float("nan"))),
            ],
        )
    ),
    grid_pb2.SubscribeResponse(
        snapshot=grid_pb2.Snapshot(
            seq=10,
            rows=[row("C", V(int_value=0), V(float_value=-0.5), V(string_value="ünïcode"))],
            complete=True,
        )
    ),
    grid_pb2.SubscribeResponse(
        delta=grid_pb2.Delta(
            seq=11,
            upserts=[
                row(
                    "A",
                    V(int_value=3),
                    V(float_value=2.5),
                    V(string_value="alpha"),
                    V(bool_value=False),
                    V(decimal_value="0.000001"),
                    ts(0, 1),
                    V(string_value="x"),
                )
            ],
        )
    ),
    grid_pb2.SubscribeResponse(heartbeat=grid_pb2.Heartbeat(seq=11)),
    grid_pb2.SubscribeResponse(delta=grid_pb2.Delta(seq=12, deletes=["B"])),
    grid_pb2.SubscribeResponse(
        delta=grid_pb2.Delta(seq=13, upserts=[row("D", V(int_value=-(2**53) - 1))])
    ),
]

NULLS = dict.fromkeys(COLUMNS)
SNAPSHOT_GRID = {
    "rows": {
        "A": {
            "qty": "1152921504606846976",  # beyond 2^53: a string, not a rounded Number
            "px": 1.25,
            "name": "alpha",
            "live": True,
            "amount": "12.50",
            "at": "2023-11-14T22:13:20.123Z",
            "note": None,
        },
        "B": {**NULLS, "qty": -7, "px": "NaN"},
        "C": {**NULLS, "qty": 0, "px": -0.5, "name": "ünïcode"},
    },
    "seq": 10,
    "updates": 0,
}
FINAL_GRID = {
    "rows": {
        "A": {
            "qty": 3,
            "px": 2.5,
            "name": "alpha",
            "live": False,
            "amount": "0.000001",
            "at": "1970-01-01T00:00:00.000000001Z",
            "note": "x",
        },
        "C": SNAPSHOT_GRID["rows"]["C"],  # type: ignore[index]
        "D": {**NULLS, "qty": "-9007199254740993"},
    },
    "seq": 13,
    "updates": 3,
}


class ScriptedEndpoint:
    """Plays SUBSCRIPTION for grid 'orders' to callers with the token, then idles."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, caller: Caller
    ) -> grid_pb2.ListGridsResponse:
        return grid_pb2.ListGridsResponse()

    def subscribe(
        self, request: grid_pb2.SubscribeRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        if (request.app, request.grid) != ("demo", "orders"):
            raise ServiceError(Code.NOT_FOUND, f"no grid {request.app}/{request.grid}")
        return self._play()

    async def _play(self) -> AsyncGenerator[bytes, None]:
        try:
            for message in SUBSCRIPTION:
                yield message.SerializeToString()
            await asyncio.Event().wait()
        finally:
            self.closed.set()

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, caller: Caller
    ) -> catalog_pb2.ListAppsResponse:
        app = catalog_pb2.AppInfo(name="demo", tenant="acme", status=catalog_pb2.APP_STATUS_RUNNING)
        return catalog_pb2.ListAppsResponse(apps=[app])

    def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        raise ServiceError(Code.UNAVAILABLE, "not in this test")


class TokenAuthenticator:
    async def authenticate(self, authorization: str | None, *, peer_is_loopback: bool) -> Caller:
        if authorization != f"Bearer {TOKEN}":
            raise ServiceError(Code.UNAUTHENTICATED, "a valid bearer token is required")
        return Caller(subject="tester", tenants=frozenset({"acme"}))


@contextlib.contextmanager
def serve_in_thread(app: object) -> Iterator[str]:
    """Runs `app` under a real uvicorn server on 127.0.0.1 (a free port); yields its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def endpoint() -> ScriptedEndpoint:
    return ScriptedEndpoint()


@pytest.fixture(scope="module")
def base_url(endpoint: ScriptedEndpoint) -> Iterator[str]:
    app = create_http_app(endpoint, TokenAuthenticator(), is_ready=lambda: True)
    with serve_in_thread(app) as url:
        yield url


def stream_grid(node: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node, str(NODE_DIR / "stream_grid.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def grid_of(result: subprocess.CompletedProcess[str]) -> object:
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout  # exactly one JSON line
    return json.loads(lines[0])


PROTOCOLS = [
    pytest.param(["--protocol", "connect"], id="connect-binary"),
    pytest.param(["--protocol", "connect", "--format", "json"], id="connect-json"),
    pytest.param(["--protocol", "grpcweb"], id="grpcweb-binary"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_updates_build_the_exact_grid(
    node: str, base_url: str, endpoint: ScriptedEndpoint, protocol: list[str]
) -> None:
    endpoint.closed.clear()
    common = ["--base-url", base_url, "--app", "demo", "--grid", "orders", "--token", TOKEN]
    result = stream_grid(node, *common, "--updates", "3", "--timeout-ms", "20000", *protocol)
    assert grid_of(result) == FINAL_GRID
    # The client left mid-stream; the server closed the endpoint's subscription.
    assert endpoint.closed.wait(5)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_until_rows_stops_after_the_snapshot(node: str, base_url: str, protocol: list[str]) -> None:
    common = ["--base-url", base_url, "--app", "demo", "--grid", "orders", "--token", TOKEN]
    result = stream_grid(node, *common, "--until-rows", "3", "--timeout-ms", "20000", *protocol)
    assert grid_of(result) == SNAPSHOT_GRID


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_errors_exit_non_zero_with_the_reason(
    node: str, base_url: str, protocol: list[str]
) -> None:
    common = ["--base-url", base_url, "--app", "demo", "--timeout-ms", "20000", *protocol]
    result = stream_grid(node, *common, "--grid", "orders")  # no token
    assert result.returncode == 1
    assert result.stdout == ""
    assert "ListApps failed: [Unauthenticated] a valid bearer token is required" in result.stderr

    result = stream_grid(node, *common, "--grid", "nope", "--token", TOKEN)
    assert result.returncode == 1
    assert "Subscribe failed: [NotFound] no grid demo/nope" in result.stderr


def test_missing_app_times_out_with_what_it_saw(node: str, base_url: str) -> None:
    args = ["--base-url", base_url, "--app", "ghost", "--grid", "g", "--token", TOKEN]
    result = stream_grid(node, *args, "--timeout-ms", "700")
    assert result.returncode == 1
    assert "timed out after 700 ms" in result.stderr
    assert "does not list ghost (apps: demo)" in result.stderr


def test_waits_for_a_server_that_is_not_up_yet(node: str, endpoint: ScriptedEndpoint) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    args = ["--base-url", url, "--app", "demo", "--grid", "orders", "--token", TOKEN]
    client = subprocess.Popen(
        [node, str(NODE_DIR / "stream_grid.mjs"), *args, "--until-rows", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.7)  # the client is retrying against a closed port
        app = create_http_app(endpoint, TokenAuthenticator(), is_ready=lambda: True)
        with serve_on_port(app, port):
            out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, err
    assert json.loads(out) == SNAPSHOT_GRID


@contextlib.contextmanager
def serve_on_port(app: object, port: int) -> Iterator[None]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_bad_arguments_exit_2(node: str) -> None:
    result = stream_grid(node, "--app", "demo")
    assert result.returncode == 2
    assert "--base-url is required" in result.stderr
    result = stream_grid(
        node, "--base-url", "http://x", "--app", "a", "--grid", "g", "--updates", "x"
    )
    assert result.returncode == 2


def test_generated_code_is_up_to_date(node: str) -> None:
    """The client reads the add-in's generated code, which regenerating from proto/ leaves as is."""
    imported = re.findall(r'from "([^"]+_pb\.js)"', (NODE_DIR / "stream_grid.mjs").read_text())
    assert sorted(imported) == [
        "../../../excel/dist/gen/aerogrid/v1/catalog_pb.js",
        "../../../excel/dist/gen/aerogrid/v1/grid_pb.js",
    ]
    copies = [p for p in NODE_DIR.rglob("*_pb.*") if "node_modules" not in p.parts]
    assert copies == [], "tests/excel/node keeps no copy of the generated code"
    # The runtime libraries are the ones the add-in's code was generated for.
    ours = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]
    addin = json.loads((EXCEL / "package.json").read_text())["dependencies"]
    assert ours == {name: addin.get(name) for name in ours}
    npm = shutil.which("npm")
    assert npm is not None  # the node fixture found it
    check = subprocess.run(
        [npm, "run", "--silent", "check-gen"],
        cwd=EXCEL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
