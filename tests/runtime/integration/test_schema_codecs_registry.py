"""The Protobuf and JSON Schema codecs against the real registry and the reference client.

Both directions, through Apicurio Registry (the `schema_registry` fixture): records that
confluent-kafka's `ProtobufSerializer` / `JSONSerializer` write decode with our codecs,
and what our codecs register and send, confluent-kafka's deserializers read.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry import SchemaReference as ReferenceSchema
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.records import Record
from aerogrid.schemas.codec import registry_codec
from aerogrid.schemas.json_schema import record_json_schema
from aerogrid.schemas.registry import SchemaRegistry
from support.protobuf_shop import SHOP_PROTO, an_order, compile_proto, message_classes
from support.registry_codecs import decoded
from support.schema_registry import TestRegistry


class Line(Record):
    sku: str
    qty: int


class Order(Record):
    order_id: str
    quantity: int
    price: Decimal
    at: datetime
    note: str | None = None
    lines: list[Line] = []


ORDER = Order(
    order_id="o-1",
    quantity=3,
    price=Decimal("9.99"),
    at=datetime(2026, 12, 5, 9, tzinfo=UTC),
    lines=[Line(sku="A", qty=2)],
)


@pytest.fixture
def reference(schema_registry: TestRegistry) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": schema_registry.url})


@pytest.fixture
def topic() -> str:
    return f"codecs-{uuid.uuid4().hex[:8]}"


def context(topic: str) -> SerializationContext:
    return SerializationContext(topic, MessageField.VALUE)


async def test_protobuf_both_ways_with_the_reference_client(
    registry_client: SchemaRegistry, reference: SchemaRegistryClient, topic: str, tmp_path: Path
) -> None:
    shop: dict[str, Any] = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    order = an_order(shop)
    serializer = ProtobufSerializer(shop["Order"], reference, {"use.deprecated.format": False})
    written = serializer(order, context(topic))
    assert isinstance(written, bytes)
    codec = registry_codec("protobuf", shop["Order"], registry=registry_client, topic=topic)
    assert await decoded(codec, written) == order

    line_topic = f"{topic}-lines"
    line = shop["Order.Line"](sku="B", price=2.5)
    line_serializer = ProtobufSerializer(
        shop["Order.Line"], reference, {"use.deprecated.format": False}
    )
    line_written = line_serializer(line, context(line_topic))
    assert isinstance(line_written, bytes)
    line_codec = registry_codec(
        "protobuf", shop["Order.Line"], registry=registry_client, topic=line_topic
    )
    assert await decoded(line_codec, line_written) == line
    with pytest.raises(DecodeError, match=r"is a shop\.v1\.Order\.Line"):
        await decoded(codec, line_written)

    # Ours registers .proto text under `<topic>-value`; the reference deserializer reads it.
    ours_topic = f"{topic}-ours"
    sender = registry_codec("protobuf", shop["Order"], registry=registry_client, topic=ours_topic)
    await sender.prepare_send(order)
    sent = sender.encode(order)
    assert isinstance(sent, bytes)
    assert reference.get_latest_version(f"{ours_topic}-value").schema.schema_type == "PROTOBUF"
    deserializer = ProtobufDeserializer(shop["Order"], {"use.deprecated.format": False})
    read: Message = deserializer(sent, context(ours_topic))
    assert read == order
    assert await decoded(codec, sent) == order


class ShopOrder(Record):
    """shop.v1.Order's fields by name, as an app that has no generated code would read it."""

    id: str
    quantity: int
    tag_counts: dict[str, int]
    status: str
    at: datetime
    card: str | None = None


async def test_protobuf_records_through_the_registry(
    registry_client: SchemaRegistry, reference: SchemaRegistryClient, topic: str, tmp_path: Path
) -> None:
    shop: dict[str, Any] = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    serializer = ProtobufSerializer(shop["Order"], reference, {"use.deprecated.format": False})
    written = serializer(an_order(shop), context(topic))
    assert isinstance(written, bytes)
    codec = registry_codec("protobuf", ShopOrder, registry=registry_client, topic=topic)
    assert await decoded(codec, written) == ShopOrder(
        id="o-1",
        quantity=3,
        tag_counts={"rush": 2},
        status="PAID",
        at=datetime.fromtimestamp(1_700_000_000, UTC),
        card="4242",
    )

    # Ours registers its derived .proto (it imports Timestamp); protoc's class of it reads ours.
    ours_topic = f"{topic}-ours"
    sender = registry_codec("protobuf", Order, registry=registry_client, topic=ours_topic)
    await sender.prepare_send(ORDER)
    sent = sender.encode(ORDER)
    assert isinstance(sent, bytes)
    latest = reference.get_latest_version(f"{ours_topic}-value").schema
    assert latest.schema_type == "PROTOBUF" and latest.schema_str is not None
    compiled = compile_proto(tmp_path, "order.proto", latest.schema_str)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(compiled)
    order_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{compiled.package}.Order")
    )
    read: Any = ProtobufDeserializer(order_type, {"use.deprecated.format": False})(
        sent, context(ours_topic)
    )
    assert (read.order_id, read.quantity, read.price) == ("o-1", 3, "9.99")
    assert [(line.sku, line.qty) for line in read.lines] == [("A", 2)]
    assert (
        await decoded(
            registry_codec("protobuf", Order, registry=registry_client, topic=ours_topic), sent
        )
        == ORDER
    )


