"""JSON values as `aerogrid produce --format avro` takes them: checked against the schema with
the failing field named, Avro's logical types from their JSON forms, written by fastavro and
read back the same."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import fastavro
import pytest

from aerogrid_devkit.registry_records.avro_json import ValueMismatch, avro_datum

SCHEMA = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [
                        {"name": "sku", "type": "string"},
                        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal",
                                                   "precision": 6, "scale": 2}},
                    ],
                },
            },
        },
        {"name": "tags", "type": {"type": "map", "values": "long"}, "default": {}},
        {"name": "first", "type": ["null", "Line"], "default": None},
        {"name": "weight", "type": ["null", "double"], "default": None},
    ],
}  # fmt: skip
GOOD = {
    "at": "2026-12-05T10:00:00+00:00",
    "day": "2026-12-05",
    "status": "PAID",
    "lines": [{"sku": "tea", "price": "3.50"}, {"sku": "cake", "price": 12}],
    "first": {"sku": "tea", "price": 3.5},
    "weight": 2,
}


def _round_trip(value: Any) -> Any:
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(SCHEMA, named_schemas=named)
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, parsed, avro_datum(parsed, value, named))
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, parsed, None)


def test_logical_types_from_json_written_and_read_back() -> None:
    read = _round_trip(GOOD)
    assert read["at"] == datetime(2026, 12, 5, 10, tzinfo=UTC)
    assert read["day"] == date(2026, 12, 5)
    assert [line["price"] for line in read["lines"]] == [Decimal("3.50"), Decimal("12.00")]
    assert read["first"] == {"sku": "tea", "price": Decimal("3.50")}
    assert (read["status"], read["tags"], read["weight"]) == ("PAID", {}, 2.0)
    assert _round_trip({**GOOD, "at": 1796464800000})["at"] == read["at"]  # the number too


@pytest.mark.parametrize(
    ("change", "path", "said"),
    [
        ({"lines": [{"sku": "tea", "price": 1}, {"sku": 3, "price": 1}]}, "$.lines[1].sku",
         "3 is not a string"),
        ({"lines": [{"sku": "tea"}]}, "$.lines[0].price", "missing"),
        ({"lines": [{"sku": "tea", "price": "12345.6"}]}, "$.lines[0].price",
         "more than 6 digits"),
        ({"status": "LOST"}, "$.status", "'LOST' is not one of ['NEW', 'PAID']"),
        ({"at": "yesterday"}, "$.at", "is not an ISO timestamp-millis"),
        ({"tags": {"a": 1.5}}, "$.tags.a", "1.5 is not an integer (long)"),
        ({"first": {"sku": "tea", "price": "x"}}, "$.first.price", "is not a decimal number"),
        ({"weight": "heavy"}, "$.weight", "matches no branch of the union"),
        ({"colour": "red"}, "$.colour", "record shop.Order has no field 'colour'"),
    ],
)  # fmt: skip
def test_a_value_that_does_not_fit_names_the_field(
    change: dict[str, Any], path: str, said: str
) -> None:
    with pytest.raises(ValueMismatch) as raised:
        _round_trip({**GOOD, **change})
    assert raised.value.path == path and said in str(raised.value)
