"""The schema registry test bed: the real Apicurio Registry speaks the Confluent API as the
reference client (confluent-kafka's SchemaRegistryClient) expects, keeps ids over restarts, and
refuses wrong basic credentials with its own authentication."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from aerogrid.schemas.errors import RegistryAuthError
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings
from support.schema_registry import TestRegistry


def _order_schema(*extra_fields: Mapping[str, object]) -> Schema:
    fields: list[Mapping[str, object]] = [
        {"name": "id", "type": "string"},
        {"name": "qty", "type": "long"},
        *extra_fields,
    ]
    schema = {"type": "record", "name": "Order", "namespace": "bed", "fields": fields}
    return Schema(json.dumps(schema), "AVRO")


def test_register_fetch_and_ids_survive_a_restart(
    schema_registry: TestRegistry, unique_name: str
) -> None:
    client = SchemaRegistryClient({"url": schema_registry.url})
    subject = f"{unique_name}-value"
    v1 = client.register_schema(subject, _order_schema())
    assert client.register_schema(subject, _order_schema()) == v1  # same schema, same id
    v2 = client.register_schema(
        subject, _order_schema({"name": "note", "type": ["null", "string"], "default": None})
    )
    assert v2 != v1
    assert json.loads(client.get_schema(v1).schema_str or "")["fields"][1]["name"] == "qty"
    assert client.get_latest_version(subject).schema_id == v2

    schema_registry.stop()
    try:
        # confluent-kafka 2.16 raises its vendored httpx2's ConnectError: match the cause's text.
        with pytest.raises(Exception, match="Connection refused"):
            SchemaRegistryClient({"url": schema_registry.url, "max.retries": 0}).get_schema(v1)
    finally:
        schema_registry.start()

    fresh = SchemaRegistryClient({"url": schema_registry.url})
    assert json.loads(fresh.get_schema(v2).schema_str or "")["fields"][2]["name"] == "note"
    assert fresh.get_latest_version(subject).schema_id == v2
    assert fresh.lookup_schema(subject, _order_schema()).schema_id == v1

    # A crash (SIGKILL, no shutdown) right after a registration keeps it too: H2 writes through.
    v3 = fresh.register_schema(
        subject, _order_schema({"name": "size", "type": "long", "default": 1})
    )
    schema_registry.kill()
    schema_registry.start()
    after_crash = SchemaRegistryClient({"url": schema_registry.url})
    assert after_crash.get_latest_version(subject).schema_id == v3
    assert after_crash.get_schema(v1).schema_str == client.get_schema(v1).schema_str


def test_incompatible_schema_is_refused(schema_registry: TestRegistry, unique_name: str) -> None:
    """Apicurio's ccompat answers 409 (its body says error_code 0, Confluent's 409)."""
    client = SchemaRegistryClient({"url": schema_registry.url})
    subject = f"{unique_name}-value"
    client.register_schema(subject, _order_schema())
    client.set_compatibility(subject, "BACKWARD")
    required = {"name": "region", "type": "string"}  # no default: old records cannot be read
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, _order_schema(required))
    assert refused.value.http_status_code == 409


def test_basic_auth_is_the_registrys_own(auth_registry: TestRegistry, unique_name: str) -> None:
    """Right credentials work; wrong or none get 401 from the registry itself (via its OIDC)."""
    assert auth_registry.issuer is not None
    user_info = f"{auth_registry.username}:{auth_registry.password}"
    client = SchemaRegistryClient(
        {
            "url": auth_registry.url,
            "basic.auth.user.info": user_info,
        }
    )
    schema_id = client.register_schema(f"{unique_name}-value", _order_schema())
    assert client.get_schema(schema_id).schema_type == "AVRO"
    refusals = auth_registry.issuer.refusals

    wrong = SchemaRegistryClient(
        {
            "url": auth_registry.url,
            # A password no other test used: the registry caches what the issuer said about
            # a pair of credentials, refusals included, so a repeat never reaches the issuer.
            "basic.auth.user.info": f"{auth_registry.username}:wrong-{unique_name}",
            "max.retries": 0,
        }
    )
    with pytest.raises(SchemaRegistryError) as refused:
        wrong.get_subjects()
    assert refused.value.http_status_code == 401
    assert auth_registry.issuer.refusals == refusals + 1  # the issuer said no, not a proxy

    anonymous = SchemaRegistryClient({"url": auth_registry.url, "max.retries": 0})
    with pytest.raises(SchemaRegistryError) as missing:
        anonymous.get_subjects()
    assert missing.value.http_status_code == 401


async def test_wrong_password_is_a_clear_error_in_our_client(auth_registry: TestRegistry) -> None:
    """aerogrid.schemas' client: a 401 is RegistryAuthError naming the URL and the variables."""
    settings = RegistrySettings(
        url=auth_registry.url, username=auth_registry.username, password="not-the-password"
    )
    async with SchemaRegistry(settings) as registry:
        with pytest.raises(RegistryAuthError) as refused:
            await registry.check()
    message = str(refused.value)
    assert "AEROGRID_SCHEMA_REGISTRY_USERNAME" in message
    assert "AEROGRID_SCHEMA_REGISTRY_PASSWORD" in message
    assert f"127.0.0.1:{auth_registry.port}" in message

    right = RegistrySettings(
        url=auth_registry.url, username=auth_registry.username, password=auth_registry.password
    )
    async with SchemaRegistry(right) as registry:
        await registry.check()


async def test_https_only_registry(unique_name: str) -> None:
    """A TLS registry: the reference client and ours connect with the CA; plain HTTP gets no API."""
    registry = TestRegistry(tls=True)
    try:
        registry.start()
        assert registry.url.startswith("https://") and registry.cafile is not None
        client = SchemaRegistryClient(
            {"url": registry.url, "ssl.ca.location": str(registry.cafile)}
        )
        schema_id = client.register_schema(f"{unique_name}-value", _order_schema())
        settings = RegistrySettings(url=registry.url, cafile=str(registry.cafile))
        async with SchemaRegistry(settings) as ours:
            assert (await ours.schema_by_id(schema_id)).schema_type == "AVRO"
        plain = registry.url.replace("https://", "http://")
        with pytest.raises(Exception, match=r"Server disconnected|Connection reset|RemoteProtocol"):
            SchemaRegistryClient({"url": plain, "max.retries": 0}).get_subjects()
    finally:
        registry.close()
