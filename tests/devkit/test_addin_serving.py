"""The local endpoint serves the Excel add-in's files at /addin/, over HTTP and HTTPS, on its port.

One LocalServer (no apps: none are needed to serve files or list an empty catalog) on a
free port, with a temporary bundle folder and its development certificate made in a
temporary folder. Clients are real: httpx trusting only that CA (so the chain is checked
for localhost, 127.0.0.1 and ::1), raw sockets for request targets httpx would normalise
(`..`), and GridClient for native gRPC on the same port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from aerogrid.client import GridClient
from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.local_server.addin import (
    ADDIN_DIR_ENV,
    NOT_BUILT,
    AddinFiles,
    addin_bundle_dir,
)
from aerogrid_devkit.supervisor import Supervisor

pytestmark = pytest.mark.asyncio(loop_scope="module")

CONNECT_JSON = {"connect-protocol-version": "1"}
FILES = {
    "taskpane.html": (b"<!doctype html><title>AeroGrid</title>", "text/html; charset=utf-8"),
    "functions.js": (b"console.log('aerogrid');", "application/javascript; charset=utf-8"),
    "functions.json": (b'{"functions": []}', "application/json"),
    "functions.js.map": (b'{"version": 3}', "application/json"),
    "assets/taskpane.css": (b"body { margin: 0 }", "text/css; charset=utf-8"),
    "assets/icon-32.png": (b"\x89PNG\r\n\x1a\n" + bytes(24), "image/png"),
    "assets/logo.svg": (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
    "assets/data.bin": (b"\x00\x01", "application/octet-stream"),
}
SECRET = b"outside the bundle"


@dataclass
class Served:
    endpoint: LocalServer
    bundle: Path
    ca: Path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    base = tmp_path_factory.mktemp("addin")
    bundle = base / "bundle"
    for name, (body, _) in FILES.items():
        (bundle / name).parent.mkdir(parents=True, exist_ok=True)
        (bundle / name).write_bytes(body)
    (bundle / ".env").write_bytes(SECRET)
    (base / "secret.txt").write_bytes(SECRET)
    (bundle / "link-out.txt").symlink_to(base / "secret.txt")
    (bundle / "link-in.js").symlink_to(bundle / "functions.js")
    endpoint = LocalServer(
        Supervisor({}, "127.0.0.1:9"),
        port=0,
        sniff_timeout=2.0,
        devcert_dir=base / "devcert",
        addin_dir=bundle,
    )
    async with endpoint:
        assert endpoint.devcert is not None
        yield Served(endpoint, bundle, endpoint.devcert.ca_cert)


def trusting(ca: Path) -> ssl.SSLContext:
    """A client context that trusts the development CA only."""
    return ssl.create_default_context(cafile=str(ca))


def bases(s: Served) -> list[str]:
    """Every way to reach the port: http, and https by name, IPv4 and (if listening) IPv6."""
    port = s.endpoint.port
    urls = [s.endpoint.url, f"https://localhost:{port}", f"https://127.0.0.1:{port}"]
    if "::1" in s.endpoint.listening:
        urls.append(f"https://[::1]:{port}")
    return urls


async def test_files_over_http_and_https_with_their_types(served: Served) -> None:
    endpoint = served.endpoint
    assert endpoint.https_url == f"https://localhost:{endpoint.port}"
    assert endpoint.addin_url == f"https://localhost:{endpoint.port}/addin/"
    tls_before, served_before = endpoint.connections.tls, endpoint.addin_requests.served
    async with httpx.AsyncClient(verify=trusting(served.ca), timeout=10) as http:
        for base in bases(served):
            for name, (body, content_type) in FILES.items():
                r = await http.get(f"{base}/addin/{name}")
                assert r.status_code == 200, (base, name, r.text)
                assert r.content == body
                assert r.headers["content-type"] == content_type
                assert r.headers["cache-control"] == "no-cache"
                assert r.headers["x-content-type-options"] == "nosniff"
                assert r.headers["access-control-allow-origin"] == "*"
            index = await http.get(f"{base}/addin/")
            assert index.status_code == 200
            assert index.content == FILES["taskpane.html"][0]
            assert (await http.get(f"{base}/addin/link-in.js")).content == FILES["functions.js"][0]
            # /addin → /addin/, keeping the query (the task pane's ?endpoint=)
            moved = await http.get(f"{base}/addin?endpoint=x")
            assert moved.status_code == 308 and moved.headers["location"] == "/addin/?endpoint=x"
    https_count = len(bases(served)) - 1
    assert endpoint.connections.tls >= tls_before + https_count
    assert endpoint.addin_requests.served >= served_before + (len(FILES) + 2) * len(bases(served))


async def test_head_and_revalidation(served: Served) -> None:
    async with httpx.AsyncClient(
        base_url=served.endpoint.https_url or "", verify=trusting(served.ca), timeout=10
    ) as http:
        head = await http.head("/addin/functions.js")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(FILES["functions.js"][0]))
        etag = head.headers["etag"]
        same = await http.get("/addin/functions.js", headers={"if-none-match": etag})
        assert same.status_code == 304 and same.content == b""
        assert same.headers["cache-control"] == "no-cache"
        # a rebuilt file has a new tag: Excel gets the new bundle without a restart
        path = served.bundle / "functions.js"
        path.write_bytes(b"console.log('rebuilt');")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
        try:
            fresh = await http.get("/addin/functions.js", headers={"if-none-match": etag})
            assert fresh.status_code == 200 and fresh.content == b"console.log('rebuilt');"
        finally:
            path.write_bytes(FILES["functions.js"][0])


async def raw_get(port: int, target: str, *, tls: ssl.SSLContext | None = None) -> bytes:
    """A request with the target exactly as given (httpx would remove `..`)."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
    )
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_nothing_outside_the_bundle_is_served(served: Served) -> None:
    tls = trusting(served.ca)
    refused_before = sum(served.endpoint.addin_requests.refused.values())
    targets = [
        "/addin/../secret.txt",
        "/addin/assets/../../secret.txt",
        "/addin/%2e%2e/secret.txt",
        "/addin/%2E%2E%2Fsecret.txt",
        "/addin/assets%2f..%2f..%2fsecret.txt",
        "/addin/..%5csecret.txt",
        "/addin//etc/passwd",
        "/addin/%2fetc%2fpasswd",
        f"/addin/{served.bundle.parent}/secret.txt",
        "/addin/link-out.txt",
        "/addin/.env",
        "/addin/assets/",
        "/addin/assets",
        "/addin/missing.js",
        "/addin/taskpane.html%00.js",
    ]
    for target in targets:
        for context in (None, tls):
            answer = await raw_get(served.endpoint.port, target, tls=context)
            assert answer.startswith(b"HTTP/1.1 404 "), (target, answer[:200])
            assert SECRET not in answer and b"root:" not in answer
            assert b"x-content-type-options: nosniff" in answer.lower()
    refused = served.endpoint.addin_requests.refused
    assert sum(refused.values()) == refused_before + 2 * len(targets)
    assert refused["bad_path"] >= 2 and refused["not_found"] >= 2


