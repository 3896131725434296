"""The Protobuf registry codec: message indexes, the writer schema's message, .proto text.

Records are made the way producers make them: by confluent-kafka's `ProtobufSerializer`
(the reference client; here with its own in-memory registry client, whose stored
schema, a base64 descriptor, our codec then reads) and by hand for the bad cases.
Message classes come from protoc (grpcio-tools) compiling real .proto text.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.schemas.protobuf import (
    ProtobufCodec,
    encode_indexes,
    message_indexes,
    read_indexes,
)
from aerogrid.schemas.protobuf_parse import message_tree, parse_schema
from aerogrid.schemas.protobuf_record import pool_with
from aerogrid.schemas.protobuf_text import proto_text
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame
from support.memory_registry import MemoryRegistry
from support.protobuf_shop import SHOP_PROTO, an_order, compile_proto, message_classes
from support.registry_codecs import assert_decode_errors, loaded

BUDGET = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def shop(tmp_path: Path) -> dict[str, type[Message]]:
    return message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))


def reference_record(message: Message, registry: SchemaRegistryClient) -> bytes:
    """The record confluent-kafka's ProtobufSerializer writes for `message`."""
    serializer = ProtobufSerializer(type(message), registry, {"use.deprecated.format": False})
    record = serializer(message, SerializationContext("orders", MessageField.VALUE))
    assert isinstance(record, bytes)
    return record


def codec_for(message_class: type[Message], registry: MemoryRegistry) -> ProtobufCodec:
    return ProtobufCodec(
        message_class, registry=registry.client(), subjects=SubjectNamer(topic="orders")
    )