async def test_json_schema_both_ways_with_the_reference_client(
    registry_client: SchemaRegistry, reference: SchemaRegistryClient, topic: str
) -> None:
    document = json.loads(json.dumps(ORDER.to_dict(), default=str).replace("+00:00", "Z"))
    serializer = JSONSerializer(json.dumps(record_json_schema(Order)), reference)
    written = serializer(document, context(topic))
    assert isinstance(written, bytes)
    codec = registry_codec("json-schema", Order, registry=registry_client, topic=topic)
    assert await decoded(codec, written) == ORDER
    as_dict = registry_codec("json-schema", dict, registry=registry_client, topic=topic)
    assert await decoded(as_dict, written) == document

    ours_topic = f"{topic}-ours"
    sender = registry_codec("json-schema", Order, registry=registry_client, topic=ours_topic)
    await sender.prepare_send(ORDER)
    sent = sender.encode(ORDER)
    assert isinstance(sent, bytes)
    assert reference.get_latest_version(f"{ours_topic}-value").schema.schema_type == "JSON"
    deserializer = JSONDeserializer(None, schema_registry_client=reference)
    assert deserializer(sent, context(ours_topic)) == json.loads(sent[5:])
    assert await decoded(codec, sent) == ORDER


MONEY_PROTO = (
    'syntax = "proto3"; package money.v1; message Money { int64 cents = 1; string currency = 2; }'
)
PAYMENT_PROTO = """
syntax = "proto3";
package pay.v1;
import "money.proto";
message Payment { string id = 1; money.v1.Money amount = 2; }
"""


class Amount(Record):
    cents: int
    currency: str


class Payment(Record):
    id: str
    amount: Amount


async def test_protobuf_writer_schemas_with_references(
    registry_client: SchemaRegistry, reference: SchemaRegistryClient, topic: str, tmp_path: Path
) -> None:
    """The reference serializer registers money.proto as a schema of its own and the payment
    schema referencing it; a generated class and a Record both read its records."""
    money = compile_proto(tmp_path, "money.proto", MONEY_PROTO)
    payment_file = compile_proto(tmp_path, "payment.proto", PAYMENT_PROTO)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(money)
    pool.Add(payment_file)
    payment_type: Any = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("pay.v1.Payment")
    )
    payment = payment_type(id="p-1")
    payment.amount.cents, payment.amount.currency = 1250, "EUR"
    serializer = ProtobufSerializer(payment_type, reference, {"use.deprecated.format": False})
    written = serializer(payment, context(topic))
    assert isinstance(written, bytes)
    stored = reference.get_schema(int.from_bytes(written[1:5], "big"))
    assert [ref.name for ref in stored.references or []] == ["money.proto"]

    as_message = registry_codec("protobuf", payment_type, registry=registry_client, topic=topic)
    assert await decoded(as_message, written) == payment
    as_record = registry_codec("protobuf", Payment, registry=registry_client, topic=topic)
    assert await decoded(as_record, written) == Payment(
        id="p-1", amount=Amount(cents=1250, currency="EUR")
    )
    # Sending one needs references of our own, which we do not register yet: a clear refusal.
    with pytest.raises(ConfigurationError, match=r"imports money\.proto: schema references"):
        await as_message.prepare_send(payment)


CUSTOMER_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"name": {"type": "string"}, "tier": {"enum": ["gold", "silver"]}},
    "required": ["name", "tier"],
}
INVOICE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"id": {"type": "string"}, "customer": {"$ref": "customer.json"}},
    "required": ["id", "customer"],
}


class Customer(Record):
    name: str
    tier: str


class Invoice(Record):
    id: str
    customer: Customer


async def test_json_schema_writer_schemas_with_references(
    registry_client: SchemaRegistry, reference: SchemaRegistryClient, topic: str
) -> None:
    """A writer schema whose `$ref` names another registered schema (a reference): its
    records are validated through it, and one failing inside it names the path."""
    customer_subject = f"{topic}-customer"
    reference.register_schema(customer_subject, Schema(json.dumps(CUSTOMER_SCHEMA), "JSON"))
    version = reference.get_latest_version(customer_subject).version
    assert version is not None
    invoice_schema = Schema(
        json.dumps(INVOICE_SCHEMA),
        "JSON",
        [ReferenceSchema("customer.json", customer_subject, version)],
    )
    serializer = JSONSerializer(invoice_schema, reference)
    document = {"id": "i-1", "customer": {"name": "Ada", "tier": "gold"}}
    written = serializer(document, context(topic))
    assert isinstance(written, bytes)
    codec = registry_codec("json-schema", Invoice, registry=registry_client, topic=topic)
    assert await decoded(codec, written) == Invoice(
        id="i-1", customer=Customer(name="Ada", tier="gold")
    )
    invalid = (
        written[:5] + json.dumps({**document, "customer": {"name": "Bo", "tier": "tin"}}).encode()
    )
    with pytest.raises(DecodeError, match=r"does not match schema id \d+ at \$\.customer\.tier"):
        codec.decode(invalid)
