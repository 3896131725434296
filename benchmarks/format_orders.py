"""The ingest benchmark's orders in the registry formats, and what each format's decode costs.

The same orders as benchmarks.ingest.make_orders (so the same expected sums) written the way
a company's producers write them: by confluent-kafka's serializers (the reference client)
against the real registry, in the Confluent wire format. `codec_cost` times AeroGrid's own
codec of each format in-process over those values, the per-record share of the ingest rate.
"""

from __future__ import annotations

import asyncio
import cProfile
import functools
import io
import json
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pool, message_factory

import aerogrid
from aerogrid.record_formats import codec_for
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings
from benchmarks.ingest import Bench, aerogrid_app

# _common (imported by benchmarks.ingest) put tests/ on sys.path.
from support.protobuf_shop import compile_proto

#: The registry formats measured, each written by its reference serializer.
FORMATS = ("avro", "protobuf", "json-schema")

AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "bench",
    "fields": [{"name": "product", "type": "string"}, {"name": "quantity", "type": "long"}],
}
ORDER_PROTO = """
syntax = "proto3";
package bench.v1;
message Order { string product = 1; int64 quantity = 2; }
"""
JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"}},
    "required": ["product", "quantity"],
}


class Order(aerogrid.Record):
    """The example app's Record (examples/ordersapp/app.py), the reader of every format."""

    product: str
    quantity: int


Orders = list[tuple[bytes, bytes]]


def encode_orders(fmt: str, orders: Orders, registry_url: str, topic: str) -> Orders:
    """The JSON orders re-encoded in `fmt` by confluent-kafka's serializer for `topic`."""
    client = SchemaRegistryClient({"url": registry_url})
    context = SerializationContext(topic, MessageField.VALUE)
    serialize: Callable[[dict[str, Any]], bytes]
    if fmt == "avro":
        avro = AvroSerializer(client, json.dumps(AVRO_SCHEMA))
        serialize = lambda order: avro(order, context)  # noqa: E731
    elif fmt == "json-schema":
        as_json = JSONSerializer(json.dumps(JSON_SCHEMA), client)
        serialize = lambda order: as_json(order, context)  # noqa: E731
    elif fmt == "protobuf":
        order_class = _proto_order_class()
        as_proto = ProtobufSerializer(order_class, client, {"use.deprecated.format": False})
        serialize = lambda order: as_proto(order_class(**order), context)  # noqa: E731
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return [(key, serialize(json.loads(value))) for key, value in orders]


def _proto_order_class() -> Any:
    """ORDER_PROTO's Order as protoc's generated code has it, from a pool of its own."""
    with tempfile.TemporaryDirectory(prefix="aerogrid-bench-proto-") as folder:
        file = compile_proto(Path(folder), "order.proto", ORDER_PROTO)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.v1.Order"))


def format_app(fmt: str) -> Callable[[Bench, str], Path]:
    """The example app with `format=fmt` on its topic: the only change from the JSON one."""

    def make(bench: Bench, app_name: str) -> Path:
        path = aerogrid_app(bench, app_name)
        text = path.read_text()
        old = "value_type=Order)"
        if text.count(old) != 1:
            raise RuntimeError(f"the example app changed: expected {old!r} once")
        path.write_text(text.replace(old, f"value_type=Order, format={fmt!r})"))
        return path

    return make


def _decode_all(decode: Callable[[bytes], Any], values: list[bytes]) -> None:
    for value in values:
        decode(value)


async def _timed_decodes(
    values: dict[str, list[bytes]], registry_url: str, topics: dict[str, str]
) -> dict[str, Callable[[], None]]:
    """Per format, a call decoding all its values with AeroGrid's codec (schemas loaded)."""
    registry = SchemaRegistry(RegistrySettings(url=registry_url))
    passes: dict[str, Callable[[], None]] = {}
    try:
        for fmt, data in values.items():
            if fmt == "json":
                codec = codec_for(Order)
            else:
                codec = codec_for(Order, fmt, registry=registry, topic=topics[fmt])
                wanted = {codec.schema_id_to_load(v) for v in data[:10]} - {None}  # type: ignore[attr-defined]
                for schema_id in wanted:
                    await codec.load(schema_id)  # type: ignore[attr-defined]
            passes[fmt] = functools.partial(_decode_all, codec.decode, data)
    finally:
        await registry.aclose()
    return passes


def codec_cost(
    values: dict[str, list[bytes]], registry_url: str, topics: dict[str, str], profile: str | None
) -> tuple[dict[str, float], str]:
    """µs per record of each format's decode (best of 3), and a cProfile of `profile`'s."""
    passes = asyncio.run(_timed_decodes(values, registry_url, topics))
    cost: dict[str, float] = {}
    for fmt, decode_all in passes.items():
        best = float("inf")
        for _ in range(3):
            began = time.perf_counter()
            decode_all()
            best = min(best, time.perf_counter() - began)
        cost[fmt] = round(1e6 * best / len(values[fmt]), 2)
    text = ""
    if profile in passes:
        profiler = cProfile.Profile()
        profiler.runcall(passes[profile])
        buffer = io.StringIO()
        pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(12)
        text = buffer.getvalue()
    return cost, text
