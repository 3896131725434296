"""HTTP/2 on the devkit's one port: Connect and gRPC-Web over h2c and h2, gRPC in TLS.

The front routes an HTTP/2 connection by its first request's content type (native
gRPC, or the browser protocols), and terminates TLS itself offering ALPN h2 and
http/1.1. One LocalServer with no apps (the catalog's calls and its WatchApps stream
are the gateway's own, so no broker is needed) on a free port, with the development
certificate made in a temporary folder. Clients: httpx over HTTP/2 (prior knowledge,
and in TLS), GridClient and grpcio (plain and in TLS) and the real grpcurl.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import struct
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
import pytest_asyncio
from grpc import aio
from h2.config import H2Configuration
from h2.connection import H2Connection

from aerogrid.client import GridClient
from aerogrid.v1 import catalog_pb2, catalog_pb2_grpc
from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.local_server.http2 import SERVER_PREFACE
from aerogrid_devkit.supervisor import Supervisor
from support.grpcurl import Grpcurl, grpcurl_binary

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]

CATALOG = "/aerogrid.v1.CatalogService"
CONNECT = {"connect-protocol-version": "1"}
SNIFF_TIMEOUT = 1.0


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def endpoint(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalServer]:
    served = LocalServer(
        Supervisor({}, "127.0.0.1:1"),
        port=0,
        sniff_timeout=SNIFF_TIMEOUT,
        devcert_dir=tmp_path_factory.mktemp("devcert"),
    )
    async with served:
        assert served.devcert is not None, served.tls_problem
        yield served


def ca_context(endpoint: LocalServer) -> ssl.SSLContext:
    assert endpoint.devcert is not None
    return ssl.create_default_context(cafile=str(endpoint.devcert.ca_cert))


def client_preface() -> bytes:
    """An HTTP/2 client's preface and SETTINGS (h2, as a client)."""
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    return client.data_to_send()


def envelope(payload: bytes, flags: int = 0) -> bytes:
    return struct.pack(">BI", flags, len(payload)) + payload


# --- through the port -----------------------------------------------------------------------


async def test_connect_unary_and_server_stream_over_h2c(endpoint: LocalServer) -> None:
    before = endpoint.connections.http2
    async with httpx.AsyncClient(
        base_url=endpoint.url, http1=False, http2=True, timeout=10
    ) as http:
        r = await http.post(f"{CATALOG}/ListApps", json={}, headers=CONNECT)
        assert (r.http_version, r.status_code, r.json()) == ("HTTP/2", 200, {})
        request = envelope(b"{}")
        headers = {"content-type": "application/connect+json", **CONNECT}
        async with http.stream(
            "POST", f"{CATALOG}/WatchApps", content=request, headers=headers
        ) as response:
            assert response.http_version == "HTTP/2" and response.status_code == 200
            assert response.headers["content-type"] == "application/connect+json"
            first = b""
            async for chunk in response.aiter_bytes():
                first += chunk
                if len(first) >= 5 and len(first) >= 5 + struct.unpack_from(">I", first, 1)[0]:
                    break  # one message in, the stream still open
        flags, length = struct.unpack_from(">BI", first)
        assert flags == 0 and json.loads(first[5 : 5 + length]) == {"initial": True}
        # gRPC-Web over h2c goes to the same server, not to native gRPC
        reply = await http.post(
            f"{CATALOG}/ListApps",
            content=envelope(catalog_pb2.ListAppsRequest().SerializeToString()),
            headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
        )
        assert reply.status_code == 200 and reply.http_version == "HTTP/2"
        assert reply.headers["content-type"].startswith("application/grpc-web")
        assert b"grpc-status:0" in reply.content.replace(b" ", b"")
    assert endpoint.connections.http2 == before + 1  # one connection for all three


async def test_native_grpc_still_works_and_is_told_the_settings_first(
    endpoint: LocalServer,
) -> None:
    before = endpoint.connections.grpc
    async with GridClient(endpoint.address) as client:
        assert await client.apps() == []
    assert endpoint.connections.grpc == before + 1
    # grpc-go and grpcio wait for the server's SETTINGS before their first call: the front
    # sends its own at once, and a connection with no call goes to native gRPC in time.
    reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
    try:
        writer.write(client_preface())  # no request
        assert await asyncio.wait_for(reader.readexactly(9), 2) == SERVER_PREFACE
        settings = await asyncio.wait_for(reader.readexactly(9), SNIFF_TIMEOUT + 3)
        assert settings[3] == 0x4  # the gRPC server's own SETTINGS: it has the connection
    finally:
        writer.close()
    assert endpoint.connections.grpc == before + 2


async def test_tls_offers_h2_and_http11(endpoint: LocalServer) -> None:
    for offered, chosen in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1")):
        context = ca_context(endpoint)
        context.set_alpn_protocols(offered)
        _, writer = await asyncio.open_connection(
            "localhost", endpoint.port, ssl=context, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == chosen
        writer.close()


async def test_connect_over_h2_in_tls(endpoint: LocalServer) -> None:
    tls, http2 = endpoint.connections.tls, endpoint.connections.http2
    async with httpx.AsyncClient(
        base_url=endpoint.https_url or "", verify=ca_context(endpoint), http2=True, timeout=10
    ) as http:
        r = await http.post(f"{CATALOG}/ListApps", json={}, headers=CONNECT)
        assert (r.http_version, r.status_code, r.json()) == ("HTTP/2", 200, {})
        assert (await http.get("/healthz")).text == "ok\n"
    assert (endpoint.connections.tls, endpoint.connections.http2) == (tls + 1, http2 + 1)


async def test_grpc_in_tls(endpoint: LocalServer) -> None:
    assert endpoint.devcert is not None
    before = endpoint.connections.grpc
    # grpcio's TLS (BoringSSL) cannot check the development CA's IP-address name
    # constraints ("unsupported name constraint type"), so it trusts the server's own
    # certificate here; grpcurl below checks the whole chain from the CA.
    credentials = grpc.ssl_channel_credentials(endpoint.devcert.cert.read_bytes())
    async with aio.secure_channel(f"localhost:{endpoint.port}", credentials) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        assert await stub.ListApps(catalog_pb2.ListAppsRequest(), timeout=10) == (
            catalog_pb2.ListAppsResponse()
        )
    assert endpoint.connections.grpc == before + 1


async def test_grpcurl_over_tls(endpoint: LocalServer) -> None:
    assert endpoint.devcert is not None
    binary = grpcurl_binary()
    address = f"localhost:{endpoint.port}"
    for flags in (("-insecure",), ("-cacert", str(endpoint.devcert.ca_cert))):
        grpcurl = Grpcurl(binary, address, flags)
        listed = await asyncio.to_thread(grpcurl.ok, "list")
        assert "aerogrid.v1.CatalogService" in listed.split()
        answer = await asyncio.to_thread(grpcurl.call, "aerogrid.v1.CatalogService/ListApps")
        assert answer == [{}]
