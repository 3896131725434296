"""AvroCodec: decode with schema resolution (v1, v2, v3 writers), bad records, sending.

Writer bytes are made with fastavro from the producer's schema, as confluent-kafka's
AvroSerializer makes them; the registry is the MemoryRegistry stand-in (the same tests
against Apicurio are in tests/runtime/integration/test_schemas_avro_registry.py).
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib
import io
import json
from decimal import Decimal
from typing import Annotated, Any

import fastavro
import httpx
import msgspec
import pytest

from aerogrid import Record
from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.schemas.avro import _READ_OPTIONS, AvroCodec, _datum_reader
from aerogrid.schemas.codec import RegistryCodec, registry_codec
from aerogrid.schemas.errors import RegistryUnavailable, SchemaNotLoaded
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings
from aerogrid.schemas.wire import frame, parse_frame
from support.memory_registry import MemoryRegistry
from support.registry_codecs import decoded


class Order(Record):
    product: str
    quantity: int
    channel: str = "web"


V1_FIELDS: list[dict[str, Any]] = [
    {"name": "product", "type": "string"},
    {"name": "quantity", "type": "long"},
    {"name": "channel", "type": "string"},
]
V1 = {"type": "record", "name": "Order", "namespace": "com.acme.orders", "fields": V1_FIELDS}
V2 = {  # a producer adds an optional field
    **V1,
    "fields": [*V1_FIELDS, {"name": "coupon", "type": ["null", "string"], "default": None}],
}
V3 = {  # a producer drops a field the reader defaults
    **V1,
    "fields": [f for f in V1_FIELDS if f["name"] != "channel"],
}


def written(registry: MemoryRegistry, schema: dict[str, Any], value: dict[str, Any]) -> bytes:
    """`value` as a producer writes it with `schema`: registered, framed."""
    schema_id = registry.add(json.dumps(schema), "AVRO", "orders-value")
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), value)
    return frame(schema_id, buffer.getvalue())


def avro_codec(registry: MemoryRegistry, declared: Any = Order, **options: Any) -> RegistryCodec:
    return registry_codec("avro", declared, registry=registry.client(), topic="orders", **options)


async def test_schema_resolution_reads_v1_v2_and_v3_writers_into_the_record() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry)
    assert isinstance(codec, AvroCodec)
    v1 = written(registry, V1, {"product": "apple", "quantity": 2, "channel": "shop"})
    v2 = written(registry, V2, {"product": "pear", "quantity": 3, "channel": "app", "coupon": "X"})
    v3 = written(registry, V3, {"product": "plum", "quantity": 5})
    assert [parse_frame(d)[0] for d in (v1, v2, v3)] == [1, 2, 3]
    assert await decoded(codec, v1) == Order(product="apple", quantity=2, channel="shop")
    assert await decoded(codec, v2) == Order(product="pear", quantity=3, channel="app")
    assert await decoded(codec, v3) == Order(product="plum", quantity=5, channel="web")


async def test_each_writer_id_is_asked_for_once() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry)
    records = [
        written(registry, V1, {"product": "a", "quantity": n, "channel": "c"}) for n in range(5)
    ]
    for data in records:
        await decoded(codec, data)
    assert registry.requests == ["GET /schemas/ids/1"]


class Reading(Record):
    sensor: str
    at: dt.datetime
    day: dt.date = dt.date(2026, 1, 2)
    level: Annotated[Decimal, msgspec.Meta(extra={"precision": 6, "scale": 2})] = Decimal("0.5")
    seen: dt.datetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


async def test_logical_types_decode_to_python_values_and_missing_ones_take_record_defaults() -> (
    None
):
    registry = MemoryRegistry()
    writer = {
        "type": "record",
        "name": "Reading",
        "fields": [
            {"name": "sensor", "type": "string"},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {
                "name": "level",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 3},
            },
        ],
    }
    at = dt.datetime(2026, 12, 5, 9, 30, 1, 123000, tzinfo=dt.UTC)
    data = written(registry, writer, {"sensor": "s1", "at": at, "level": Decimal("12.345")})
    value = await decoded(avro_codec(registry, Reading), data)
    assert value == Reading(sensor="s1", at=at, level=Decimal("12.345"))
    assert value.day == dt.date(2026, 1, 2) and value.seen.year == 2026


async def test_dict_reads_as_written() -> None:
    registry = MemoryRegistry()
    data = written(registry, V2, {"product": "a", "quantity": 1, "channel": "c", "coupon": None})
    value = await decoded(avro_codec(registry, dict), data)
    assert value == {"product": "a", "quantity": 1, "channel": "c", "coupon": None}


async def test_an_unknown_id_is_a_decode_error_naming_it_and_is_asked_once() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry)
    data = frame(42, b"\x02a\x02")
    with pytest.raises(DecodeError, match="schema id 42 is not in the registry"):
        await decoded(codec, data)
    with pytest.raises(DecodeError, match="schema id 42 is not in the registry"):
        await decoded(codec, data)
    assert registry.requests == ["GET /schemas/ids/42"]


async def test_a_writer_of_another_format_is_a_decode_error() -> None:
    registry = MemoryRegistry()
    schema_id = registry.add('syntax = "proto3"; message Order { string product = 1; }', "PROTOBUF")
    with pytest.raises(DecodeError, match=f"schema id {schema_id} is a PROTOBUF schema, not AVRO"):
        await decoded(avro_codec(registry), frame(schema_id, b"\x00"))


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x02a", "does not match writer schema id 1"),  # cut short
        (b"\x02a\x04\x02c\x00", "1 bytes left after the record"),
        (b"\x7fxx", "does not match writer schema id 1"),  # a string length past the end
    ],
)
async def test_a_payload_that_does_not_match_its_writer_schema(payload: bytes, reason: str) -> None:
    registry = MemoryRegistry()
    written(registry, V1, {"product": "a", "quantity": 2, "channel": "c"})
    with pytest.raises(DecodeError, match=reason):
        await decoded(avro_codec(registry), frame(1, payload))


async def test_an_incompatible_writer_is_a_decode_error_naming_its_id() -> None:
    registry = MemoryRegistry()
    writer = {"type": "record", "name": "Order", "fields": [{"name": "product", "type": "string"}]}
    data = written(registry, writer, {"product": "a"})  # no quantity, and the reader has no default
    with pytest.raises(DecodeError, match="writer schema id 1"):
        await decoded(avro_codec(registry), data)


async def test_bad_frames_and_tombstones() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry)
    with pytest.raises(DecodeError, match="magic byte 0x7b is not 0"):
        await decoded(codec, b'{"product": "a"}')
    with pytest.raises(DecodeError, match="tombstone"):
        await decoded(codec, None)
    assert await decoded(avro_codec(registry, dict), None) is None
    assert registry.requests == []


async def test_decoding_an_id_nobody_loaded_is_the_callers_bug_not_the_records() -> None:
    registry = MemoryRegistry()
    data = written(registry, V1, {"product": "a", "quantity": 2, "channel": "c"})
    with pytest.raises(SchemaNotLoaded):
        avro_codec(registry).decode(data)


async def test_send_registers_the_records_schema_under_the_topic_subject_once() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry)
    order = Order(product="fig", quantity=7)
    await codec.prepare_send(order)
    await codec.prepare_send(order)
    data = codec.encode(order)
    assert data is not None
    assert registry.requests == ["POST /subjects/orders-value/versions"]
    schema_id, payload = parse_frame(data)
    writer = json.loads(registry.schemas[schema_id]["schema"])
    assert writer["name"] == "Order" and writer["namespace"] == __name__
    assert fastavro.schemaless_reader(io.BytesIO(payload), fastavro.parse_schema(writer), None) == {
        "product": "fig",
        "quantity": 7,
        "channel": "web",
    }
    assert await decoded(codec, data) == order
    assert codec.encode({"product": "kiwi", "quantity": 1}) is not None  # dicts convert


async def test_record_strategies_name_the_subject_after_the_record() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry, strategy="topic-record", is_key=False)
    await codec.prepare_send(Order(product="a", quantity=1))
    assert registry.requests == [f"POST /subjects/orders-{__name__}.Order/versions"]


async def test_primitive_keys_round_trip() -> None:
    registry = MemoryRegistry()
    codec = avro_codec(registry, str, is_key=True)
    await codec.prepare_send("order-1")
    data = codec.encode("order-1")
    assert registry.requests == ["POST /subjects/orders-key/versions"]
    assert await decoded(codec, data) == "order-1"


async def test_encode_before_prepare_send_is_refused() -> None:
    with pytest.raises(SchemaNotLoaded, match="prepare_send"):
        avro_codec(MemoryRegistry()).encode(Order(product="a", quantity=1))


def test_an_unknown_format_or_an_unsupported_type_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown registry format 'thrift'"):
        registry_codec("thrift", Order, registry=MemoryRegistry().client(), topic="t")
    with pytest.raises(ConfigurationError, match="needs a Record subclass"):
        avro_codec(MemoryRegistry(), list)


class Line(Record):
    sku: str


class Basket(Record):
    lines: list[Line]
    first: Line | None = None


async def test_record_names_need_not_match_nested_ones_neither() -> None:
    registry = MemoryRegistry()
    writer = {
        "type": "record",
        "name": "CartUpdated",
        "namespace": "com.shop",
        "fields": [
            {
                "name": "lines",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Item",
                        "fields": [{"name": "sku", "type": "string"}],
                    },
                },
            },
            {"name": "first", "type": ["null", "Item"], "default": None},
        ],
    }
    data = written(registry, writer, {"lines": [{"sku": "a"}, {"sku": "b"}], "first": {"sku": "a"}})
    assert await decoded(avro_codec(registry, Basket), data) == Basket(
        lines=[Line(sku="a"), Line(sku="b")], first=Line(sku="a")
    )


def test_the_direct_fastavro_read_matches_its_public_reader() -> None:
    """AvroCodec calls fastavro's compiled `_read_data` directly (the public call costs twice
    as much): it must read what `schemaless_reader` reads, whatever fastavro version is pinned."""
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "Rich",
            "fields": [
                {"name": "s", "type": "string"},
                {"name": "n", "type": ["null", "long"]},
                {"name": "m", "type": {"type": "map", "values": "double"}},
                {
                    "name": "a",
                    "type": {
                        "type": "array",
                        "items": {
                            "type": "record",
                            "name": "Item",
                            "fields": [{"name": "x", "type": "int"}],
                        },
                    },
                },
                {"name": "b", "type": ["null", "Item"]},
                {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {
                    "name": "d",
                    "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
                },
            ],
        },
    )
    value = {
        "s": "é",
        "n": None,
        "m": {"k": 1.5},
        "a": [{"x": 1}, {"x": -2}],
        "b": {"x": 3},
        "t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "d": Decimal("1.25"),
    }
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, value)
    read, parsed, named = _datum_reader(schema)
    assert read is importlib.import_module("fastavro._read")._read_data  # fast path
    assert read(io.BytesIO(buffer.getvalue()), parsed, named, None, _READ_OPTIONS) == value
    assert fastavro.schemaless_reader(io.BytesIO(buffer.getvalue()), schema, None) == value


class Priced(Record):
    price: Annotated[Decimal, msgspec.Meta(extra={"precision": 5, "scale": 2})]


async def test_a_value_the_schema_cannot_hold_is_refused_naming_the_topic() -> None:
    codec = avro_codec(MemoryRegistry(), Priced)
    await codec.prepare_send(Priced(price=Decimal("1.5")))
    assert codec.encode(Priced(price=Decimal("-999.99"))) is not None
    with pytest.raises(ValueError, match="topic 'orders': cannot write this value as Avro: Scale"):
        codec.encode(Priced(price=Decimal("1.234")))  # never rounded silently
    with pytest.raises(ValueError, match="precision"):
        codec.encode(Priced(price=Decimal("1000.00")))
    with pytest.raises(TypeError, match="expected Priced, got str"):
        codec.encode("1.5")


class Shade(enum.Enum):
    LIGHT = "LIGHT"
    DARK = "DARK"


class Swatch(Record):
    shade: Shade
    tags: set[str] = set()


async def test_enums_and_sets_round_trip() -> None:
    codec = avro_codec(MemoryRegistry(), Swatch)
    swatch = Swatch(shade=Shade.DARK, tags={"a", "b"})
    await codec.prepare_send(swatch)
    assert await decoded(codec, codec.encode(swatch)) == swatch


class ReferencingRegistry:
    """Schema id 1 references subject `dep` version 1, served by `versions` (a cycle if
    `dep` references itself); `down` makes every version request a 503."""

    def __init__(self, versions: dict[int, dict[str, Any]]) -> None:
        self.versions = versions
        self.down = False
        self.asked: list[str] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v7")
        self.asked.append(path)
        if path == "/schemas/ids/1":
            holder = {
                "type": "record",
                "name": "Holder",
                "fields": [{"name": "inner", "type": "Inner"}],
            }
            refs = [{"name": "Inner", "subject": "dep", "version": 1}]
            return httpx.Response(200, json={"schema": json.dumps(holder), "references": refs})
        if self.down:
            return httpx.Response(503, json={"error_code": 50301, "message": "busy"})
        version = int(path.rsplit("/", 1)[1])
        if version not in self.versions:
            return httpx.Response(404, json={"error_code": 40402, "message": "no version"})
        return httpx.Response(200, json={"id": 100 + version, **self.versions[version]})

    def codec(self) -> RegistryCodec:
        registry = SchemaRegistry(
            RegistrySettings(url="http://registry.invalid/v7"),
            transport=httpx.MockTransport(self.handle),
        )
        return registry_codec("avro", dict, registry=registry, topic="t")


INNER = {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "long"}]}


async def test_references_are_fetched_once_then_parsed_before_the_schema() -> None:
    stub = ReferencingRegistry({1: {"schema": json.dumps(INNER)}})
    codec = stub.codec()
    stub.down = True
    with pytest.raises(RegistryUnavailable):  # an outage is not the record's fault
        await codec.load(1)
    stub.down = False
    assert await decoded(codec, frame(1, b"\x06")) == {"inner": {"n": 3}}
    assert await decoded(codec, frame(1, b"\x08")) == {"inner": {"n": 4}}
    assert stub.asked.count("/subjects/dep/versions/1") == 2  # the 503, then once


async def test_a_missing_reference_or_a_cycle_is_the_records_fault() -> None:
    missing = ReferencingRegistry({})
    with pytest.raises(DecodeError, match="schema id 1 references a schema the registry does"):
        await decoded(missing.codec(), frame(1, b"\x06"))
    cycle = ReferencingRegistry(
        {
            1: {
                "schema": json.dumps(INNER),
                "references": [{"name": "I", "subject": "dep", "version": 1}],
            }
        }
    )
    with pytest.raises(DecodeError, match="references nest deeper than 16"):
        await decoded(cycle.codec(), frame(1, b"\x06"))


class RawView(Record):
    id: str
    at: int
    day: int
    when: dt.datetime
    maybe_at: int | None = None
    items: list[str] = []


async def test_logical_types_the_record_declares_raw_are_read_raw() -> None:
    """A `uuid` string into `str`, a timestamp or date into `int`: the underlying value, as
    Avro gives a reader without the logical type (fastavro would convert them all)."""
    registry = MemoryRegistry()
    uuid_type = {"type": "string", "logicalType": "uuid"}
    writer = {
        "type": "record",
        "name": "Raw",
        "fields": [
            {"name": "id", "type": uuid_type},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {
                "name": "maybe_at",
                "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
            },
            {"name": "items", "type": {"type": "array", "items": uuid_type}},
            {"name": "ignored", "type": {"type": "int", "logicalType": "date"}},
        ],
    }
    ident = "2c5f4f2e-2b7a-4c1e-9d0c-3f6a1d2e4b5c"
    when = dt.datetime(2026, 12, 5, 9, 30, tzinfo=dt.UTC)
    data = written(
        registry,
        writer,
        {
            "id": ident,
            "at": 1_700_000_000_123,
            "day": 20_000,
            "when": when,
            "maybe_at": 5,
            "items": [ident],
            "ignored": 1,
        },
    )
    assert await decoded(avro_codec(registry, RawView), data) == RawView(
        id=ident, at=1_700_000_000_123, day=20_000, when=when, maybe_at=5, items=[ident]
    )
    as_written = await decoded(avro_codec(registry, dict), data)
    assert as_written["at"] == dt.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=dt.UTC)
