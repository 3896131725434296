"""Orders for the registry-format tests: the Avro app, the writer schemas, the reference client.

Records are written by confluent-kafka's `AvroSerializer` (the reference implementation)
against the test registry, so compatibility is with it and not only with ourselves. Three
writer schemas make the evolution the issue names: v1 (product, quantity, channel), v2 adds an
optional `coupon`, v3 drops `channel` (the app's reader defaults it to "web").
"""

from __future__ import annotations

import json
import random
import struct
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

#: The seed app with Avro values: the product sums, a grid of orders per channel (the reader's
#: default shows in it), and a Shipment sent per order to an Avro output topic.
AVRO_ORDERS_TEMPLATE = """
import aerogrid

app = aerogrid.App({app!r})

class Order(aerogrid.Record):
    product: str
    quantity: int
    channel: str = "web"

class Shipment(aerogrid.Record):
    product: str
    quantity: int

orders_topic = app.topic({topic!r}, key_type=str, value_type=Order, format="avro", partitions=3)
shipments = app.topic({shipments!r}, key_type=str, value_type=Shipment, format="avro")
product_sum = app.Grid('product_sum', columns=['units_sold', 'orders'],
                       default=lambda: {{'units_sold': 0, 'orders': 0}})
channel_orders = app.Grid('channel_orders', columns=['orders'], default=lambda: {{'orders': 0}})

@app.stream(orders_topic)
async def sum_orders(orders):
    async for order_id, order in orders.items():
        row = product_sum[order.product]
        product_sum[order.product] = {{'units_sold': row['units_sold'] + order.quantity,
                                      'orders': row['orders'] + 1}}
        channel_orders[order.channel] = {{'orders': channel_orders[order.channel]['orders'] + 1}}
        await shipments.send(order_id, Shipment(product=order.product, quantity=order.quantity))
"""

_V1_FIELDS: list[dict[str, Any]] = [
    {"name": "product", "type": "string"},
    {"name": "quantity", "type": "long"},
    {"name": "channel", "type": "string"},
]
_COUPON = {"name": "coupon", "type": ["null", "string"], "default": None}
WRITER_SCHEMAS: dict[str, list[dict[str, Any]]] = {
    "v1": _V1_FIELDS,
    "v2": [*_V1_FIELDS, _COUPON],
    "v3": [_V1_FIELDS[0], _V1_FIELDS[1], _COUPON],
}

#: What a JSON Schema producer of the apps' `Order(product: str, quantity: int)` registers.
ORDER_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"}},
    "required": ["product", "quantity"],
}

Records = list[tuple[bytes | None, bytes | None]]


def write_avro_orders_app(folder: Path, app: str, topic: str, shipments: str) -> Path:
    path = folder / f"{app}.py"
    path.write_text(AVRO_ORDERS_TEMPLATE.format(app=app, topic=topic, shipments=shipments))
    return path


def writer_schema(version: str) -> str:
    fields = WRITER_SCHEMAS[version]
    return json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": fields})


class AvroOrders:
    """Orders as the reference client writes them to one topic, and the sums they must make."""

    def __init__(self, registry_url: str, topic: str) -> None:
        self.client = SchemaRegistryClient({"url": registry_url})
        self.topic = topic
        #: Every valid order written so far, as the app must read it.
        self.orders: list[dict[str, Any]] = []
        self._context = SerializationContext(topic, MessageField.VALUE)

    def make(self, n: int, version: str, *, seed: int) -> Records:
        """`n` orders framed by AvroSerializer under writer schema `version` (registered)."""
        serializer = AvroSerializer(self.client, writer_schema(version))
        rng = random.Random(seed)
        records: Records = []
        for i in range(n):
            order: dict[str, Any] = {
                "product": f"p{rng.randrange(7)}",
                "quantity": rng.randint(1, 9),
            }
            if version != "v3":
                order["channel"] = rng.choice(["web", "shop", "phone"])
            if version != "v1":
                order["coupon"] = rng.choice([None, "SAVE5"])
            records.append((f"{version}-{seed}-{i}".encode(), serializer(order, self._context)))
            self.orders.append({**order, "channel": order.get("channel", "web")})
        return records

    def schema_id(self, version: str) -> int:
        schema = Schema(writer_schema(version), "AVRO")
        return self.client.register_schema(f"{self.topic}-value", schema)

    def product_sums(self) -> dict[str, dict[str, int]]:
        units: Counter[str] = Counter()
        count: Counter[str] = Counter()
        for order in self.orders:
            units[order["product"]] += order["quantity"]
            count[order["product"]] += 1
        return {p: {"units_sold": units[p], "orders": count[p]} for p in units}

    def channel_counts(self) -> dict[str, dict[str, int]]:
        counts = Counter(order["channel"] for order in self.orders)
        return {channel: {"orders": n} for channel, n in counts.items()}


def deserialize(registry_url: str, topic: str, values: list[bytes]) -> list[dict[str, Any]]:
    """What confluent-kafka's AvroDeserializer reads from `values` (writer schema by id)."""
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))
    context = SerializationContext(topic, MessageField.VALUE)
    return [deserializer(value, context) for value in values]


def framed(schema_id: int, payload: bytes) -> bytes:
    """The Confluent wire format by hand (for records the reference client would not write)."""
    return b"\x00" + struct.pack(">I", schema_id) + payload
