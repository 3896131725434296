"""The devkit's one local endpoint, against real app processes on the embedded broker.

One workspace (two orders apps whose declared names differ from their workspace keys,
and one app that crashes at import) runs under a real Supervisor for the whole module,
behind one LocalServer on a free port. Every client goes through that one port:
GridClient (native gRPC), httpx speaking Connect (plain, and over HTTPS with the
development certificate, made in a temporary folder), and the Node connect-es client
over Connect and gRPC-Web (and Connect over HTTPS). Tests that change the workspace
(reload, stop) leave it running. The add-in's files are tested in test_addin_serving.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import struct
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

from aerogrid import metrics
from aerogrid.client import ClientRow, GridClient, GridClientError
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import Caller
from aerogrid.v1 import catalog_pb2, catalog_pb2_grpc, grid_pb2
from aerogrid_devkit.local_server import LocalServer, PortInUseError
from aerogrid_devkit.local_server.front import HTTP2_PREFACE, Rejected, Route, classify
from aerogrid_devkit.supervisor import Supervisor
from support.apps import produce, write_orders_app
from support.brokers import Broker
from support.node import STREAM_GRID
from support.workspace import supervised_endpoint, wait_for

pytestmark = pytest.mark.asyncio(loop_scope="module")

GRID = "product_sum"
CATALOG = "/aerogrid.v1.CatalogService"
GRID_SERVICE = "/aerogrid.v1.GridService"
Rows = dict[str, ClientRow]


@dataclass
class Workspace:
    supervisor: Supervisor
    endpoint: LocalServer
    bootstrap: str
    #: workspace key -> the name the app declares (what clients use)
    names: dict[str, str]
    #: workspace key -> its input topic
    topics: dict[str, str]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def ws(tansu: Broker, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Workspace]:
    base = tmp_path_factory.mktemp("workspace")
    tag = uuid.uuid4().hex[:8]
    files: dict[str, Path] = {}
    names: dict[str, str] = {}
    topics: dict[str, str] = {}
    for key in ("alpha", "beta"):
        folder = base / key
        folder.mkdir()
        names[key] = f"{key}-{tag}"
        topics[key] = f"{key}-{tag}-orders"
        files[key] = write_orders_app(folder, names[key], topics[key], partitions=1)
    (base / "broken").mkdir()
    files["broken"] = base / "broken" / "app.py"
    files["broken"].write_text("import aerogrid\nraise RuntimeError('broken on purpose')\n")
    async with supervised_endpoint(
        files,
        tansu.bootstrap,
        running=names,
        sniff_timeout=2.0,
        devcert_dir=tmp_path_factory.mktemp("devcert"),
    ) as (supervisor, endpoint):
        yield Workspace(supervisor, endpoint, tansu.bootstrap, names, topics)
    assert all(
        a.process is None or a.process.returncode is not None for a in supervisor.apps.values()
    )


def orders(prefix: str, count: int, products: int = 3) -> list[tuple[bytes | None, bytes | None]]:
    return [
        (
            f"{prefix}-o{i}".encode(),
            json.dumps({"product": f"{prefix}-p{i % products}", "quantity": i % 5 + 1}).encode(),
        )
        for i in range(count)
    ]


def totals(records: list[tuple[bytes | None, bytes | None]]) -> Rows:
    rows: Rows = {}
    for _, value in records:
        assert value is not None
        order = json.loads(value)
        row = rows.setdefault(order["product"], {"units_sold": 0, "orders": 0})
        row["units_sold"] += order["quantity"]
        row["orders"] += 1
    return rows


def only(rows: Rows, prefix: str) -> Rows:
    return {k: v for k, v in rows.items() if k.startswith(prefix + "-")}


def holds(prefix: str, want: Rows) -> Callable[[Rows], bool]:
    return lambda rows: only(rows, prefix) == want


async def follow(
    client: GridClient, app: str, until: Callable[[Rows], bool], seen: list[bool] | None = None
) -> Rows:
    """Subscribe through the endpoint until `until(rows)`; `seen` records each update's kind."""
    rows: Rows = {}
    async for update in client.subscribe(app, GRID):
        rows = update.apply_to(rows)
        if seen is not None:
            seen.append(update.snapshot)
        if until(rows):
            return rows
    raise AssertionError("the subscription ended")


# --- native gRPC -------------------------------------------------------------------------


