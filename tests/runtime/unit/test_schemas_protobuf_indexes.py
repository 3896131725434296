"""The Protobuf codec's message-index walk, remembered per writer schema and prefix.

`ProtobufCodec` walks a record's message indexes once per distinct prefix and parses the
message from a view of the record. Its definition is the walk on every record (below,
`walked`): every value, and every DecodeError's text, must be the same, on the first
record with a prefix and on the later ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerogrid.errors import DecodeError
from aerogrid.records import Record
from aerogrid.schemas.protobuf import (
    MAX_KNOWN_PREFIXES,
    ProtobufCodec,
    message_full_name,
    read_indexes,
)
from aerogrid.schemas.protobuf_parse import message_tree, parse_schema
from aerogrid.schemas.protobuf_record import message_class, message_to_record, pool_with
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import HEADER_BYTES, frame
from support.comparable import comparable
from support.memory_registry import MemoryRegistry
from support.protobuf_shop import SHOP_PROTO, an_order, compile_proto, message_classes


class AnyShopMessage(Record):
    """Reads an Order, an Order.Line and a Refund alike, each into different values."""

    id: str = ""
    quantity: int = 0
    sku: str = ""
    price: float = 0.0
    order_id: str = ""


def padded(value: int, extra: int) -> bytes:
    """The zigzag varint of a small non-negative `value`, padded with `extra` 0x80 bytes."""
    zigzag = value << 1
    assert zigzag < 0x80
    if extra == 0:
        return bytes([zigzag])
    return bytes([zigzag | 0x80]) + b"\x80" * (extra - 1) + b"\x00"


#: Spellings of message indexes: [0] short and padded, nested, out of range, garbage.
INDEXES = [
    b"",
    b"\x00",
    padded(0, 2),
    b"\x02\x00",
    padded(1, 1) + padded(0, 3),
    b"\x02\x02",
    b"\x04\x00\x00",
    b"\x04\x00\x02",
    b"\x02\x04",
    b"\x06\x00\x00\x00",
    b"\x01",
    b"\x02\x01",
    b"\x80" * 11,
]


def walked(codec: ProtobufCodec, schema_id: int, record: bytes) -> Any:
    """What `codec` decodes `record` to by definition: its indexes walked, then a parse."""
    file = parse_schema(SHOP_PROTO, "shop.proto")
    payload = memoryview(record)[HEADER_BYTES:]
    indexes, offset = read_indexes(payload)
    name = message_full_name(file, message_tree(file), indexes)
    record_type = codec._record_type
    if record_type is None and name != "shop.v1.Order":
        raise DecodeError(
            f"the record is a {name} (schema id {schema_id}), the topic reads shop.v1.Order"
        )
    reader = codec._message_type if record_type is None else message_class(pool_with(file), name)
    message = reader()
    try:
        message.ParseFromString(bytes(payload[offset:]))
    except (ProtobufDecodeError, ValueError, RuntimeError) as exc:
        raise DecodeError(f"not a {name} (schema id {schema_id}): {exc}") from None
    if record_type is None:
        return message
    return message_to_record(message, record_type, f"{name} (schema id {schema_id})")


def outcome(read: Any) -> tuple[str, Any]:
    """The value read (comparable, a NaN in it too), or the DecodeError's words."""
    try:
        return "value", comparable(read())
    except DecodeError as exc:
        return "error", str(exc)


async def loaded_codec(value_type: Any) -> tuple[ProtobufCodec, int]:
    registry = MemoryRegistry()
    schema_id = registry.add(SHOP_PROTO, "PROTOBUF", "orders-value")
    codec = ProtobufCodec(value_type, registry=registry.client(), subjects=SubjectNamer("orders"))
    await codec.load(schema_id)
    return codec, schema_id


@pytest.mark.parametrize("reads", ["generated class", "Record"])
def test_remembered_indexes_read_as_the_walk_does(tmp_path: Path, reads: str) -> None:
    shop = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    value_type = shop["Order"] if reads == "generated class" else AnyShopMessage
    codec, schema_id = asyncio.run(loaded_codec(value_type))
    messages: list[Message] = [
        an_order(shop),
        shop["Order.Line"](sku="A", price=1.5),
        shop["Refund"](order_id="o-1", reason="late"),
    ]
    bodies = [m.SerializeToString() for m in messages]

    # One codec for every example: later examples meet prefixes it already knows.
    @settings(
        max_examples=400,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        st.one_of(st.sampled_from(INDEXES), st.binary(max_size=4)),
        st.one_of(st.sampled_from(bodies), st.binary(max_size=60)),
    )
    def check(indexes: bytes, body: bytes) -> None:
        record = frame(schema_id, indexes + body)
        expected = outcome(lambda: walked(codec, schema_id, record))
        assert outcome(lambda: codec.decode(record)) == expected
        assert outcome(lambda: codec.decode(record)) == expected

    check()


def test_the_prefixes_remembered_are_bounded() -> None:
    """One index list has many spellings: past the bound they are walked, not remembered."""
    codec, schema_id = asyncio.run(loaded_codec(AnyShopMessage))
    line = b"\x0a\x01A"  # Order.Line ([0, 1]: the map entry is [0, 0]), sku "A"
    spellings = [
        padded(2, a) + padded(0, b) + padded(1, c)
        for a in range(10)
        for b in range(10)
        for c in range(4)
    ]
    assert len(set(spellings)) > MAX_KNOWN_PREFIXES
    for indexes in spellings:
        assert codec.decode(frame(schema_id, indexes + line)) == AnyShopMessage(sku="A")
    assert len(codec._held[schema_id].readers) == MAX_KNOWN_PREFIXES
