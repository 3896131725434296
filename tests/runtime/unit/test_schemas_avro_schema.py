"""The Avro schema derived from a Record's annotations (the reader and the sent schema)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal

import fastavro
import msgspec
import pytest

from aerogrid import Record
from aerogrid.errors import ConfigurationError
from aerogrid.schemas.avro_schema import avro_full_name, avro_schema

MODULE = __name__


class Order(Record):
    product: str
    quantity: int


class Address(Record):
    city: str


class Everything(Record):
    name: str
    count: int
    ratio: float
    active: bool
    blob: bytes
    price: Annotated[Decimal, msgspec.Meta(extra={"precision": 10, "scale": 2})]
    amount: Decimal
    at: dt.datetime
    day: dt.date
    ident: uuid.UUID
    home: Address
    note: str | None = None
    tags: list[str] = []
    attrs: dict[str, int] = {}
    work: Address | None = None
    level: int = 3
    label: str | None = "x"


def _field(schema: Any, name: str) -> dict[str, Any]:
    fields = {f["name"]: f for f in schema["fields"]}
    entry: dict[str, Any] = fields[name]
    return entry


def test_a_simple_record_is_a_named_record_of_primitives() -> None:
    assert avro_schema(Order) == {
        "type": "record",
        "name": "Order",
        "namespace": MODULE,
        "fields": [
            {"name": "product", "type": "string"},
            {"name": "quantity", "type": "long"},
        ],
    }


def test_every_supported_annotation_has_its_avro_type() -> None:
    schema = avro_schema(Everything)
    expected = {
        "name": "string",
        "count": "long",
        "ratio": "double",
        "active": "boolean",
        "blob": "bytes",
        "price": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        "amount": {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 9},
        "at": {"type": "long", "logicalType": "timestamp-micros"},
        "day": {"type": "int", "logicalType": "date"},
        "ident": {"type": "string", "logicalType": "uuid"},
        "note": ["null", "string"],
        "tags": {"type": "array", "items": "string"},
        "attrs": {"type": "map", "values": "long"},
        "level": "long",
        "label": ["string", "null"],  # a non-null default's branch comes first
    }
    for name, avro_type in expected.items():
        assert _field(schema, name)["type"] == avro_type, name
    assert _field(schema, "home")["type"] == {
        "type": "record",
        "name": "Address",
        "namespace": MODULE,
        "fields": [{"name": "city", "type": "string"}],
    }
    # The second use of a named record refers to it by its full name.
    assert _field(schema, "work")["type"] == ["null", f"{MODULE}.Address"]
    fastavro.parse_schema(schema)  # a schema Avro accepts


def test_defaults_become_avro_defaults_and_required_fields_have_none() -> None:
    schema = avro_schema(Everything)
    assert "default" not in _field(schema, "name")
    assert _field(schema, "note")["default"] is None
    assert _field(schema, "tags")["default"] == []
    assert _field(schema, "attrs")["default"] == {}
    assert _field(schema, "level")["default"] == 3
    assert _field(schema, "label")["default"] == "x"


class WithRichDefaults(Record):
    price: Annotated[Decimal, msgspec.Meta(extra={"precision": 10, "scale": 2})] = Decimal("-1.5")
    at: dt.datetime = dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
    day: dt.date = dt.date(1970, 1, 11)
    blob: bytes = b"\x01\xff"


def test_logical_defaults_take_their_avro_json_form() -> None:
    """The JSON form Avro defaults take: unscaled two's complement bytes, micros, days.

    (fastavro hands such defaults back unconverted; AvroCodec lets the Record's own
    default fill a field the writer lacks, see test_schemas_avro.)
    """
    schema = avro_schema(WithRichDefaults)
    assert _field(schema, "price")["default"] == "\xff\x6a"  # -150 at scale 2
    assert _field(schema, "at")["default"] == 1_000_000
    assert _field(schema, "day")["default"] == 10
    assert _field(schema, "blob")["default"] == "\x01\xff"
    fastavro.parse_schema(schema)


class Renamed(Record, rename="camel"):
    unit_price: float
    __avro_name__: ClassVar[str] = "com.acme.PricedItem"


def test_encoded_field_names_and_an_explicit_avro_name() -> None:
    schema = avro_schema(Renamed)
    assert isinstance(schema, dict)
    assert (schema["namespace"], schema["name"]) == ("com.acme", "PricedItem")
    assert schema["fields"] == [{"name": "unitPrice", "type": "double"}]
    assert avro_full_name(Renamed) == "com.acme.PricedItem"
    assert avro_full_name(Order) == f"{MODULE}.Order"


@pytest.mark.parametrize(
    ("declared", "expected"),
    [(str, "string"), (int, "long"), (float, "double"), (bool, "boolean"), (bytes, "bytes")],
)
def test_primitive_keys_and_values(declared: type, expected: str) -> None:
    assert avro_schema(declared) == expected


class WithAny(Record):
    payload: Any


class WithIntKeys(Record):
    counts: dict[int, int]


class WithUnion(Record):
    either: int | str


@pytest.mark.parametrize(
    ("record", "path"),
    [(WithAny, r"\$\.payload"), (WithIntKeys, r"\$\.counts"), (WithUnion, r"\$\.either")],
)
def test_an_annotation_without_an_avro_form_names_the_field(record: type, path: str) -> None:
    with pytest.raises(ConfigurationError, match=path):
        avro_schema(record)


def test_a_type_that_is_not_a_record_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs a Record subclass"):
        avro_schema(list)


class Colour(enum.Enum):
    RED = "RED"
    GREEN = "GREEN"


class Size(enum.Enum):
    SMALL = "small size"


class Painted(Record):
    colour: Colour
    other: Colour | None = None
    grade: Literal["a", "b"] = "a"
    rank: Literal[1, 2] = 1
    seen: set[str] = set()
    steps: tuple[int, ...] = ()
    favourite: Colour = Colour.GREEN


def test_enums_literals_sets_and_tuples() -> None:
    schema = avro_schema(Painted)
    assert _field(schema, "colour")["type"] == {
        "type": "enum",
        "name": "Colour",
        "namespace": MODULE,
        "symbols": ["RED", "GREEN"],
    }
    assert _field(schema, "other")["type"] == ["null", f"{MODULE}.Colour"]
    assert _field(schema, "grade") == {"name": "grade", "type": "string", "default": "a"}
    assert _field(schema, "rank") == {"name": "rank", "type": "long", "default": 1}
    assert _field(schema, "seen") == {
        "name": "seen",
        "type": {"type": "array", "items": "string"},
        "default": [],
    }
    assert _field(schema, "steps")["default"] == []
    assert _field(schema, "favourite")["default"] == "GREEN"
    fastavro.parse_schema(schema)


class Sized(Record):
    size: Size


class Mixed(Record):
    either: Literal["a", 1]


def test_enums_whose_values_are_not_avro_names_and_mixed_literals_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"\$\.size.*Avro names"):
        avro_schema(Sized)
    with pytest.raises(ConfigurationError, match=r"\$\.either"):
        avro_schema(Mixed)


class Money(Record):
    amount: Annotated[Decimal, msgspec.Meta(extra={"precision": 9, "scale": 2})]
    at: dt.datetime


ZERO = Money(amount=Decimal("0.01"), at=dt.datetime(1970, 1, 1, 0, 0, 2, tzinfo=dt.UTC))


def zero() -> Money:
    return ZERO


def zeros() -> list[Money]:
    return [ZERO]


class Wallet(Record):
    first: Money = msgspec.field(default_factory=zero)
    second: Money = msgspec.field(default_factory=zero)  # a name reference to Money
    history: list[Money] = msgspec.field(default_factory=zeros)


def test_defaults_holding_records_use_each_fields_avro_form() -> None:
    schema = avro_schema(Wallet)
    money = {"amount": "\x01", "at": 2_000_000}
    assert _field(schema, "first")["default"] == money
    assert _field(schema, "second")["type"] == f"{MODULE}.Money"
    assert _field(schema, "second")["default"] == money
    assert _field(schema, "history")["default"] == [money]
    fastavro.parse_schema(schema)


class Stamped(Record):
    at: Annotated[dt.datetime, msgspec.Meta(extra={"timestamp": "millis"})] = dt.datetime(
        1970, 1, 1, 0, 0, 2, tzinfo=dt.UTC
    )
    micro: dt.datetime = dt.datetime(1970, 1, 1, 0, 0, 2, tzinfo=dt.UTC)


class BadUnit(Record):
    at: Annotated[dt.datetime, msgspec.Meta(extra={"timestamp": "nanos"})]


def test_timestamps_in_millis_when_asked() -> None:
    schema = avro_schema(Stamped)
    assert _field(schema, "at") == {
        "name": "at",
        "type": {"type": "long", "logicalType": "timestamp-millis"},
        "default": 2_000,
    }
    assert _field(schema, "micro")["default"] == 2_000_000
    with pytest.raises(ConfigurationError, match="'nanos'"):
        avro_schema(BadUnit)