async def test_other_methods_are_405_and_other_paths_go_to_connect(served: Served) -> None:
    async with httpx.AsyncClient(
        base_url=served.endpoint.https_url or "", verify=trusting(served.ca), timeout=10
    ) as http:
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            r = await http.request(method, "/addin/taskpane.html", content=b"x")
            assert r.status_code == 405, method
            assert r.headers["allow"] == "GET, HEAD"
        assert (await http.get("/addinx")).status_code != 200  # not the bundle's
        assert (await http.get("/healthz")).text == "ok\n"


async def test_connect_and_grpc_on_the_same_port(served: Served) -> None:
    endpoint = served.endpoint
    async with httpx.AsyncClient(verify=trusting(served.ca), timeout=10) as http:
        for base in bases(served):
            r = await http.post(
                f"{base}/aerogrid.v1.CatalogService/ListApps", json={}, headers=CONNECT_JSON
            )
            assert r.status_code == 200, (base, r.text)
            assert r.json() == {}  # no apps: an empty catalog
    async with GridClient(endpoint.address) as client:
        assert await client.apps() == []
    # a client that does not trust the development CA is refused by its own checks
    async with httpx.AsyncClient(timeout=10) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"{endpoint.https_url}/addin/")


async def test_a_bundle_not_built_says_how_to_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def connect_app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("the add-in's paths never reach the Connect app")

    app = AddinFiles(connect_app, lambda: tmp_path / "not-built")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        for path in ("/addin/", "/addin/functions.js"):
            r = await http.get(path)
            assert r.status_code == 404 and r.text == NOT_BUILT + "\n"
            assert 'run "make excel"' in r.text and ADDIN_DIR_ENV in r.text
    assert app.counts.refused["not_built"] == 2

    monkeypatch.setenv(ADDIN_DIR_ENV, str(tmp_path / "mine"))
    assert addin_bundle_dir() == tmp_path / "mine"
    monkeypatch.delenv(ADDIN_DIR_ENV)
    found = addin_bundle_dir()
    assert found is None or found.is_dir()


async def test_without_a_certificate_tls_is_refused_and_http_still_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the certificate folder should be")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "taskpane.html").write_bytes(b"hello")
    with caplog.at_level(logging.WARNING):
        endpoint = LocalServer(
            Supervisor({}, "127.0.0.1:9"), port=0, devcert_dir=blocker, addin_dir=bundle
        )
        async with endpoint:
            assert endpoint.https_url is None and endpoint.addin_url is None
            assert endpoint.tls_problem is not None and str(blocker) in endpoint.tls_problem
            assert endpoint.addin_status() == endpoint.tls_problem
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await raw_get(endpoint.port, "/addin/", tls=ssl.create_default_context())
            assert endpoint.connections.rejected["tls"] == 1
            async with httpx.AsyncClient(base_url=endpoint.url, timeout=10) as http:
                assert (await http.get("/addin/")).content == b"hello"
    assert any(str(blocker) in record.getMessage() for record in caplog.records)

    off = LocalServer(Supervisor({}, "127.0.0.1:9"), port=0, tls=False)
    async with off:
        assert off.https_url is None and off.tls_problem is None
        reader, writer = await asyncio.open_connection("127.0.0.1", off.port)
        writer.write(bytes([0x16, 0x03, 0x01, 0x00, 0x05]) + os.urandom(5))
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, no answer
        writer.close()
        assert off.connections.rejected["tls"] == 1


async def test_the_status_line_for_dev_and_demo(served: Served) -> None:
    line = served.endpoint.addin_status()
    assert line.startswith(f"Excel add-in on https://localhost:{served.endpoint.port}/addin/")
    assert "new development CA" in line  # made by this endpoint: the user must trust it
    assert "not built" not in line
