"""The schema registry test bed: the real Apicurio Registry speaks the Confluent API as the
reference client (confluent-kafka's SchemaRegistryClient) expects, and keeps ids over restarts."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

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
