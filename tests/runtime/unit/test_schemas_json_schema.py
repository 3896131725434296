"""The JSON Schema registry codec: validation against the WRITER's schema, then the Record.

Records are written by confluent-kafka's `JSONSerializer` (the reference client, with its
own in-memory registry client; our codec reads the schema it stored) and by hand for
the bad cases.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema
import msgspec
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.limits import MAX_DEPTH
from aerogrid.records import Record
from aerogrid.schemas.json_schema import DRAFT_07, JsonSchemaCodec, record_json_schema
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame
from support.memory_registry import MemoryRegistry
from support.registry_codecs import assert_decode_errors, loaded

BUDGET = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


class Line(Record):
    sku: str
    qty: int


class Order(Record):
    order_id: str
    region: str
    quantity: int
    price: Decimal
    at: datetime
    note: str | None = None
    lines: list[Line] = []


#: What a producer in another language would register: draft-07, an extra field.
PRODUCER_SCHEMA = {
    "$schema": DRAFT_07,
    "title": "Order",
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "region": {"type": "string", "enum": ["eu", "us"]},
        "quantity": {"type": "integer", "minimum": 1},
        "price": {"type": "string"},
        "at": {"type": "string"},
        "channel": {"type": "string"},
    },
    "required": ["order_id", "region", "quantity", "price", "at"],
}
DOC = {
    "order_id": "o-1",
    "region": "eu",
    "quantity": 3,
    "price": "9.99",
    "at": "2026-12-05T09:00:00Z",
    "channel": "web",
}
EXPECTED = Order(
    order_id="o-1",
    region="eu",
    quantity=3,
    price=Decimal("9.99"),
    at=datetime(2026, 12, 5, 9, tzinfo=UTC),
)


def codec_for(value_type: Any, registry: MemoryRegistry, topic: str = "orders") -> JsonSchemaCodec:
    return JsonSchemaCodec(value_type, registry=registry.client(), subjects=SubjectNamer(topic))


def test_a_records_schema_is_draft_07_with_its_nested_records() -> None:
    schema = record_json_schema(Order)
    assert schema["$schema"] == DRAFT_07
    assert schema["title"] == f"{Order.__module__}.Order"
    assert schema["required"] == ["order_id", "region", "quantity", "price", "at"]
    assert schema["properties"]["lines"]["items"] == {"$ref": "#/definitions/Line"}
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    assert validator.is_valid(msgspec.to_builtins(EXPECTED))
    assert not validator.is_valid({**DOC, "lines": [{"sku": "A"}]})  # a Line without qty


async def test_decodes_what_the_reference_serializer_wrote() -> None:
    reference_registry = SchemaRegistryClient.new_client({"url": "mock://orders"})
    serializer = JSONSerializer(json.dumps(PRODUCER_SCHEMA), reference_registry)
    record = serializer(DOC, SerializationContext("orders", MessageField.VALUE))
    assert isinstance(record, bytes)
    stored = reference_registry.get_schema(int.from_bytes(record[1:5], "big"))
    registry = MemoryRegistry()
    record = frame(registry.add(str(stored.schema_str), "JSON", "orders-value"), record[5:])
    assert (await loaded(codec_for(Order, registry), record)).decode(record) == EXPECTED
    as_dict = (await loaded(codec_for(dict, registry), record)).decode(record)
    assert as_dict == DOC


async def test_a_record_failing_the_writer_schema_names_the_first_failing_path() -> None:
    registry = MemoryRegistry()
    schema_id = registry.add(json.dumps(PRODUCER_SCHEMA), "JSON", "orders-value")
    codec = await loaded(codec_for(Order, registry), frame(schema_id, b"{}"))
    cases = {
        json.dumps({**DOC, "quantity": 0}): "$.quantity",
        json.dumps({**DOC, "region": "mars"}): "$.region",
        json.dumps({k: v for k, v in DOC.items() if k != "at"}): "$",
    }
    for document, path in cases.items():
        with pytest.raises(DecodeError, match=f"does not match schema id {schema_id} at") as err:
            codec.decode(frame(schema_id, document.encode()))
        assert err.value.field == path
    # Valid for the writer, but the reader's Order needs a decimal price:
    lenient = registry.add(json.dumps({"type": "object"}), "JSON", "orders-value")
    record = frame(lenient, json.dumps({**DOC, "price": "cheap"}).encode())
    with pytest.raises(DecodeError, match=f"matches schema id {lenient} but not Order") as err:
        (await loaded(codec, record)).decode(record)
    assert err.value.field == "$.price"


async def test_bad_records_are_decode_errors_naming_why() -> None:
    registry = MemoryRegistry()
    schema_id = registry.add(json.dumps(PRODUCER_SCHEMA), "JSON", "orders-value")
    avro_id = registry.add('"string"', "AVRO", "other")
    broken_id = registry.add('{"type": 5}', "JSON", "other")
    remote_id = registry.add('{"$ref": "http://127.0.0.1:9/order.json"}', "JSON", "other")
    codec = codec_for(Order, registry)
    body = json.dumps(DOC).encode()
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    cases = {
        frame(999, body): "schema id 999 is not in the registry",
        frame(avro_id, body): f"schema id {avro_id} is a AVRO schema",
        frame(broken_id, body): f"schema id {broken_id} does not parse as JSON",
        frame(remote_id, body): f"schema id {remote_id} cannot be applied: .*Unresolvable",
        frame(schema_id, b'{"order_id": '): f"not JSON \\(schema id {schema_id}\\)",
        frame(schema_id, b"\xff"): "not JSON",
        frame(schema_id, deep): "nested deeper than",
        b"\x01" + frame(schema_id, body)[1:]: "magic byte 0x01 is not 0",
        b"\x00\x00": "shorter than the 5-byte header",
    }
    await assert_decode_errors(codec, cases)
    with pytest.raises(DecodeError, match="Order: the record has no value \\(a tombstone\\)"):
        codec.decode(None)
    assert codec_for(dict, registry).decode(None) is None
    array = frame(registry.add("{}", "JSON", "any"), b"[1]")
    with pytest.raises(DecodeError, match="but not dict"):
        (await loaded(codec_for(dict, registry), array)).decode(array)


async def test_send_registers_the_records_schema_and_frames_what_decode_reads() -> None:
    registry = MemoryRegistry()
    codec = codec_for(Order, registry)
    order = Order(**{**msgspec.structs.asdict(EXPECTED), "lines": [Line(sku="A", qty=2)]})
    await codec.prepare_send(order)
    await codec.prepare_send(order)
    assert registry.requests == ["POST /subjects/orders-value/versions"]
    (subject, text), schema_id = next(iter(registry.ids.items()))
    assert subject == "orders-value"
    assert json.loads(text) == record_json_schema(Order)
    record = codec.encode(order)
    assert record is not None and record[:5] == frame(schema_id, b"")
    assert (await loaded(codec_for(Order, registry), record)).decode(record) == order
    # Our own schema is checked by msgspec alone: the same errors, the field's path.
    reader = await loaded(codec_for(Order, registry), record)
    wrong = {**msgspec.to_builtins(order), "lines": [{"sku": "A", "qty": "two"}]}
    with pytest.raises(DecodeError, match=f"does not match schema id {schema_id}: ") as err:
        reader.decode(frame(schema_id, json.dumps(wrong).encode()))
    assert err.value.field == "$.lines[0].qty"
    with pytest.raises(DecodeError, match=f"not JSON \\(schema id {schema_id}\\)"):
        reader.decode(frame(schema_id, b'{"order_id": '))
    assert codec.encode(None) is None
    with pytest.raises(TypeError, match="expected Order, got dict"):
        codec.encode(DOC)

    by_record = JsonSchemaCodec(
        Order, registry=registry.client(), subjects=SubjectNamer("orders", strategy="record")
    )
    await by_record.prepare_send(order)
    assert f"POST /subjects/{Order.__module__}.Order/versions" in registry.requests

    loose = codec_for(dict, registry, topic="events")
    await loose.prepare_send(DOC)
    record = loose.encode(DOC)
    assert record is not None
    assert (await loaded(codec_for(dict, registry), record)).decode(record) == DOC


async def test_plain_key_types_register_their_schema_and_round_trip() -> None:
    registry = MemoryRegistry()
    keys = JsonSchemaCodec(str, registry=registry.client(), subjects=SubjectNamer("orders", True))
    await keys.prepare_send("o-1")
    assert registry.requests == ["POST /subjects/orders-key/versions"]
    assert json.loads(next(iter(registry.ids))[1]) == {"$schema": DRAFT_07, "type": "string"}
    record = keys.encode("o-1")
    assert record is not None and record[5:] == b'"o-1"'
    assert (await loaded(keys, record)).decode(record) == "o-1"
    number = frame(registry.add('{"type": "integer"}', "JSON", "n"), b"7")
    assert (await loaded(codec_for(int, registry), number)).decode(number) == 7
    not_a_number = frame(registry.add('{"type": "integer"}', "JSON", "n"), b'"x"')
    with pytest.raises(DecodeError, match="does not match schema id"):
        (await loaded(keys, not_a_number)).decode(not_a_number)
    with pytest.raises(TypeError, match="expected int, got bool"):
        ints = codec_for(int, registry)
        await ints.prepare_send(1)
        ints.encode(True)


def test_other_types_are_refused_for_json_schema() -> None:
    with pytest.raises(ConfigurationError, match="takes a Record subclass, dict, str, int"):
        codec_for(bytes, MemoryRegistry())
    with pytest.raises(ConfigurationError, match="takes a Record subclass"):
        codec_for(list[int], MemoryRegistry())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


def test_any_bytes_decode_to_a_record_or_a_decode_error() -> None:
    registry = MemoryRegistry()
    schema_id = registry.add(json.dumps(PRODUCER_SCHEMA), "JSON", "orders-value")
    codec = asyncio.run(loaded(codec_for(Order, registry), frame(schema_id, b"{}")))

    @BUDGET
    @given(st.binary(max_size=200) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
    @example(json.dumps(DOC).encode())
    @example(json.dumps({**DOC, "price": [1]}).encode())
    def check(body: bytes) -> None:
        try:
            decoded = codec.decode(frame(schema_id, body))
        except DecodeError:
            return
        assert isinstance(decoded, Order)

    check()
