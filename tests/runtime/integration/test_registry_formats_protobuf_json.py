"""Protobuf and JSON Schema topics under `aerogrid run` on Apache Kafka with the real registry.

Refunds are written by confluent-kafka's ProtobufSerializer (from protoc's classes) and orders
by its JSONSerializer; the app reads both into Records (no generated code in the app), and
dead-letters a Protobuf frame naming a message the writer schema lacks and a document that
fails its writer schema.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from support.apps import RunningApp, produce, read_topic
from support.brokers import ApacheKafka
from support.orders import converged
from support.protobuf_shop import SHOP_PROTO, compile_proto, message_classes
from support.registry_apps import ORDER_JSON_SCHEMA, framed
from support.schema_registry import TestRegistry

pytestmark = pytest.mark.timeout(300)

APP = """
import aerogrid

app = aerogrid.App({app!r})

class Refund(aerogrid.Record):
    order_id: str
    reason: str

class Order(aerogrid.Record):
    product: str
    quantity: int

refunds = app.topic({refunds!r}, value_type=Refund, format="protobuf")
orders = app.topic({orders!r}, value_type=Order, format="json-schema")
reasons = app.Grid('reasons', columns=['refunds'], default=lambda: {{'refunds': 0}})
units = app.Grid('units', columns=['units'], default=lambda: {{'units': 0}})

@app.stream(refunds)
async def count_refunds(stream):
    async for refund in stream:
        reasons[refund.reason] = {{'refunds': reasons[refund.reason]['refunds'] + 1}}

@app.stream(orders)
async def sum_units(stream):
    async for order in stream:
        units[order.product] = {{'units': units[order.product]['units'] + order.quantity}}
"""


async def test_protobuf_and_json_schema_topics_on_kafka(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    refunds_topic, orders_topic = f"{unique_name}-refunds", f"{unique_name}-orders"
    path = tmp_path / f"{unique_name}.py"
    path.write_text(APP.format(app=unique_name, refunds=refunds_topic, orders=orders_topic))
    client = SchemaRegistryClient({"url": schema_registry.url})
    shop: dict[str, Any] = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    to_protobuf = ProtobufSerializer(shop["Refund"], client, {"use.deprecated.format": False})
    to_json = JSONSerializer(json.dumps(ORDER_JSON_SCHEMA), client)
    refund_context = SerializationContext(refunds_topic, MessageField.VALUE)
    order_context = SerializationContext(orders_topic, MessageField.VALUE)
    reasons = [("late", "damaged", "late", "wrong size")[i % 4] for i in range(120)]
    refunds: list[tuple[bytes | None, bytes | None]] = [
        (None, to_protobuf(shop["Refund"](order_id=f"o{i}", reason=r), refund_context))
        for i, r in enumerate(reasons)
    ]
    quantities = [(f"p{i % 5}", i % 9 + 1) for i in range(150)]
    orders: list[tuple[bytes | None, bytes | None]] = [
        (None, to_json({"product": p, "quantity": q}, order_context)) for p, q in quantities
    ]
    refund_value = refunds[0][1] or b""
    order_id = client.get_latest_version(f"{orders_topic}-value").schema_id
    assert order_id is not None
    # The Refund frame with message index [5] (its schema has two messages), and an order
    # whose quantity is a string.
    bad_refund = refund_value[:5] + b"\x02\x0a" + refund_value[6:]
    bad_order = framed(order_id, b'{"product": "p1", "quantity": "two"}')
    env = {"AEROGRID_SCHEMA_REGISTRY": schema_registry.url}
    with RunningApp(path, apache_kafka.bootstrap, env=env) as app:
        await produce(apache_kafka.bootstrap, refunds_topic, [*refunds, (b"bad", bad_refund)])
        await produce(apache_kafka.bootstrap, orders_topic, [(b"bad", bad_order), *orders])
        want_reasons = {r: {"refunds": n} for r, n in Counter(reasons).items()}
        got = await converged(app.target, unique_name, "reasons", want_reasons)
        assert got == want_reasons
        totals: Counter[str] = Counter()
        for product, quantity in quantities:
            totals[product] += quantity
        want_units = {p: {"units": n} for p, n in totals.items()}
        assert await converged(app.target, unique_name, "units", want_units) == want_units
        dead = await read_topic(apache_kafka.bootstrap, f"{unique_name}.dlq", 2)
        errors = {dict(m.headers)["aerogrid-source-topic"]: m for m in dead}
        assert sorted(errors) == sorted([refunds_topic.encode(), orders_topic.encode()])
        assert errors[orders_topic.encode()].value == bad_order
        assert b"quantity" in dict(errors[orders_topic.encode()].headers)["aerogrid-error"]
        assert errors[refunds_topic.encode()].value == bad_refund
        for topic in (refunds_topic, orders_topic):
            assert app.metric("aerogrid_dead_lettered_total", {"topic": topic}) == 1
        assert app.terminate() == 0
