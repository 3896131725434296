"""Protobuf topics in an app, through the processor and the real registry (AppTester).

Orders written by confluent-kafka's `ProtobufSerializer` (the reference client) reach a
handler as a protoc-generated message on one topic and as a Record on another; records the
codec cannot read are dead-lettered with the reason; `send()` on a Protobuf topic writes
what the reference `ProtobufDeserializer` reads.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import aerogrid
from aerogrid.testing import AppTester
from support.protobuf_shop import SHOP_PROTO, an_order, compile_proto, message_classes
from support.schema_registry import TestRegistry


class Order(aerogrid.Record):
    """shop.v1.Order by field names."""

    id: str
    quantity: int
    status: str
    at: datetime


def written(
    shop: dict[str, Any], registry: SchemaRegistryClient, topic: str, quantities: list[int]
) -> list[tuple[str, bytes]]:
    """(key, value) pairs as the reference serializer writes them."""
    serializer = ProtobufSerializer(shop["Order"], registry, {"use.deprecated.format": False})
    records = []
    for number, quantity in enumerate(quantities):
        order = an_order(shop)
        order.id, order.quantity = f"o{number}", quantity
        value = serializer(order, SerializationContext(topic, MessageField.VALUE))
        assert isinstance(value, bytes)
        records.append((order.id, value))
    return records


async def test_protobuf_orders_as_generated_messages_and_as_records(
    schema_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    shop: dict[str, Any] = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    reference = SchemaRegistryClient({"url": schema_registry.url})
    app = aerogrid.App(unique_name)
    generated = app.topic(f"{unique_name}-gen", value_type=shop["Order"], format="protobuf")
    records = app.topic(f"{unique_name}-rec", value_type=Order, format="protobuf")
    echoes = app.topic(f"{unique_name}-echo", value_type=shop["Order"], format="protobuf")
    units = app.Grid("units", columns=["units"], default=lambda: {"units": 0})

    @app.stream(generated)
    async def count_generated(orders: aerogrid.StreamInput) -> None:
        async for order in orders:
            units["generated"] = {"units": units["generated"]["units"] + order.quantity}
            await echoes.send(order.id, order)

    @app.stream(records)
    async def count_records(orders: aerogrid.StreamInput) -> None:
        async for order in orders:
            assert isinstance(order, Order) and order.status == "PAID"
            units["records"] = {"units": units["records"]["units"] + order.quantity}

    on_generated = written(shop, reference, generated.name, [1, 2, 3])
    on_records = written(shop, reference, records.name, [10, 20])
    refund = shop["Refund"](order_id="o9").SerializeToString()
    schema_id = on_generated[0][1][1:5]
    bad = [
        ("refund", b"\x00" + schema_id + b"\x02\x02" + refund),  # another message of the file
        ("index", b"\x00" + schema_id + b"\x02\x08" + refund),  # message index [4]: none
    ]
    async with AppTester(app, schema_registry=schema_registry.url) as tester:
        await tester.send_many(generated, [*on_generated, *bad])
        await tester.send_many(records, on_records)

    assert dict(units.items()) == {"generated": {"units": 6}, "records": {"units": 30}}
    reasons = {letter.key: dict(letter.headers)["aerogrid-error"] for letter in tester.dead_letters}
    assert reasons.keys() == {b"refund", b"index"}
    assert b"is a shop.v1.Refund" in reasons[b"refund"]
    assert b"message index [4] is not in the writer schema" in reasons[b"index"]

    read = ProtobufDeserializer(shop["Order"], {"use.deprecated.format": False})
    context = SerializationContext(echoes.name, MessageField.VALUE)
    echoed = [read(record.value, context) for record in tester.sent]
    assert [(o.id, o.quantity) for o in echoed] == [("o0", 1), ("o1", 2), ("o2", 3)]
