"""JSON Schema records: JSON in the Confluent wire format, validated by the writer's schema.

Decoding validates the record against the schema its header names (the WRITER's, from
the registry), as Confluent's `JSONDeserializer` does, then converts it to the topic's
`Record` with msgspec (or keeps the dict; keys may be str, int, float or bool too).
Sending registers the declared type's schema (msgspec's JSON Schema, as draft-07 with
`definitions`, the draft every registry accepts) under the subject strategy.

The validator is the `jsonschema` package, the one Confluent's Python serializers use.
Measured here (a 6-field order with one nested line): jsonschema 157 µs a record,
fastjsonschema 6.8 µs, msgspec's typed decode 0.4 µs. fastjsonschema was not taken:
it turns the registry's schema into Python source and execs it, fetches a remote `$ref`
with urllib by default (the app would dial wherever a schema points), and silently
ignores 2019-09/2020-12 keywords. A writer schema equal to the declared type's own (what
AeroGrid apps register) skips jsonschema: msgspec's decode enforces what it says, but for
one leniency: a JSON number for a Decimal, which the schema's "string" would refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.exceptions
import msgspec
import referencing
import referencing.jsonschema
from referencing import Resource

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.limits import MAX_DEPTH
from aerogrid.record_formats import json_error, json_too_deep
from aerogrid.records import Record
from aerogrid.schemas.codec import SCHEMA_TYPES
from aerogrid.schemas.codec_base import RegistryCodecBase
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer

SCHEMA_TYPE = SCHEMA_TYPES["json-schema"]
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
#: The plain types a key or value may be declared as, beside Records (dict: any JSON object).
PLAIN_TYPES: tuple[type, ...] = (dict, str, int, float, bool)


def record_json_schema(record_type: type[Record]) -> dict[str, Any]:
    """The JSON Schema (draft-07) of a Record: its own definition at the root.

    The title is the record's full name (`module.Class`, as Avro's namespace.name), which
    the "record" and "topic-record" subject strategies use, as Confluent's does.
    """
    (root,), definitions = msgspec.json.schema_components(
        [record_type], ref_template="#/definitions/{name}"
    )
    own = definitions[root["$ref"].rsplit("/", 1)[1]]
    schema: dict[str, Any] = {"$schema": DRAFT_07, **own, "title": full_name(record_type)}
    if len(definitions) > 1 or _refers_to_itself(own, root["$ref"]):
        schema["definitions"] = definitions
    return schema


def json_schema_of(declared: Any) -> dict[str, Any]:
    """What a key or value type registers: a Record's schema, or a plain type's (untitled)."""
    if isinstance(declared, type) and issubclass(declared, Record):
        return record_json_schema(declared)
    (root,), _ = msgspec.json.schema_components([declared])
    return {"$schema": DRAFT_07, **root}


def full_name(record_type: type[Record]) -> str:
    return f"{record_type.__module__}.{record_type.__qualname__}"


def _refers_to_itself(schema: Any, ref: str) -> bool:
    if isinstance(schema, dict):
        return schema.get("$ref") == ref or any(_refers_to_itself(v, ref) for v in schema.values())
    if isinstance(schema, list):
        return any(_refers_to_itself(v, ref) for v in schema)
    return False


@dataclass(frozen=True)
class WriterCheck:
    """How records of one writer schema are checked: by `validator`, or (None) by msgspec."""

    validator: jsonschema.protocols.Validator | None


def _validate(validator: jsonschema.protocols.Validator, body: bytes, schema_id: int) -> None:
    """A DecodeError naming the first failing path unless `body` is valid for the writer."""
    try:
        document = msgspec.json.decode(body)
    except Exception as exc:  # msgspec.DecodeError, UnicodeDecodeError, RecursionError
        raise DecodeError(f"not JSON (schema id {schema_id}): {exc}") from None
    try:
        failure = jsonschema.exceptions.best_match(validator.iter_errors(document))
    except Exception as exc:  # a $ref nowhere (never fetched), a schema recursing forever
        raise DecodeError(
            f"schema id {schema_id} cannot be applied: {type(exc).__name__}: {exc}"
        ) from None
    if failure is not None:
        raise DecodeError(
            f"does not match schema id {schema_id} at {failure.json_path}: {failure.message}",
            field=failure.json_path,
        )


def _writer_check(registered: RegisteredSchema, own_schema: dict[str, Any]) -> WriterCheck:
    """How to check a writer schema's records; raises (the id is then unusable) if it is bad.

    A schema equal to the declared type's own needs no validator: msgspec's typed decode
    enforces the constraints msgspec wrote into it (a Decimal also from a JSON number),
    35 times faster than jsonschema. The schemas it references (fetched with it) are
    the validator's only other documents: a `$ref` to anything else is never fetched.
    """
    schema = _schema_document(registered.schema)
    if schema == own_schema and not registered.references:
        return WriterCheck(None)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    default = referencing.jsonschema.specification_with(
        schema.get("$schema", DRAFT_07), default=referencing.jsonschema.DRAFT7
    )
    documents = referencing.Registry().with_resources(
        (name, Resource.from_contents(_schema_document(text), default_specification=default))
        for name, text in _referenced(registered)
    )
    return WriterCheck(validator_class(schema, registry=documents))


def _schema_document(text: str) -> dict[str, Any]:
    schema = msgspec.json.decode(text)
    if isinstance(schema, bool):  # `true` accepts everything, `false` nothing
        return {} if schema else {"not": {}}
    if not isinstance(schema, dict):
        raise ValueError(f"a JSON Schema is an object or a boolean, not {type(schema).__name__}")
    return schema


def _referenced(registered: RegisteredSchema) -> Iterator[tuple[str, str]]:
    """(the name a `$ref` uses, schema text) of every schema referenced, transitively."""
    for reference, dependency in zip(registered.references, registered.resolved, strict=False):
        yield reference.name, dependency.schema
        yield from _referenced(dependency)


class JsonSchemaCodec(RegistryCodecBase[WriterCheck]):
    """A topic's keys or values as JSON Schema records: a `Record` subclass or a plain type."""

    format = "json-schema"
    schema_type = SCHEMA_TYPE

    def __init__(self, value_type: Any, *, registry: SchemaRegistry, subjects: SubjectNamer):
        is_record = isinstance(value_type, type) and issubclass(value_type, Record)
        if value_type not in PLAIN_TYPES and not is_record:
            raise ConfigurationError(
                f"format='json-schema' takes a Record subclass, dict, str, int, float or bool, "
                f"not {value_type!r}"
            )
        own_schema = self._own_schema_document = json_schema_of(value_type)
        super().__init__(
            registry=registry,
            subjects=subjects,
            record_type=value_type if is_record else None,
            parse=lambda registered: _writer_check(registered, own_schema),
        )
        self._value_type = value_type
        self._decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            dict[str, Any] if value_type is dict else value_type
        )
        self._encoder = msgspec.json.Encoder()

    def _read(self, schema_id: int, writer: WriterCheck, payload: memoryview) -> Any:
        body = bytes(payload)
        if len(body) > 2 * MAX_DEPTH and json_too_deep(body):
            raise DecodeError(f"JSON nested deeper than {MAX_DEPTH} levels")
        if writer.validator is not None:
            _validate(writer.validator, body, schema_id)
        try:
            return self._decoder.decode(body)
        except msgspec.ValidationError as exc:  # the field's path, as every record format names it
            if writer.validator is None:  # the writer's schema is the declared type's own
                raise json_error(exc, f"does not match schema id {schema_id}") from None
            raise json_error(
                exc, f"matches schema id {schema_id} but not {self._type_name()}"
            ) from None
        except Exception as exc:  # msgspec.DecodeError, UnicodeDecodeError, RecursionError
            raise DecodeError(f"not JSON (schema id {schema_id}): {exc}") from None

    def _own_schema(self) -> tuple[str, str]:
        title = self._own_schema_document.get("title", "")
        return title, msgspec.json.encode(self._own_schema_document).decode()

    def _write(self, value: Any) -> bytes:
        if not isinstance(value, self._value_type) or (
            isinstance(value, bool) and self._value_type is not bool
        ):
            raise TypeError(f"expected {self._type_name()}, got {type(value).__name__}")
        return self._encoder.encode(value)

    def _type_name(self) -> str:
        return getattr(self._value_type, "__name__", repr(self._value_type))