async def test_grpc_client_lists_both_apps_and_streams_each(ws: Workspace) -> None:
    alpha, beta = ws.names["alpha"], ws.names["beta"]
    sent = {key: orders(f"grpc-{key}", 30) for key in ws.names}
    for key, records in sent.items():
        await produce(ws.bootstrap, ws.topics[key], records)
    async with GridClient(f"localhost:{ws.endpoint.port}") as client:
        apps = {app.name: app for app in await client.apps()}
        assert {alpha, beta} <= set(apps)
        for name in (alpha, beta):
            assert apps[name].status == "running" and apps[name].tenant == "default"
            assert [g.name for g in apps[name].grids] == [GRID]
        # the crash-looping app is listed as failed, with its last words
        await wait_for(lambda: ws.supervisor.apps["broken"].status == "crashed")
        broken = {app.name: app for app in await client.apps()}["broken"]
        assert broken.status == "failed" and "broken on purpose" in broken.message
        grids = {(g.app, g.name) for g in await client.grids()}
        assert {(alpha, GRID), (beta, GRID)} <= grids
        assert [g.app for g in await client.grids(beta)] == [beta]

        for key, name in ws.names.items():
            want = totals(sent[key])
            prefix = f"grpc-{key}"
            rows = await asyncio.wait_for(follow(client, name, holds(prefix, want)), 30)
            assert only(rows, prefix) == want

    # Both loopbacks listen, so `localhost` works whichever one a client resolves it to.
    if socket.has_ipv6 and "::1" in ws.endpoint.listening:
        async with GridClient(f"[::1]:{ws.endpoint.port}") as client:
            assert alpha in {app.name for app in await client.apps()}
    else:
        assert ws.endpoint.listening == ["127.0.0.1"]

    async with aio.insecure_channel(ws.endpoint.address) as channel:
        response = await catalog_pb2_grpc.CatalogServiceStub(channel).ListApps(
            catalog_pb2.ListAppsRequest()
        )
    assert {a.endpoint for a in response.apps} == {""}  # served here, as catalog.proto says
    # The stream is the app's own bytes, passed through: the same as straight from the app.
    request = grid_pb2.SubscribeRequest(app=alpha, grid=GRID).SerializeToString()
    direct = f"127.0.0.1:{ws.supervisor.apps['alpha'].ports['grpc']}"
    firsts = []
    for target in (direct, ws.endpoint.address):
        async with aio.insecure_channel(target) as channel:
            call = channel.unary_stream(
                "/aerogrid.v1.GridService/Subscribe",
                request_serializer=None,
                response_deserializer=None,
            )(request)
            firsts.append([await call.read(), await call.read()])
            call.cancel()
    assert firsts[0] == firsts[1]  # schema (with the app's epoch) and snapshot, byte for byte
    assert ws.endpoint.connections.grpc >= 2


async def test_watch_apps_starts_with_each_grids_current_rows_and_seq(ws: Workspace) -> None:
    """WatchApps' first message is as current as ListApps' answer, with no call before it."""
    key, name = "alpha", ws.names["alpha"]
    sent = orders("watched", 12, products=4)
    await produce(ws.bootstrap, ws.topics[key], sent)
    async with GridClient(ws.endpoint.address) as client:
        await asyncio.wait_for(follow(client, name, holds("watched", totals(sent))), 30)
    # The truth, straight from the app's own port.
    async with aio.insecure_channel(f"127.0.0.1:{ws.supervisor.apps[key].ports['grpc']}") as app:
        truth = await catalog_pb2_grpc.CatalogServiceStub(app).ListApps(
            catalog_pb2.ListAppsRequest()
        )
    want = [(g.name, g.rows, g.seq) for a in truth.apps if a.name == name for g in a.grids]
    assert want and want[0][1] >= 4 and want[0][2] > 0
    async with aio.insecure_channel(ws.endpoint.address) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        call = stub.WatchApps(catalog_pb2.WatchAppsRequest())
        first = await asyncio.wait_for(call.read(), 10)
        call.cancel()
        assert isinstance(first, catalog_pb2.WatchAppsResponse)
        listed = await stub.ListApps(catalog_pb2.ListAppsRequest())
    for answer in (first, listed):
        (info,) = [a for a in answer.apps if a.name == name]
        assert info.status == catalog_pb2.APP_STATUS_RUNNING
        assert [(g.name, g.rows, g.seq) for g in info.grids] == want
    assert first.initial


