"""The registry client: settings, and which error each failure becomes.

Statuses come from an httpx MockTransport (the client's mapping is what is tested);
connection refused, timeouts and TLS use real loopback sockets. The client against a
real registry (Apicurio): tests/runtime/integration/test_schemas_avro_registry.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.errors import (
    RegistryAuthError,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaRegistryError,
    SchemaRejected,
)
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings, no_registry
from support.tls import make_test_pki

URL = "http://registry.invalid/apis/ccompat/v7"
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


def client(handler: Handler, **settings: Any) -> SchemaRegistry:
    return SchemaRegistry(
        RegistrySettings(url=URL, **settings), transport=httpx.MockTransport(handler)
    )


def answering(status: int, body: Any = None) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    return handle


# --- settings -------------------------------------------------------------------------


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AEROGRID_SCHEMA_REGISTRY": "https://registry.example:8081/apis/ccompat/v7/",
        "AEROGRID_SCHEMA_REGISTRY_USERNAME": "app",
        "AEROGRID_SCHEMA_REGISTRY_PASSWORD": "s3cret",
        "AEROGRID_SCHEMA_REGISTRY_CAFILE": "/ca.pem",
        "AEROGRID_SCHEMA_REGISTRY_CERTFILE": "/client.pem",
        "AEROGRID_SCHEMA_REGISTRY_KEYFILE": "/client.key",
        "AEROGRID_SCHEMA_REGISTRY_VERIFY": "false",
    }.items():
        monkeypatch.setenv(name, value)
    settings = RegistrySettings.from_env()
    assert settings == RegistrySettings(
        url="https://registry.example:8081/apis/ccompat/v7",
        username="app",
        password="s3cret",
        cafile="/ca.pem",
        certfile="/client.pem",
        keyfile="/client.key",
        verify=False,
    )
    assert "s3cret" not in repr(settings)
    explicit = RegistrySettings.from_env("http://other:8081")
    assert explicit.url == "http://other:8081"


def test_credentials_in_the_url_move_out_of_it() -> None:
    settings = RegistrySettings(url="https://app:p%40ss@registry.example/api")
    assert (settings.url, settings.username, settings.password) == (
        "https://registry.example/api",
        "app",
        "p@ss",
    )


def test_no_registry_configured_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AEROGRID_SCHEMA_REGISTRY", raising=False)
    with pytest.raises(ConfigurationError, match="AEROGRID_SCHEMA_REGISTRY") as missing:
        RegistrySettings.from_env()
    assert str(missing.value) == no_registry()  # the runtime's one wording


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "registry:8081"}, "is not http"),
        ({"url": "ftp://registry"}, "is not http"),
        ({"url": "http://registry", "username": "app"}, "AEROGRID_SCHEMA_REGISTRY_PASSWORD"),
    ],
)
def test_bad_settings_are_configuration_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RegistrySettings(**settings)


# --- answers and the errors they become -------------------------------------------------


async def test_schema_by_id_reads_type_text_and_references() -> None:
    body = {
        "schema": 'syntax = "proto3";',
        "schemaType": "PROTOBUF",
        "references": [{"name": "common.proto", "subject": "common", "version": 2}],
    }
    schema = await client(answering(200, body)).schema_by_id(5)
    assert (schema.schema_id, schema.schema_type, schema.schema) == (5, "PROTOBUF", body["schema"])
    assert [(r.name, r.subject, r.version) for r in schema.references] == [
        ("common.proto", "common", 2)
    ]
    avro = await client(answering(200, {"schema": '"string"'})).schema_by_id(6)
    assert avro.schema_type == "AVRO"  # Confluent leaves the type out for Avro


async def test_the_subjects_of_an_id() -> None:
    asked: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return httpx.Response(200, json=[{"subject": "orders-value", "version": 2}])

    async with client(handle) as registry:
        assert await registry.subjects_of(7) == ["orders-value"]
    assert asked == ["/apis/ccompat/v7/schemas/ids/7/versions"]
    async with client(answering(200, {"subject": "x"})) as registry:
        with pytest.raises(SchemaRegistryError, match="other than a list"):
            await registry.subjects_of(7)


@pytest.mark.parametrize("status", [401, 403])
async def test_refused_credentials_name_the_url_and_the_variables(status: int) -> None:
    registry = client(
        answering(status, {"error_code": status, "message": "Unauthorized"}),
        username="app",
        password="wrong-password",
    )
    with pytest.raises(RegistryAuthError) as caught:
        await registry.check()
    message = str(caught.value)
    assert URL in message and f"HTTP {status}" in message
    assert "AEROGRID_SCHEMA_REGISTRY_USERNAME" in message
    assert "AEROGRID_SCHEMA_REGISTRY_PASSWORD" in message
    assert "wrong-password" not in message
    assert isinstance(caught.value, ConfigurationError)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_server_errors_and_throttling_are_unavailability(status: int) -> None:
    with pytest.raises(RegistryUnavailable, match=f"HTTP {status}"):
        await client(answering(status, {"error_code": 50001, "message": "x"})).schema_by_id(1)


async def test_missing_ids_and_subjects_are_not_found() -> None:
    with pytest.raises(SchemaNotFound, match="schema id 9") as caught:
        await client(answering(404, {"error_code": 40403, "message": "no"})).schema_by_id(9)
    assert caught.value.schema_id == 9
    # Apicurio's code for a subject with no versions (Confluent says 40401).
    with pytest.raises(SchemaNotFound, match="latest schema of subject 'orders-value'"):
        await client(answering(404, {"error_code": 40402, "message": "no"})).latest("orders-value")


@pytest.mark.parametrize(("status", "code"), [(409, 0), (409, 409), (422, 42201)])
async def test_a_refused_registration_carries_the_registrys_reason(status: int, code: int) -> None:
    handler = answering(status, {"error_code": code, "message": "READER_FIELD_MISSING_DEFAULT"})
    with pytest.raises(SchemaRejected) as caught:
        await client(handler).register("orders-value", '"string"')
    assert caught.value.subject == "orders-value"
    assert "READER_FIELD_MISSING_DEFAULT" in caught.value.reason


async def test_a_url_that_is_not_the_compatible_api_says_so() -> None:
    with pytest.raises(SchemaRegistryError, match="/apis/ccompat/v7"):
        await client(answering(404, {"message": "RESTEASY003210"})).check()

    async def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    with pytest.raises(SchemaRegistryError, match="not JSON"):
        await client(html).check()


async def test_ids_are_asked_once_even_by_many_at_once_and_failures_are_not_cached() -> None:
    asked: list[str] = []
    statuses = [503, 200]

    async def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        await asyncio.sleep(0.05)
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, json={"schema": '"string"'})

    registry = client(handle)
    with pytest.raises(RegistryUnavailable):
        await registry.schema_by_id(3)
    results = await asyncio.gather(*(registry.schema_by_id(3) for _ in range(10)))
    assert {r.schema for r in results} == {'"string"'}
    await registry.schema_by_id(3)
    assert asked == ["/apis/ccompat/v7/schemas/ids/3"] * 2


async def test_registration_sends_the_type_and_references_and_is_cached() -> None:
    sent: list[dict[str, Any]] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        assert request.url.raw_path == b"/apis/ccompat/v7/subjects/a%2Fb-value/versions"
        assert request.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
        return httpx.Response(200, json={"id": 11})

    registry = client(handle)
    assert await registry.register("a/b-value", "{}", "JSON") == 11
    assert await registry.register("a/b-value", "{}", "JSON") == 11
    assert await registry.register("a/b-value", '"string"') == 11
    assert sent == [{"schema": "{}", "schemaType": "JSON"}, {"schema": '"string"'}]
    assert (await registry.schema_by_id(11)).schema == "{}"  # known from registering


async def test_basic_auth_is_sent() -> None:
    async def handle(request: httpx.Request) -> httpx.Response:
        expected = "Basic " + base64.b64encode(b"app:s3cret").decode()
        if request.headers.get("authorization") != expected:
            return httpx.Response(401, json={"error_code": 401, "message": "Unauthorized"})
        return httpx.Response(200, json=[])

    await client(handle, username="app", password="s3cret").check()


# --- real sockets -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_connection_refused_is_unavailability() -> None:
    registry = SchemaRegistry(RegistrySettings(url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        await registry.schema_by_id(1)
    await registry.aclose()


async def serve(
    answer: bytes | None, context: ssl.SSLContext | None = None
) -> tuple[asyncio.Server, int]:
    """A loopback server that answers every request with `answer` (None: never answers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer is None:
                await reader.read()  # hold the connection until the client gives up
            else:
                writer.write(answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port: int = server.sockets[0].getsockname()[1]
    return server, port


@pytest.fixture
async def servers() -> AsyncIterator[list[asyncio.Server]]:
    started: list[asyncio.Server] = []
    yield started
    for server in started:
        server.close()
        await server.wait_closed()


OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n[]"


async def test_a_registry_that_does_not_answer_times_out_as_unavailability(
    servers: list[asyncio.Server],
) -> None:
    server, port = await serve(None)
    servers.append(server)
    registry = SchemaRegistry(RegistrySettings(url=f"http://127.0.0.1:{port}"), timeout=0.3)
    with pytest.raises(RegistryUnavailable, match="unreachable for the subject list: ReadTimeout"):
        await registry.check()
    await registry.aclose()


async def test_tls_with_the_ca_and_a_client_certificate(
    servers: list[asyncio.Server], tmp_path: Path
) -> None:
    pki = make_test_pki(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca_cert))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS
    server, port = await serve(OK, context)
    servers.append(server)
    url = f"https://127.0.0.1:{port}"
    trusted = RegistrySettings(
        url=url,
        cafile=str(pki.ca_cert),
        certfile=str(pki.client_cert),
        keyfile=str(pki.client_key),
    )
    async with SchemaRegistry(trusted) as registry:
        await registry.check()
    async with SchemaRegistry(RegistrySettings(url=url)) as untrusting:
        with pytest.raises(RegistryAuthError, match="AEROGRID_SCHEMA_REGISTRY_CAFILE"):
            await untrusting.check()


async def test_a_cancelled_caller_does_not_cancel_the_fetch_others_wait_for() -> None:
    asked: list[str] = []
    release = asyncio.Event()

    async def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        await release.wait()
        return httpx.Response(200, json={"schema": '"long"'})

    registry = client(handle)
    impatient = asyncio.create_task(registry.schema_by_id(4))
    patient = asyncio.create_task(registry.schema_by_id(4))
    await asyncio.sleep(0.05)
    impatient.cancel()
    release.set()
    assert (await patient).schema == '"long"'
    assert impatient.cancelled()
    assert (await registry.schema_by_id(4)).schema == '"long"'
    assert asked == ["/apis/ccompat/v7/schemas/ids/4"]
