"""The fast path of a Protobuf message into a Record is the reference path, only faster.

Random messages of writer schemas covering every kind of field (scalars of each width,
bytes, open and closed enums, optional, oneof, repeated, maps with string, int and bool
keys, nested and recursive messages, Timestamp, Duration, wrappers, Struct) are read into
Records that fit them, that fit them loosely (strings into ints...) and that do not fit:
`message_to_record` gives the same Record, or the same DecodeError, as `record_by_reference`
(MessageToDict, then msgspec), and the fast dict equals MessageToDict's wherever that works.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerogrid.errors import DecodeError
from aerogrid.records import Record
from aerogrid.schemas.protobuf_convert import fast_dict, reference_dict
from aerogrid.schemas.protobuf_parse import parse_schema
from aerogrid.schemas.protobuf_record import (
    message_class,
    message_to_record,
    pool_with,
    record_by_reference,
)
from support.comparable import comparable

ITEM_PROTO = """
syntax = "proto3";
package prop.v1;
import "google/protobuf/timestamp.proto";
import "google/protobuf/duration.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/struct.proto";

message Item {
  string name = 1;
  int64 count = 2;
  int32 small = 3;
  uint64 big = 4;
  sint32 delta = 5;
  fixed64 fixed = 6;
  double price = 7;
  float ratio = 8;
  bool flag = 9;
  bytes blob = 10;
  enum Kind { KIND_UNSPECIFIED = 0; A = 1; B = 2; }
  Kind kind = 11;
  optional string note = 12;
  optional int64 maybe = 13;
  oneof choice { string text = 14; int32 number = 15; }
  repeated string tags = 16;
  repeated int64 counts = 17;
  repeated Kind kinds = 18;
  map<string, int64> by_name = 19;
  map<int32, string> by_number = 20;
  map<bool, Item> by_flag = 21;
  Item child = 22;
  repeated Item children = 23;
  google.protobuf.Timestamp at = 24;
  google.protobuf.Duration took = 25;
  google.protobuf.Int64Value wrapped = 26;
  google.protobuf.Struct extra = 27;
  repeated double prices = 28;
  google.protobuf.StringValue label = 29;
  repeated float ratios = 30;
}
"""
LEGACY_PROTO = """
syntax = "proto2";
package prop.v2;
message Legacy {
  optional string name = 1;
  required int32 id = 2;
  enum Color { RED = 1; BLUE = 2; }
  optional Color color = 3;
  repeated sint64 xs = 4;
  optional double weight = 5 [default = 1.5];
}
"""


class Fits(Record):
    """Item read as a Record would mirror it."""

    name: str
    count: int
    small: int
    big: int
    price: float
    ratio: float
    flag: bool
    blob: bytes
    kind: str
    tags: list[str]
    counts: list[int]
    by_name: dict[str, int]
    by_number: dict[str, str]
    note: str | None = None
    maybe: int | None = None
    text: str | None = None
    number: int | None = None
    at: datetime | None = None
    child: dict[str, Any] | None = None
    children: list[dict[str, Any]] = []
    took: str | None = None
    wrapped: int | None = None
    extra: dict[str, Any] | None = None
    label: str | None = None
    coupon: str = "none"


class Loose(Record):
    """Item's fields read as other types: strings as numbers, numbers as strings..."""

    name: int
    count: str
    small: str
    kind: int
    tags: list[int]
    blob: str
    by_flag: dict[str, Fits]
    at: int | None = None


class Thin(Record):
    """A field Item does not have: every message fails the same way."""

    missing: int
    name: str = ""


class LegacyRecord(Record):
    id: int
    xs: list[int]
    weight: float
    name: str | None = None
    color: str | None = None


TEXTS = st.text(st.characters(exclude_categories=["Cs"]), max_size=8)
SMALL_TEXTS = st.sampled_from(["", "0", "7", "-3", "1.5", "x", "A", "true"]) | TEXTS
INTEGERS = {  # mostly small ones, some anywhere in the type's range
    FieldDescriptor.CPPTYPE_INT32: st.integers(-3, 9) | st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: st.integers(0, 9) | st.integers(0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: st.integers(-3, 9) | st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: st.integers(0, 9) | st.integers(0, 2**64 - 1),
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats() | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXTS, inner, max_size=3),
    max_leaves=6,
)