async def test_unknown_app_is_not_found_naming_the_apps(ws: Workspace) -> None:
    async with GridClient(ws.endpoint.address) as client:
        with pytest.raises(GridClientError) as caught:
            await client.snapshot("no-such-app", GRID)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        for name in (*ws.names.values(), "broken"):
            assert name in caught.value.message
        assert "no-such-app" in caught.value.message
        # an unknown grid of a known app: the app's own answer, passed on
        with pytest.raises(GridClientError) as caught:
            await client.snapshot(ws.names["alpha"], "nope")
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
        assert "nope" in caught.value.message
        # an app that is not running: UNAVAILABLE, saying why
        with pytest.raises(GridClientError) as caught:
            await client.snapshot("broken", GRID)
        assert caught.value.code == grpc.StatusCode.UNAVAILABLE
        assert "not running" in caught.value.message
    async with httpx.AsyncClient(base_url=ws.endpoint.url, timeout=10) as http:
        r = await http.post(
            f"{GRID_SERVICE}/ListGrids", json={"app": "no-such-app"}, headers=CONNECT_JSON
        )
    assert r.status_code == 404
    assert r.json()["code"] == "not_found" and ws.names["beta"] in r.json()["message"]


async def test_another_tenants_app_is_as_unknown_as_one_that_does_not_exist(
    ws: Workspace,
) -> None:
    outsider = Caller(subject="eve", tenants=frozenset({"initech"}))
    gateway = ws.endpoint.gateway
    before = cross_tenant_refusals()
    answers = []
    for app in (ws.names["alpha"], "no-such-app"):
        for call in (
            gateway.list_grids(grid_pb2.ListGridsRequest(app=app), outsider),
            anext(gateway.subscribe(grid_pb2.SubscribeRequest(app=app, grid=GRID), outsider)),
        ):
            with pytest.raises(ServiceError) as caught:
                await call
            answers.append((caught.value.code, caught.value.message.replace(app, "APP")))
    assert answers[0] == (Code.NOT_FOUND, "no app named 'APP' in this workspace; apps: none")
    assert answers[:2] == answers[2:]  # code and message alike
    assert cross_tenant_refusals() == before + 2  # still counted, without the app's name


def cross_tenant_refusals() -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "aerogrid_auth_failures_total", {"reason": "cross_tenant"}
    )
    return sample or 0.0


async def test_metrics_on_the_one_port_are_for_local_callers_only(ws: Workspace) -> None:
    async with httpx.AsyncClient(base_url=ws.endpoint.url, timeout=10) as http:
        assert (await http.get("/metrics")).status_code == 200
        # A web page of another site, in the local user's browser: no token, no metrics.
        page = await http.get("/metrics", headers={"origin": "https://evil.example"})
        assert page.status_code == 401
        assert ws.names["alpha"] not in page.text


async def test_metrics_on_the_one_port_hold_every_running_apps_samples(ws: Workspace) -> None:
    """A Prometheus scrape of the local endpoint gets the apps' numbers, labelled by app."""
    name = ws.names["beta"]
    sent = orders("scraped", 5)
    await produce(ws.bootstrap, ws.topics["beta"], sent)
    async with GridClient(ws.endpoint.address) as client:
        await asyncio.wait_for(follow(client, name, holds("scraped", totals(sent))), 30)
    async with httpx.AsyncClient(base_url=ws.endpoint.url, timeout=10) as http:
        answer = await http.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    families = list(text_string_to_metric_families(answer.text))
    assert all(family.samples for family in families)  # no name without numbers
    names = [family.name for family in families]
    assert len(names) == len(set(names))  # each metric once, the apps' samples merged
    samples = {
        (s.name, s.labels.get("app"), s.labels.get("grid")): s.value
        for family in families
        for s in family.samples
    }
    assert samples[("aerogrid_records_in_total", name, None)] >= 5
    assert samples[("aerogrid_grid_rows", name, GRID)] >= 3
    assert ("aerogrid_grid_rows", ws.names["alpha"], GRID) in samples  # every running app's
    # Series without an app label of their own are told apart by the app's workspace key.
    dropped = [
        s for f in families for s in f.samples if s.name.startswith("aerogrid_subscribers_dropped")
    ]
    assert {s.labels.get("app") for s in dropped} >= {"alpha", "beta"}


