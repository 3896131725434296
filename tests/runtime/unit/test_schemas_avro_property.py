"""AvroCodec on any bytes after a valid header: the declared value or a DecodeError, quickly.

Hypothesis drives the decoder with arbitrary payloads and with valid records cut short or
with bytes flipped, against a writer schema with every Avro type a producer might use. A
writer schema whose arrays hold zero-byte items is refused at load: a 5-byte count could
otherwise make a list of billions of items (measured: fastavro builds a million-item list
from three bytes).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from decimal import Decimal
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerogrid import Record
from aerogrid.errors import DecodeError
from aerogrid.schemas.codec import RegistryCodec, registry_codec
from aerogrid.schemas.wire import frame
from support.memory_registry import MemoryRegistry

BUDGET = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

WRITER: dict[str, Any] = {
    "type": "record",
    "name": "Event",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "count", "type": "long"},
        {"name": "ratio", "type": ["null", "double"]},
        {"name": "blob", "type": "bytes"},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": "int"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
        {"name": "id", "type": {"type": "fixed", "name": "Id", "size": 4}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "flag", "type": "boolean"},
        {"name": "f", "type": "float"},
    ],
}
VALID = {
    "name": "e",
    "count": 3,
    "ratio": 0.5,
    "blob": b"\x00\x01",
    "tags": ["a", "b"],
    "attrs": {"x": 1},
    "kind": "B",
    "id": b"abcd",
    "at": dt.datetime(2026, 12, 5, tzinfo=dt.UTC),
    "price": Decimal("12.34"),
    "flag": True,
    "f": 1.5,
}


class Event(Record):
    name: str
    count: int
    ratio: float | None = None
    tags: list[str] = []


def valid_payload() -> bytes:
    buffer = io.BytesIO()
    parsed = fastavro.parse_schema(WRITER)
    fastavro.schemaless_writer(buffer, parsed, VALID)
    return buffer.getvalue()


async def loaded(declared: Any, writer: Any = WRITER) -> tuple[RegistryCodec, int]:
    registry = MemoryRegistry()
    schema_id = registry.add(json.dumps(writer), "AVRO")
    codec = registry_codec("avro", declared, registry=registry.client(), topic="t")
    await codec.load(schema_id)
    return codec, schema_id


def value_or_decode_error(codec: RegistryCodec, data: bytes, declared: Any) -> None:
    started = time.perf_counter()
    try:
        value = codec.decode(data)
    except DecodeError:
        pass
    else:
        assert isinstance(value, declared)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("declared", [Event, dict])
@BUDGET
@given(payload=st.binary(max_size=200))
async def test_any_payload_decodes_or_is_a_decode_error(declared: Any, payload: bytes) -> None:
    codec, schema_id = await loaded(declared)
    value_or_decode_error(codec, frame(schema_id, payload), declared)


@pytest.mark.parametrize("declared", [Event, dict])
@BUDGET
@given(data=st.data())
async def test_damaged_valid_records(declared: Any, data: st.DataObject) -> None:
    codec, schema_id = await loaded(declared)
    payload = bytearray(valid_payload())
    assert isinstance(codec.decode(frame(schema_id, bytes(payload))), declared)
    cut = data.draw(st.integers(0, len(payload)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(payload) - 1), st.integers(0, 255))))
    for index, byte in flips:
        payload[index] = byte
    value_or_decode_error(codec, frame(schema_id, bytes(payload[:cut])), declared)


def zig_zag(number: int) -> bytes:
    """An Avro long: zig-zag, then a little-endian base-128 varint."""
    encoded = (number << 1) ^ (number >> 63)
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


@pytest.mark.parametrize(
    ("items", "path"),
    [
        ("null", r"\$\.list"),
        ({"type": "record", "name": "Empty", "fields": []}, r"\$\.list"),
        ({"type": "fixed", "name": "Nothing", "size": 0}, r"\$\.list"),
        (
            {"type": "record", "name": "Nulls", "fields": [{"name": "n", "type": "null"}]},
            r"\$\.list",
        ),
    ],
)
async def test_arrays_of_zero_byte_items_are_refused_at_load(items: Any, path: str) -> None:
    writer = {
        "type": "record",
        "name": "Holder",
        "fields": [{"name": "list", "type": {"type": "array", "items": items}}],
    }
    codec, schema_id = await loaded(dict, writer)
    started = time.perf_counter()
    with pytest.raises(DecodeError, match=f"does not parse as AVRO: the array at {path}"):
        codec.decode(frame(schema_id, zig_zag(10**12)))
    assert time.perf_counter() - started < 0.1


async def test_a_named_zero_byte_type_used_again_inside_an_array_is_found() -> None:
    writer = {
        "type": "record",
        "name": "Holder",
        "fields": [
            {"name": "first", "type": {"type": "record", "name": "Empty", "fields": []}},
            {
                "name": "more",
                "type": {"type": "map", "values": {"type": "array", "items": "Empty"}},
            },
        ],
    }
    codec, schema_id = await loaded(dict, writer)
    with pytest.raises(DecodeError, match=r"the array at \$\.more\{\}"):
        codec.decode(frame(schema_id, b"\x00\x02"))


async def test_arrays_of_items_that_take_bytes_are_accepted() -> None:
    writer = {
        "type": "record",
        "name": "Holder",
        "fields": [
            {"name": "list", "type": {"type": "array", "items": ["null", "long"]}},
            {
                "name": "enums",
                "type": {"type": "array", "items": {"type": "enum", "name": "E", "symbols": ["A"]}},
            },
        ],
    }
    codec, schema_id = await loaded(dict, writer)
    assert codec.decode(frame(schema_id, b"\x04\x00\x02\x04\x00\x02\x00\x00")) == {
        "list": [None, 2],
        "enums": ["A"],
    }
    started = time.perf_counter()
    with pytest.raises(DecodeError):  # a huge count of one-byte items ends at the record's end
        codec.decode(frame(schema_id, zig_zag(10**12)))
    assert time.perf_counter() - started < 0.1