def test_message_indexes_count_nested_messages_and_map_entries(shop: dict[str, Any]) -> None:
    assert message_indexes(shop["Order"].DESCRIPTOR) == [0]
    # Order's nested types are TagCountsEntry (the map's entry), then Line.
    assert message_indexes(shop["Order.Line"].DESCRIPTOR) == [0, 1]
    assert message_indexes(shop["Refund"].DESCRIPTOR) == [1]
    assert encode_indexes([0]) == b"\x00"
    assert encode_indexes([0, 1]) == b"\x04\x00\x02"  # zigzag: count 2, then 0 and 1
    assert encode_indexes([1]) == b"\x02\x02"
    for indexes in ([0], [1], [0, 1], [3, 70, 200]):
        raw = encode_indexes(indexes) + b"rest"
        assert read_indexes(memoryview(raw)) == (indexes, len(raw) - 4)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "ends inside its message indexes"),
        (b"\x04\x00", "ends inside its message indexes"),
        (b"\xff" * 11, "longer than 10 bytes"),
        (b"\x01", "message index count -1"),
        (b"\xfe\x03", "message index count 255"),
        (b"\x02\x01", "message index -1 is negative"),
    ],
)
def test_bad_message_indexes_are_decode_errors(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        read_indexes(memoryview(raw))


LEGACY_PROTO = r"""
syntax = "proto2";
package legacy;
message Item {
  required string sku = 1;
  optional int32 count = 2 [default = -3];
  optional string label = 3 [default = "a \"quoted\" \\ name\n"];
  optional Kind kind = 4 [default = BIG];
  repeated int32 sizes = 5 [packed = true];
  optional bytes blob = 6 [default = "\001\377"];
  optional double ratio = 7 [default = inf];
  enum Kind { SMALL = 1; BIG = 2; }
  oneof choice { string a = 8; int64 b = 9; }
  map<string, Item> children = 10;
}
"""


@pytest.mark.parametrize("text", [SHOP_PROTO, LEGACY_PROTO], ids=["proto3", "proto2"])
def test_proto_text_compiles_back_to_the_same_descriptor(tmp_path: Path, text: str) -> None:
    original = compile_proto(tmp_path, "shop.proto", text)
    ours = proto_text(original)
    (tmp_path / "again").mkdir()
    again = compile_proto(tmp_path / "again", "shop.proto", ours)
    assert again == original, ours


def resolved(file: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """`file` as a pool resolves it (full type names, types filled), minus what decoding skips."""
    out = descriptor_pb2.FileDescriptorProto()
    pool_with(file).FindFileByName(file.name).CopyToProto(out)
    out.ClearField("name")

    def strip(message: descriptor_pb2.DescriptorProto) -> None:
        message.ClearField("reserved_range")
        message.ClearField("reserved_name")
        for field in message.field:
            field.ClearField("json_name")
            field.ClearField("default_value")  # decoding leaves defaults to the Record
            field.ClearField("options")
        for nested in message.nested_type:
            strip(nested)

    for message in out.message_type:
        strip(message)
    return out


@pytest.mark.parametrize("text", [SHOP_PROTO, LEGACY_PROTO], ids=["proto3", "proto2"])
def test_the_writer_schema_is_read_from_proto_text_and_base64_alike(
    tmp_path: Path, text: str
) -> None:
    original = compile_proto(tmp_path, "shop.proto", text)
    from_text = parse_schema(text, "shop.proto")
    from_ours = parse_schema(proto_text(original), "shop.proto")
    encoded = base64.b64encode(original.SerializeToString()).decode()
    from_base64 = parse_schema(encoded, "shop.proto")
    assert resolved(from_text) == resolved(original)
    assert resolved(from_ours) == resolved(original)
    assert resolved(from_base64) == resolved(original)
    assert message_tree(from_text) == message_tree(original)


def test_message_trees_count_map_entries_where_protoc_does() -> None:
    tree = message_tree(parse_schema(SHOP_PROTO))
    assert [name for name, _ in tree] == ["Order", "Refund"]
    assert [name for name, _ in tree[0][1]] == ["TagCountsEntry", "Line"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('syntax = "proto3"; message A { string a = 1; ', "ends in the middle"),
        ('edition = "2023"; message A {}', "editions are not supported"),
        ('syntax = "proto2"; message A { optional group G = 1 { } }', "groups are not supported"),
        ('syntax = "proto3"; message A { string a = x; }', "invalid literal"),
        ('syntax = "proto4";', "not proto2 or proto3"),
    ],
)
def test_a_writer_schema_that_does_not_parse_says_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_schema(text)


def test_imports_other_than_well_known_types_are_refused(tmp_path: Path) -> None:
    compile_proto(tmp_path, "money.proto", 'syntax = "proto3"; message Money { int64 cents = 1; }')
    file = compile_proto(
        tmp_path,
        "pay.proto",
        'syntax = "proto3"; import "money.proto"; message Pay { Money m = 1; }',
    )
    with pytest.raises(ConfigurationError, match=r"imports money\.proto: schema references"):
        proto_text(file)


async def test_decodes_what_the_reference_serializer_wrote(shop: dict[str, Any]) -> None:
    reference_registry = SchemaRegistryClient.new_client({"url": "mock://shop"})
    order = an_order(shop)
    record = reference_record(order, reference_registry)
    assert record[5:6] == b"\x00"  # message indexes [0]
    # Our registry holds what the reference client registered (a base64 descriptor).
    stored = reference_registry.get_schema(int.from_bytes(record[1:5], "big"))
    registry = MemoryRegistry()
    schema_id = registry.add(str(stored.schema_str), "PROTOBUF", "orders-value")
    record = frame(schema_id, record[5:])
    codec = await loaded(codec_for(shop["Order"], registry), record)
    assert codec.decode(record) == order

    line = shop["Order.Line"](sku="B", price=2.0)
    nested = reference_record(line, reference_registry)
    assert nested[5:8] == b"\x04\x00\x02"
    stored = reference_registry.get_schema(int.from_bytes(nested[1:5], "big"))
    nested = frame(registry.add(str(stored.schema_str), "PROTOBUF", "lines"), nested[5:])
    line_codec = await loaded(codec_for(shop["Order.Line"], registry), nested)
    assert line_codec.decode(nested) == line


async def test_send_registers_proto_text_and_frames_what_decode_reads(
    shop: dict[str, Any],
) -> None:
    registry = MemoryRegistry()
    codec = codec_for(shop["Order"], registry)
    order = an_order(shop)
    await codec.prepare_send(order)
    await codec.prepare_send(order)
    assert registry.requests == ["POST /subjects/orders-value/versions"]
    (subject, text), schema_id = next(iter(registry.ids.items()))
    assert subject == "orders-value"
    assert "package shop.v1;" in text and 'import "google/protobuf/timestamp.proto";' in text
    record = codec.encode(order)
    assert record is not None and record[:6] == frame(schema_id, b"\x00")
    assert (await loaded(codec_for(shop["Order"], registry), record)).decode(record) == order
    assert codec.encode(None) is None
    with pytest.raises(TypeError, match=r"expected shop\.v1\.Order"):
        codec.encode(shop["Refund"]())


async def test_bad_records_are_decode_errors_naming_why(shop: dict[str, Any]) -> None:
    registry = MemoryRegistry()
    schema_id = registry.add(SHOP_PROTO, "PROTOBUF", "orders-value")
    avro_id = registry.add('"string"', "AVRO", "other")
    codec = codec_for(shop["Order"], registry)
    payload = an_order(shop).SerializeToString()
    refund = shop["Refund"](order_id="o-1").SerializeToString()
    cases = {
        frame(999, b"\x00" + payload): "schema id 999 is not in the registry",
        frame(avro_id, b"\x00" + payload): f"schema id {avro_id} is a AVRO schema",
        frame(schema_id, b"\x02\x04" + payload): r"message index \[2\] is not in the writer",
        frame(schema_id, b"\x04\x00\x0a" + payload): r"message index \[0, 5\]",
        frame(schema_id, b"\x02\x02" + refund): "is a shop.v1.Refund .* reads shop.v1.Order",
        frame(schema_id, b"\x00\xff\xff\xff"): "not a shop.v1.Order",
        b"\x01" + frame(schema_id, payload)[1:]: "magic byte 0x01 is not 0",
        b"\x00\x00": "shorter than the 5-byte header",
    }
    await assert_decode_errors(codec, cases)
    assert codec.decode(None) is None


def test_any_bytes_decode_to_a_message_or_a_decode_error(tmp_path: Path) -> None:
    shop = message_classes(compile_proto(tmp_path, "shop.proto", SHOP_PROTO))
    registry = MemoryRegistry()
    schema_id = registry.add(SHOP_PROTO, "PROTOBUF", "orders-value")
    codec = asyncio.run(loaded(codec_for(shop["Order"], registry), frame(schema_id, b"\x00")))
    valid = an_order(shop).SerializeToString()

    @BUDGET
    @given(st.binary(max_size=200), st.sampled_from([b"", b"\x00", b"\x02\x00", b"\x04\x00\x02"]))
    @example(valid[:7], b"\x00")
    def check(body: bytes, indexes: bytes) -> None:
        try:
            decoded = codec.decode(frame(schema_id, indexes + body))
        except DecodeError:
            return
        assert isinstance(decoded, shop["Order"])

    check()