# --- Connect over HTTP/1.1, on the same port ----------------------------------------------

CONNECT_JSON = {"connect-protocol-version": "1"}


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


async def connect_stream(response: httpx.Response) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """(flags, JSON message) of each envelope of a Connect server stream, as they arrive."""
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while len(buffer) >= 5:
            flags, length = struct.unpack_from(">BI", buffer)
            if len(buffer) < 5 + length:
                break
            yield flags, json.loads(buffer[5 : 5 + length])
            buffer = buffer[5 + length :]


def json_cell(cell: dict[str, Any]) -> Any:
    return int(cell["intValue"]) if "intValue" in cell else next(iter(cell.values()), None)


async def test_connect_unary_and_server_stream_on_the_same_port(ws: Workspace) -> None:
    name = ws.names["beta"]
    sent = orders("connect", 12)
    await produce(ws.bootstrap, ws.topics["beta"], sent)
    want = totals(sent)
    async with httpx.AsyncClient(base_url=ws.endpoint.url, timeout=30) as http:
        r = await http.post(f"{CATALOG}/ListApps", json={}, headers=CONNECT_JSON)
        assert r.status_code == 200, r.text
        listed = {a["name"]: a for a in r.json()["apps"]}
        assert listed[name]["status"] == "APP_STATUS_RUNNING"
        assert "endpoint" not in listed[name]  # empty: served through this endpoint

        request = json.dumps({"app": name, "grid": GRID}).encode()
        headers = {"content-type": "application/connect+json", **CONNECT_JSON}
        rows: Rows = {}
        columns: list[str] = []
        async with http.stream(
            "POST", f"{GRID_SERVICE}/Subscribe", content=envelope(request), headers=headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/connect+json"
            async for flags, message in connect_stream(response):
                assert flags == 0, message  # no end-stream: it would carry an error here
                if "schema" in message:
                    columns = [c["name"] for c in message["schema"]["columns"]]
                changed = message.get("snapshot", {}).get("rows", []) + message.get(
                    "delta", {}
                ).get("upserts", [])
                for row in changed:
                    cells = [json_cell(c) for c in row.get("cells", [])]
                    rows[row["key"]] = dict(zip(columns, cells, strict=False))
                if only(rows, "connect") == want:
                    break
        assert only(rows, "connect") == want

        # The browser rules of the runtime hold here too: a page from a foreign origin
        # is not a loopback caller (no anonymous access); a local page is.
        foreign = await http.post(
            f"{CATALOG}/ListApps",
            json={},
            headers={**CONNECT_JSON, "origin": "https://evil.example"},
        )
        assert foreign.status_code == 401 and foreign.json()["code"] == "unauthenticated"
        local = await http.post(
            f"{CATALOG}/ListApps",
            json={},
            headers={**CONNECT_JSON, "origin": "https://localhost:3000"},
        )
        assert local.status_code == 200
        assert local.headers["access-control-allow-origin"] == "https://localhost:3000"
        assert (await http.get("/healthz")).text == "ok\n"
    assert ws.endpoint.connections.http >= 1


async def test_connect_over_https_on_the_same_port(ws: Workspace) -> None:
    """The add-in's pages come over HTTPS, so its data calls do too: the same app, in TLS."""
    name = ws.names["alpha"]
    assert ws.endpoint.devcert is not None and ws.endpoint.https_url is not None
    assert ws.endpoint.https_url == f"https://localhost:{ws.endpoint.port}"
    before = ws.endpoint.connections.tls
    ca = ssl.create_default_context(cafile=str(ws.endpoint.devcert.ca_cert))
    async with httpx.AsyncClient(base_url=ws.endpoint.https_url, verify=ca, timeout=30) as http:
        r = await http.post(f"{CATALOG}/ListApps", json={}, headers=CONNECT_JSON)
        assert r.status_code == 200, r.text
        assert r.http_version == "HTTP/1.1"
        assert {ws.names["alpha"], ws.names["beta"]} <= {a["name"] for a in r.json()["apps"]}
        request = envelope(json.dumps({"app": name, "grid": GRID}).encode())
        headers = {"content-type": "application/connect+json", **CONNECT_JSON}
        async with http.stream(
            "POST", f"{GRID_SERVICE}/Subscribe", content=request, headers=headers
        ) as response:
            assert response.status_code == 200
            kinds = []
            async for flags, message in connect_stream(response):
                assert flags == 0, message
                kinds.append(next(iter(message)))
                if "snapshot" in message:
                    break
        assert kinds[0] == "schema" and kinds[-1] == "snapshot"
        # the page's own origin is local: no token needed
        local = await http.post(
            f"{CATALOG}/ListApps",
            json={},
            headers={**CONNECT_JSON, "origin": ws.endpoint.https_url},
        )
        assert local.status_code == 200
    assert ws.endpoint.connections.tls >= before + 1


@pytest.mark.node
@pytest.mark.parametrize("protocol", ["connect", "grpcweb", "connect-https"])
async def test_node_client_through_the_same_port(ws: Workspace, node: str, protocol: str) -> None:
    prefix = f"node-{protocol}"
    env = dict(os.environ)
    base_url = ws.endpoint.url
    if protocol == "connect-https":
        assert ws.endpoint.devcert is not None and ws.endpoint.https_url is not None
        env["NODE_EXTRA_CA_CERTS"] = str(ws.endpoint.devcert.ca_cert)
        base_url, protocol = ws.endpoint.https_url, "connect"
    sent = orders(prefix, 20, products=4)
    await produce(ws.bootstrap, ws.topics["alpha"], sent)
    want = totals(sent)
    # Wait until the app has them, so the Node client's snapshot holds all four rows.
    async with GridClient(ws.endpoint.address) as client:
        await asyncio.wait_for(
            follow(client, ws.names["alpha"], lambda r: only(r, prefix) == want), 30
        )
    proc = await asyncio.create_subprocess_exec(
        node,
        str(STREAM_GRID),
        "--base-url",
        base_url,
        "--app",
        ws.names["alpha"],
        "--grid",
        GRID,
        "--protocol",
        protocol,
        "--timeout-ms",
        "30000",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 40)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode()
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    assert only(result["rows"], prefix) == want


# --- the app's life: reload, stop ----------------------------------------------------------


async def test_subscriber_survives_a_reload_and_converges(ws: Workspace) -> None:
    key, name = "alpha", ws.names["alpha"]
    first, later = orders("reload", 15), orders("reload", 30)[15:]
    await produce(ws.bootstrap, ws.topics[key], first)
    statuses: list[int] = []

    async def watch() -> None:
        async with aio.insecure_channel(ws.endpoint.address) as channel:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            async for response in stub.WatchApps(catalog_pb2.WatchAppsRequest()):
                statuses.extend(a.status for a in response.apps if a.name == name)

    watcher = asyncio.create_task(watch())
    seen: list[bool] = []
    async with GridClient(ws.endpoint.address, reconnect_delay=0.2) as client:
        follower = asyncio.create_task(
            follow(client, name, lambda r: only(r, "reload") == totals(first + later), seen)
        )
        await wait_for(lambda: sum(seen) >= 1, timeout=30)
        old_port = ws.supervisor.apps[key].ports["grpc"]
        ws.supervisor.reload(key)
        await produce(ws.bootstrap, ws.topics[key], later)
        rows = await asyncio.wait_for(follower, 60)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert only(rows, "reload") == totals(first + later)
    assert ws.supervisor.apps[key].ports["grpc"] != old_port
    # The new process keeps the grid's epoch (the changelog's lineage, "Replicas core"):
    # the client resumed from its (epoch, seq) with what it missed, not a new snapshot.
    assert client.resumes["delta"] >= 1 and not client.resumes["snapshot"], client.resumes
    assert seen.count(True) == 1
    running, starting = catalog_pb2.APP_STATUS_RUNNING, catalog_pb2.APP_STATUS_STARTING
    assert statuses[0] == running and starting in statuses and statuses[-1] == running


async def test_a_stopped_app_is_unavailable_then_back(ws: Workspace) -> None:
    key, name = "beta", ws.names["beta"]
    await ws.supervisor.stop_app(key)
    try:
        async with GridClient(ws.endpoint.address) as client:
            apps = {a.name: a for a in await client.apps()}
            assert apps[name].status == "stopped"
            assert [g.name for g in apps[name].grids] == [GRID]  # still known
            with pytest.raises(GridClientError) as caught:
                await client.snapshot(name, GRID)
            assert caught.value.code == grpc.StatusCode.UNAVAILABLE
            assert "stopped" in caught.value.message
    finally:
        ws.supervisor.start_app(key)
    sent = orders("back", 6)
    await produce(ws.bootstrap, ws.topics[key], sent)
    async with GridClient(ws.endpoint.address, reconnect_delay=0.2) as client:
        # subscribed while it starts: retried (UNAVAILABLE) until it serves again
        rows = await asyncio.wait_for(
            follow(client, name, lambda r: only(r, "back") == totals(sent)), 60
        )
    assert only(rows, "back") == totals(sent)


# --- the port itself -----------------------------------------------------------------------


async def raw_exchange(port: int, data: bytes, *, close_write: bool = True) -> bytes:
    """Send bytes to the port, then read what comes back until the endpoint closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if close_write:
            writer.write_eof()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_garbage_is_closed_and_counted_without_hurting_others(ws: Workspace) -> None:
    port = ws.endpoint.port
    before = ws.endpoint.connections.rejected.copy()
    garbage = b"\x00" + os.urandom(200)
    answer = await raw_exchange(port, garbage)
    assert answer.startswith(b"HTTP/1.1 400 ")
    # a request cut short by the client, and one that never finishes
    assert (
        await raw_exchange(port, b"POST /aerogrid.v1.CatalogService/ListApps HTTP/1.1\r\n") == b""
    )
    assert (
        await raw_exchange(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", close_write=False) == b""
    )
    # a broken TLS hello goes to the HTTPS server, which drops it (no HTTP answer)
    tls_before = ws.endpoint.connections.tls
    assert (
        await raw_exchange(port, bytes([0x16, 0x03, 0x01, 0x00, 0xA5, 0x01]) + os.urandom(40))
        == b""
    )
    assert ws.endpoint.connections.tls == tls_before + 1
    # half an HTTP/2 preface, then nothing
    assert await raw_exchange(port, HTTP2_PREFACE[:10]) == b""
    rejected = ws.endpoint.connections.rejected
    assert rejected["garbage"] == before["garbage"] + 1
    assert rejected["incomplete"] == before["incomplete"] + 2
    assert rejected["timeout"] == before["timeout"] + 1
    assert rejected["tls"] == before["tls"]  # served now, not refused
    # and the port still serves both protocols
    async with GridClient(ws.endpoint.address) as client:
        assert ws.names["alpha"] in {a.name for a in await client.apps()}
    async with httpx.AsyncClient(base_url=ws.endpoint.url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_classify_routes_by_the_first_bytes() -> None:
    assert classify(HTTP2_PREFACE[:5]) is None
    assert classify(HTTP2_PREFACE + b"\x00\x00") is None  # by its first request: see *_http2.py
    assert classify(b"POST /x HTTP/1.1\r\nHost: a\r\n") is None
    assert classify(b"POST /x HTTP/1.1\r\nHost: a\r\n\r\n{}") is Route.HTTP
    assert classify(b"OPTI") is None
    assert classify(b"\x16") is None
    assert classify(b"\x16\x03\x01\x02\x00") is Route.TLS
    for bad, reason in [
        (b"\x16\x01\x01", "garbage"),
        (b"hello\r\n", "garbage"),
        (b"GET / HTTP/2.0\r\n\r\n", "garbage"),
        (b"PRI * HTTP/2.0\r\n\r\nXX", "garbage"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n", "garbage"),
        (b"GET / HTTP/1.1\r\n" + b"x: y\r\n" * 20_000, "too_large"),
    ]:
        with pytest.raises(Rejected) as caught:
            classify(bad)
        assert caught.value.reason == reason, bad[:20]


async def test_port_in_use_and_non_loopback_hosts_are_refused(ws: Workspace) -> None:
    idle = Supervisor({}, ws.bootstrap)
    with pytest.raises(PortInUseError) as caught:
        await LocalServer(idle, port=ws.endpoint.port).start()
    assert (
        f"port {ws.endpoint.port} on 127.0.0.1 is in use (another aerogrid dev?) "
        "— set [endpoint] port in aerogrid.toml"
    ) in str(caught.value)
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(ValueError, match="loopback only"):
            LocalServer(idle, host=host)
    other = LocalServer(idle, host="localhost", port=0, tls=False)
    async with other:
        assert other.url == f"http://localhost:{other.port}"
        assert other.https_url is None and other.addin_url is None
        with socket.create_connection(("127.0.0.1", other.port)):
            pass
        async with GridClient(other.address) as client:
            assert await client.apps() == []
    await other.stop()  # a second stop is harmless
