"""Avro and the registry client against the real registry (Apicurio) and the reference client.

Records confluent-kafka's `AvroSerializer` writes (v1, then a v2 with an extra optional
field, then a v3 without a field the Record defaults) decode with our AvroCodec; what our
codec registers and sends, confluent-kafka's `AvroDeserializer` reads; the registry's own
answers (unknown id, incompatible schema, an outage) become our errors.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Annotated, Any

import httpx
import msgspec
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry import SchemaReference as ConfluentReference
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.records import Record
from aerogrid.schemas.codec import registry_codec
from aerogrid.schemas.errors import RegistryUnavailable, SchemaNotFound, SchemaRejected
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings
from aerogrid.schemas.wire import frame, parse_frame
from support.registry_codecs import decoded
from support.schema_registry import TestRegistry


class Order(Record):
    product: str
    quantity: int
    channel: str = "web"


def order_schema(fields: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"type": "record", "name": "Order", "namespace": "com.acme.orders", "fields": fields}
    )


BASE = [{"name": "product", "type": "string"}, {"name": "quantity", "type": "long"}]
V1 = order_schema([*BASE, {"name": "channel", "type": "string"}])
V2 = order_schema(
    [
        *BASE,
        {"name": "channel", "type": "string"},
        {"name": "coupon", "type": ["null", "string"], "default": None},
    ]
)
V3 = order_schema(BASE)


async def test_reference_writers_v1_v2_v3_decode_with_resolution(
    schema_registry: TestRegistry, registry_client: SchemaRegistry, unique_name: str
) -> None:
    reference = SchemaRegistryClient({"url": schema_registry.url})
    context = SerializationContext(unique_name, MessageField.VALUE)
    records = [
        AvroSerializer(reference, V1)(
            {"product": "apple", "quantity": 2, "channel": "shop"}, context
        ),
        AvroSerializer(reference, V2)(
            {"product": "pear", "quantity": 3, "channel": "app", "coupon": "X"}, context
        ),
        AvroSerializer(reference, V3)({"product": "plum", "quantity": 5}, context),
    ]
    ids = [parse_frame(data)[0] for data in records if data is not None]
    assert len(set(ids)) == 3  # three versions under `<topic>-value`
    codec = registry_codec("avro", Order, registry=registry_client, topic=unique_name)
    assert [await decoded(codec, data) for data in records] == [
        Order(product="apple", quantity=2, channel="shop"),
        Order(product="pear", quantity=3, channel="app"),
        Order(product="plum", quantity=5, channel="web"),
    ]
    as_written = registry_codec("avro", dict, registry=registry_client, topic=unique_name)
    assert await decoded(as_written, records[1]) == {
        "product": "pear",
        "quantity": 3,
        "channel": "app",
        "coupon": "X",
    }


async def test_what_we_send_the_reference_deserializer_reads(
    schema_registry: TestRegistry, registry_client: SchemaRegistry, unique_name: str
) -> None:
    codec = registry_codec("avro", Order, registry=registry_client, topic=unique_name)
    order = Order(product="fig", quantity=7)
    await codec.prepare_send(order)
    data = codec.encode(order)
    reference = SchemaRegistryClient({"url": schema_registry.url})
    latest = reference.get_latest_version(f"{unique_name}-value")
    assert data is not None and parse_frame(data)[0] == latest.schema_id
    context = SerializationContext(unique_name, MessageField.VALUE)
    assert AvroDeserializer(reference)(data, context) == {
        "product": "fig",
        "quantity": 7,
        "channel": "web",
    }

    # A dict value sends with the subject's latest schema (the one just registered).
    as_dict = registry_codec("avro", dict, registry=registry_client, topic=unique_name)
    value = {"product": "kiwi", "quantity": 1, "channel": "shop"}
    await as_dict.prepare_send(value)
    assert AvroDeserializer(reference)(as_dict.encode(value), context) == value


class Line(Record):
    sku: str
    price: Annotated[Decimal, msgspec.Meta(extra={"precision": 12, "scale": 2})]


class Invoice(Record):
    number: str
    issued: dt.datetime
    due: dt.date
    lines: list[Line]
    totals: dict[str, float]
    note: str | None = None
    paid: bool = False


async def test_rich_records_both_ways_with_the_reference_client(
    schema_registry: TestRegistry, registry_client: SchemaRegistry, unique_name: str
) -> None:
    """Logical types, nested records, arrays, maps and unions agree with confluent-kafka's."""
    invoice = Invoice(
        number="INV-1",
        issued=dt.datetime(2026, 12, 5, 9, 30, 0, 123456, tzinfo=dt.UTC),
        due=dt.date(2027, 1, 4),
        lines=[Line(sku="a", price=Decimal("9.99")), Line(sku="b", price=Decimal("-0.50"))],
        totals={"net": 9.49},
        note="rush",
    )
    codec = registry_codec("avro", Invoice, registry=registry_client, topic=unique_name)
    await codec.prepare_send(invoice)
    data = codec.encode(invoice)
    reference = SchemaRegistryClient({"url": schema_registry.url})
    context = SerializationContext(unique_name, MessageField.VALUE)
    assert AvroDeserializer(reference)(data, context) == invoice.to_dict()

    # The reference serializer writes the same record with the schema we registered.
    schema = reference.get_latest_version(f"{unique_name}-value").schema.schema_str
    written = AvroSerializer(reference, schema)(invoice.to_dict(), context)
    assert written is not None
    assert await decoded(codec, written) == invoice