def fill(data: st.DataObject, message: Any, depth: int) -> None:
    """Set a random subset of `message`'s fields to random values (nesting at most `depth`)."""
    descriptor: Descriptor = message.DESCRIPTOR
    name = descriptor.full_name
    if name == "google.protobuf.Timestamp" or name == "google.protobuf.Duration":
        # Beyond what JSON can show too: the reference refuses it, so must the fast path.
        message.seconds = data.draw(st.integers(-(2**40), 2**40) | st.integers(-100, 100))
        message.nanos = data.draw(st.integers(-(10**9), 10**9) | st.just(0))
        return
    if name == "google.protobuf.Struct":
        message.update(data.draw(st.dictionaries(TEXTS, JSON_VALUES, max_size=3)))
        return
    for field in descriptor.fields:
        if not data.draw(st.booleans()):
            continue
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if depth <= 0:
                continue
            entry: Any = field.message_type
            if field.is_repeated and entry.GetOptions().map_entry:
                container = getattr(message, field.name)
                value_field = entry.fields_by_name["value"]
                for _ in range(data.draw(st.integers(0, 2))):
                    key = scalar(data, entry.fields_by_name["key"])
                    if value_field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                        fill(data, container[key], depth - 1)
                    else:
                        container[key] = scalar(data, value_field)
            elif field.is_repeated:
                for _ in range(data.draw(st.integers(0, 2))):
                    fill(data, getattr(message, field.name).add(), depth - 1)
            else:
                getattr(message, field.name).SetInParent()
                fill(data, getattr(message, field.name), depth - 1)
        elif field.is_repeated:
            values = [scalar(data, field) for _ in range(data.draw(st.integers(0, 3)))]
            getattr(message, field.name).extend(values)
        else:
            setattr(message, field.name, scalar(data, field))


def scalar(data: st.DataObject, field: FieldDescriptor) -> Any:
    kind = field.cpp_type
    if kind in INTEGERS:
        return data.draw(INTEGERS[kind])
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return data.draw(st.floats())
    if kind == FieldDescriptor.CPPTYPE_FLOAT:
        return data.draw(st.floats(width=32))
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        return data.draw(st.booleans())
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        enum: Any = field.enum_type
        numbers = [v.number for v in enum.values]
        if enum.is_closed:
            return data.draw(st.sampled_from(numbers))
        return data.draw(st.sampled_from(numbers) | st.integers(-2, 9))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return data.draw(st.binary(max_size=6))
    return data.draw(SMALL_TEXTS)


def outcome(read: Any, message: Message, record_type: type[Record]) -> tuple[str, Any]:
    """What reading `message` as `record_type` gave: the Record (comparable, a NaN in it
    too), or the DecodeError's words."""
    try:
        return "record", comparable(read(message, record_type, "prop.v1.Item (schema id 1)"))
    except DecodeError as exc:
        return "error", (str(exc), exc.field)


def writer_class(text: str, full_name: str) -> type[Message]:
    file = parse_schema(text, f"{full_name}.proto")
    return message_class(pool_with(file), full_name)


@pytest.mark.parametrize(
    ("text", "full_name", "records"),
    [
        (ITEM_PROTO, "prop.v1.Item", (Fits, Loose, Thin)),
        (LEGACY_PROTO, "prop.v2.Legacy", (LegacyRecord, Thin)),
    ],
)
def test_the_fast_path_reads_as_the_reference_does(
    text: str, full_name: str, records: tuple[type[Record], ...]
) -> None:
    writer = writer_class(text, full_name)
    seen: set[str] = set()

    @settings(
        max_examples=150,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def check(data: st.DataObject) -> None:
        message: Any = writer()
        fill(data, message, depth=2)
        # The message as a consumer has it: parsed from the wire by the writer's schema.
        message = writer.FromString(message.SerializePartialToString())
        try:
            expected = reference_dict(message)
        except Exception:
            assert fast_dict(message) is None
        else:
            assert fast_dict(message) == expected  # never None where the reference works
        for record_type in records:
            result = outcome(message_to_record, message, record_type)
            assert result == outcome(record_by_reference, message, record_type)
            seen.add(f"{record_type.__name__} {result[0]}")

    check()
    # Both outcomes were met, so both were compared.
    assert {f"{records[0].__name__} record", f"{records[0].__name__} error"} <= seen


class Shadowing(Record):
    HasField: str
    n: int | None = None


def test_a_field_named_as_a_message_method_leaves_the_message_to_the_reference() -> None:
    """`message.HasField` is then the field, not the method the fast path asks of `n`."""
    text = (
        'syntax = "proto3"; package p3; message Odd { string HasField = 1; optional int64 n = 2; }'
    )
    writer = writer_class(text, "p3.Odd")
    message = writer.FromString(writer(HasField="x", n=3).SerializeToString())
    assert fast_dict(message) is None
    assert message_to_record(message, Shadowing, "odd") == Shadowing(HasField="x", n=3)
