"""Records on Protobuf topics: read any writer's message by field name, send a derived proto3.

The writer's records are made by confluent-kafka's `ProtobufSerializer` from protoc-compiled
classes; what we send is parsed back by protoc-compiled classes of the .proto we register.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pool, message_factory, timestamp_pb2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.records import Record
from aerogrid.schemas.protobuf import ProtobufCodec
from aerogrid.schemas.protobuf_record import record_file
from aerogrid.schemas.protobuf_text import proto_text
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame
from support.memory_registry import MemoryRegistry
from support.protobuf_shop import SHOP_PROTO, an_order, compile_proto, message_classes
from support.registry_codecs import loaded


class ShopLine(Record):
    sku: str
    price: float


class ShopOrder(Record):
    """A mirror of shop.v1.Order by field names, in another order, some fields left out."""

    quantity: int
    id: str
    lines: list[ShopLine]
    tag_counts: dict[str, int]
    status: str
    at: datetime
    note: str | None = None
    iban: str | None = None
    coupon: str = "none"  # the writer has no such field: the default


class Parcel(Record):
    weight: Decimal
    shipped: date | None = None
    label: bytes = b""


class Shipment(Record):
    id: str
    at: datetime
    parcels: list[Parcel] = []
    by_depot: dict[str, Parcel] = {}
    first: Parcel | None = None
    express: bool | None = None
    count: int = 0


def codec_for(value_type: Any, registry: MemoryRegistry) -> ProtobufCodec:
    return ProtobufCodec(value_type, registry=registry.client(), subjects=SubjectNamer("orders"))


async def test_a_record_reads_the_writers_message_by_field_name(tmp_path: Path) -> None:
    shop: dict[str, Any] = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    reference = SchemaRegistryClient.new_client({"url": "mock://shop"})
    serializer = ProtobufSerializer(shop["Order"], reference, {"use.deprecated.format": False})
    written = serializer(an_order(shop), SerializationContext("orders", MessageField.VALUE))
    assert isinstance(written, bytes)
    stored = reference.get_schema(int.from_bytes(written[1:5], "big"))
    registry = MemoryRegistry()
    record = frame(registry.add(str(stored.schema_str), "PROTOBUF", "orders-value"), written[5:])
    decoded = (await loaded(codec_for(ShopOrder, registry), record)).decode(record)
    assert decoded == ShopOrder(
        quantity=3,
        id="o-1",
        lines=[ShopLine(sku="A", price=1.5)],
        tag_counts={"rush": 2},
        status="PAID",
        at=datetime.fromtimestamp(1_700_000_000, UTC),
        note="",  # proto3 optional: set to "", so present
        iban=None,  # the oneof holds card
    )

    # The text form of the same schema (what Apicurio and others hand back) reads the same.
    as_text = frame(registry.add(SHOP_PROTO, "PROTOBUF", "orders-value"), written[5:])
    assert (await loaded(codec_for(ShopOrder, registry), as_text)).decode(as_text) == decoded


def test_a_tombstone_is_not_a_record() -> None:
    """As on every format: a Record topic refuses a record without a value, naming the fix."""
    codec = codec_for(ShopOrder, MemoryRegistry())
    with pytest.raises(DecodeError, match="ShopOrder: the record has no value \\(a tombstone\\)"):
        codec.decode(None)
    assert codec.encode(None) is None


async def test_a_record_sends_its_derived_proto3_which_protoc_reads(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    codec = codec_for(Shipment, registry)
    parcel = Parcel(weight=Decimal("1.250"), shipped=date(2026, 12, 5), label=b"\x00\xff")
    shipment = Shipment(
        id="s-1",
        at=datetime(2026, 12, 5, 9, 30, 0, 250000, tzinfo=UTC),
        parcels=[parcel, Parcel(weight=Decimal("2"))],
        by_depot={"north": parcel},
        first=parcel,
        express=False,
    )
    await codec.prepare_send(shipment)
    (subject, text), schema_id = next(iter(registry.ids.items()))
    assert subject == "orders-value"
    assert text == proto_text(record_file(Shipment))
    record = codec.encode(shipment)
    assert record is not None and record[:6] == frame(schema_id, b"\x00")
    assert (await loaded(codec_for(Shipment, registry), record)).decode(record) == shipment

    # protoc compiles what we registered, and its class reads what we sent.
    package = Shipment.__module__
    compiled = compile_proto(tmp_path, "shipment.proto", text)
    assert compiled.package == package
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(compiled)
    message_type = message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{package}.Shipment")
    )
    message: Any = message_type.FromString(record[6:])
    assert (message.id, message.count, message.HasField("express")) == ("s-1", 0, True)
    assert message.parcels[0].weight == "1.250" and message.parcels[0].shipped == "2026-12-05"
    assert message.by_depot["north"].label == b"\x00\xff"
    assert message.at.ToDatetime(UTC) == shipment.at


async def test_a_writer_without_a_required_field_is_a_decode_error(tmp_path: Path) -> None:
    registry = MemoryRegistry()
    schema_id = registry.add(
        'syntax = "proto3"; package p; message Thin { string id = 1; }', "PROTOBUF", "thin"
    )
    codec = codec_for(Shipment, registry)
    record = frame(schema_id, b"\x00\x0a\x03s-1")
    with pytest.raises(DecodeError, match=r"p\.Thin \(schema id 1\) does not fit Shipment") as err:
        (await loaded(codec, record)).decode(record)
    assert err.value.field == "$.at"


async def test_annotations_without_a_protobuf_form_are_refused() -> None:
    class Bad(Record):
        either: int | str

    class Naive(Record):
        when: datetime

    with pytest.raises(ConfigurationError, match=r"Bad\.either: Protobuf takes Optional"):
        codec_for(Bad, MemoryRegistry())
    naive = codec_for(Naive, MemoryRegistry())
    value = Naive(when=datetime(2026, 12, 5))
    await naive.prepare_send(value)
    with pytest.raises(TypeError, match="Naive as"):
        naive.encode(value)


def test_any_bytes_decode_to_a_record_or_a_decode_error() -> None:
    registry = MemoryRegistry()
    schema_id = registry.add(SHOP_PROTO, "PROTOBUF", "orders-value")
    codec = asyncio.run(loaded(codec_for(ShopOrder, registry), frame(schema_id, b"\x00")))
    # An out-of-range Timestamp (field 9: seconds = 2**60), which JSON cannot show.
    far_future = b"\x4a\x0a\x08" + bytes([0x80] * 8) + b"\x10"

    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.binary(max_size=200))
    @example(far_future)
    def check(body: bytes) -> None:
        try:
            decoded = codec.decode(frame(schema_id, b"\x00" + body))
        except DecodeError:
            return
        assert isinstance(decoded, ShopOrder)

    check()
