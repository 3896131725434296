"""`aerogrid produce --format avro|json-schema|protobuf --schema FILE`: registry records.

A `SchemaFile` is read and checked first, and every value checked against it, before
anything reaches the registry or the broker: a bad schema file or a value that does not
fit (naming the field) sends nothing. Then the schema is registered under the topic's
subject (TopicNameStrategy: `<topic>-value` / `-key`, what Confluent's serializers use by
default) and each value is written in the Confluent wire format, the way confluent-kafka's
AvroSerializer / JSONSerializer / ProtobufSerializer write it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import fastavro
import jsonschema
import jsonschema.exceptions
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.codec import SCHEMA_TYPES
from aerogrid.schemas.protobuf import encode_indexes, message_indexes
from aerogrid.schemas.protobuf_parse import parse_schema
from aerogrid.schemas.protobuf_record import message_class, pool_with
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame
from aerogrid_devkit.registry_records.avro_json import ValueMismatch, avro_datum

__all__ = ["FORMATS", "SchemaFile", "ValueMismatch", "subject_for"]

#: `--format` choices: plain JSON (as stored, no registry) and the registry formats.
FORMATS = ("json", "avro", "json-schema", "protobuf")


def subject_for(topic: str, *, is_key: bool) -> str:
    return SubjectNamer(topic=topic, is_key=is_key).subject("")


@dataclass(frozen=True)
class SchemaFile:
    """A checked schema file: its text (what is registered) and how values become payloads."""

    format: str
    text: str
    #: A JSON value → the payload after the 5-byte header; ValueMismatch if it does not fit.
    payload: Callable[[Any], bytes]

    @property
    def schema_type(self) -> str:
        return SCHEMA_TYPES[self.format]

    @classmethod
    def load(cls, fmt: str, path: Path, message: str | None = None) -> SchemaFile:
        """The schema in `path` as `fmt`; ConfigurationError saying what is wrong with it."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the schema file {path}: {exc}") from None
        if fmt == "avro":
            return cls(fmt, text, _avro_payload(_json_document(text, path), path))
        if fmt == "json-schema":
            return cls(fmt, text, _json_schema_payload(_json_document(text, path), path))
        if fmt == "protobuf":
            return cls(fmt, text, _protobuf_payload(text, path, message))
        raise ConfigurationError(f"--format {fmt!r} takes no schema file")

    async def register(self, registry: SchemaRegistry, subject: str) -> int:
        """The schema's id under `subject` (registered if new)."""
        return await registry.register(subject, self.text, self.schema_type)

    def record(self, schema_id: int, value: Any) -> bytes:
        return frame(schema_id, self.payload(value))


def _json_document(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"the schema file {path} is not JSON: {exc}") from None


def _avro_payload(document: Any, path: Path) -> Callable[[Any], bytes]:
    named: dict[str, Any] = {}
    try:
        parsed = fastavro.parse_schema(document, named_schemas=named)
    except Exception as exc:  # fastavro raises SchemaParseException, ValueError, KeyError...
        raise ConfigurationError(
            f"the schema file {path} is not an Avro schema: {type(exc).__name__}: {exc}"
        ) from None

    def payload(value: Any) -> bytes:
        datum = avro_datum(parsed, value, named)
        buffer = io.BytesIO()
        try:
            fastavro.schemaless_writer(buffer, parsed, datum)
        except (TypeError, ValueError) as exc:  # what the walk let through (e.g. a range)
            raise ValueMismatch("$", f"cannot be written as Avro: {exc}") from None
        return buffer.getvalue()

    return payload


def _json_schema_payload(document: Any, path: Path) -> Callable[[Any], bytes]:
    if isinstance(document, bool):  # `true` accepts everything, `false` nothing
        document = {} if document else {"not": {}}
    if not isinstance(document, dict):
        raise ConfigurationError(f"the schema file {path} is not a JSON Schema (an object)")
    validator_class = jsonschema.validators.validator_for(document)
    try:
        validator_class.check_schema(document)
    except jsonschema.exceptions.SchemaError as exc:
        raise ConfigurationError(
            f"the schema file {path} is not a valid JSON Schema at {exc.json_path}: {exc.message}"
        ) from None
    validator = validator_class(document)

    def payload(value: Any) -> bytes:
        failure = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if failure is not None:
            raise ValueMismatch(failure.json_path, failure.message)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()

    return payload


def _protobuf_payload(text: str, path: Path, message: str | None) -> Callable[[Any], bytes]:
    try:
        file = parse_schema(text, path.name)
        pool = pool_with(file)
    except Exception as exc:  # the parser's ValueError, the pool's TypeError on bad types
        raise ConfigurationError(f"the schema file {path} is not a usable .proto: {exc}") from None
    names = [m.name for m in file.message_type]
    if message is None and len(names) != 1:
        raise ConfigurationError(
            f"{path} declares {len(names)} messages ({', '.join(names) or 'none'}): "
            "choose one with --message"
        )
    wanted = message or names[0]
    full = (
        wanted
        if not file.package or wanted.startswith(f"{file.package}.")
        else (f"{file.package}.{wanted}")
    )
    try:
        message_type = message_class(pool, full)
    except KeyError:
        raise ConfigurationError(f"{path} declares no message {wanted!r}") from None
    indexes = encode_indexes(message_indexes(cast(Descriptor, message_type.DESCRIPTOR)))

    def payload(value: Any) -> bytes:
        built: Message = message_type()
        if not isinstance(value, dict):
            raise ValueMismatch("$", f"a {full} is a JSON object, not {type(value).__name__}")
        try:
            json_format.ParseDict(value, built)
        except json_format.ParseError as exc:
            raise ValueMismatch("$", " ".join(str(exc).split())) from None
        return indexes + built.SerializeToString()

    return payload