class Address(Record):
    city: str


class Customer(Record):
    name: str
    home: Address


async def test_a_writer_schema_with_references_decodes(
    schema_registry: TestRegistry, registry_client: SchemaRegistry, unique_name: str
) -> None:
    """The writer's Address lives under a subject of its own; the Customer schema references it."""
    reference = SchemaRegistryClient({"url": schema_registry.url})
    address = {
        "type": "record",
        "name": "Address",
        "namespace": "com.acme",
        "fields": [{"name": "city", "type": "string"}],
    }
    reference.register_schema(f"{unique_name}-address", Schema(json.dumps(address), "AVRO"))
    customer = {
        "type": "record",
        "name": "Customer",
        "namespace": "com.acme",
        "fields": [
            {"name": "name", "type": "string"},
            {"name": "home", "type": "com.acme.Address"},
        ],
    }
    with_reference = Schema(
        json.dumps(customer),
        "AVRO",
        references=[ConfluentReference("com.acme.Address", f"{unique_name}-address", 1)],
    )
    context = SerializationContext(unique_name, MessageField.VALUE)
    data = AvroSerializer(reference, with_reference)(
        {"name": "Ada", "home": {"city": "Paris"}}, context
    )
    codec = registry_codec("avro", Customer, registry=registry_client, topic=unique_name)
    assert await decoded(codec, data) == Customer(name="Ada", home=Address(city="Paris"))


async def test_an_id_the_registry_does_not_have_is_a_decode_error(
    registry_client: SchemaRegistry, unique_name: str
) -> None:
    with pytest.raises(SchemaNotFound):
        await registry_client.schema_by_id(987654)
    codec = registry_codec("avro", Order, registry=registry_client, topic=unique_name)
    with pytest.raises(DecodeError, match="schema id 987654 is not in the registry"):
        await decoded(codec, frame(987654, b"\x02a\x02\x02c"))
    with pytest.raises(SchemaNotFound):
        await registry_client.latest(f"{unique_name}-nothing")
    as_dict = registry_codec("avro", dict, registry=registry_client, topic=f"{unique_name}-nothing")
    with pytest.raises(ConfigurationError, match="has none: register one"):
        await as_dict.prepare_send({"product": "a"})


async def test_an_incompatible_schema_is_rejected_with_the_registrys_reason(
    schema_registry: TestRegistry, registry_client: SchemaRegistry, unique_name: str
) -> None:
    subject = f"{unique_name}-value"
    await registry_client.register(subject, V1)
    async with httpx.AsyncClient() as http:
        answer = await http.put(
            f"{schema_registry.url}/config/{subject}", json={"compatibility": "BACKWARD"}
        )
        answer.raise_for_status()
    required = order_schema([*BASE, {"name": "region", "type": "string"}])
    with pytest.raises(SchemaRejected) as rejected:
        await registry_client.register(subject, required)
    assert rejected.value.subject == subject
    assert rejected.value.reason


async def test_an_outage_is_unavailability_and_the_same_client_recovers(
    schema_registry: TestRegistry, registry_client: SchemaRegistry, unique_name: str
) -> None:
    schema_id = await registry_client.register(f"{unique_name}-value", V2)
    schema_registry.stop()
    try:
        fresh = SchemaRegistry(RegistrySettings(url=schema_registry.url))
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            await fresh.schema_by_id(schema_id)
    finally:
        schema_registry.start()
    assert (await fresh.schema_by_id(schema_id)).schema == (
        await registry_client.schema_by_id(schema_id)
    ).schema
    await fresh.aclose()
