"""`AvroCodec`: Avro records in the Confluent wire format, with schema resolution.

The reader schema is the topic's declared type (a Record, derived by `avro_schema`, or a
primitive); `dict` decodes with the writer schema alone. The writer schema comes from
the registry by the record's id and is parsed once per id; fastavro resolves writer
against reader, so a producer that adds a field, or drops one the Record defaults, does
not break the app. fastavro (C-accelerated) reads into dicts that msgspec converts to
the Record, checking types in C.
"""

from __future__ import annotations

import io
import json
from typing import Any, NamedTuple

import fastavro
import msgspec

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.records import Record
from aerogrid.schemas.avro_names import reader_named_like
from aerogrid.schemas.avro_schema import avro_full_name, avro_schema
from aerogrid.schemas.codec import WriterSchemas
from aerogrid.schemas.errors import SchemaNotLoaded
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame, parse_frame


class _Resolution(NamedTuple):
    """A writer schema, the reader schema made to match it (None: read as written), and
    the reader's fields the writer lacks.

    fastavro fills those with the Avro default's JSON form, unconverted (a timestamp's
    default arrives as an int), so they are dropped and the Record's own default fills
    them, the same value in its Python form.
    """

    writer: Any
    reader: Any
    defaulted: tuple[str, ...] = ()


class AvroCodec:
    """The Avro codec of one topic's keys or values (see the module docstring)."""

    format = "avro"

    def __init__(
        self, value_type: Any, *, registry: SchemaRegistry, subjects: SubjectNamer
    ) -> None:
        self.value_type = value_type
        self._registry = registry
        self._subjects = subjects
        self._record_type = (
            value_type if isinstance(value_type, type) and issubclass(value_type, Record) else None
        )
        # dict reads as written; everything else has a reader schema (or is refused here).
        self._reader: Any = None if value_type is dict else avro_schema(value_type)
        self._normal_reader: Any = (
            None if self._reader is None else fastavro.parse_schema(self._reader, _write_hint=False)
        )
        self._writers: WriterSchemas[_Resolution] = WriterSchemas(
            registry, schema_type="AVRO", parse=self._resolution
        )
        self._send_id: int | None = None
        self._send_schema: Any = None

    def _resolution(self, registered: RegisteredSchema) -> _Resolution:
        if registered.references:
            raise ValueError("Avro schemas with references are not supported")
        writer = fastavro.parse_schema(json.loads(registered.schema), _write_hint=False)
        parsed_writer = fastavro.parse_schema(writer)
        if self._normal_reader is None:
            return _Resolution(parsed_writer, None)
        reader = reader_named_like(self._normal_reader, writer)
        return _Resolution(parsed_writer, fastavro.parse_schema(reader), _lacking(reader, writer))

    def schema_id_to_load(self, data: bytes | None) -> int | None:
        return self._writers.to_load(data)

    async def load(self, schema_id: int) -> None:
        await self._writers.load(schema_id)

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            if self._record_type is not None:
                raise DecodeError(
                    f"{self._record_type.__name__}: the record has no value (a tombstone); "
                    "declare value_type=bytes or dict to receive tombstones"
                )
            return None
        schema_id, payload = parse_frame(data)
        resolution = self._writers.get(schema_id)
        buffer = io.BytesIO(payload)
        try:
            value: Any = fastavro.schemaless_reader(buffer, resolution.writer, resolution.reader)
        except Exception as exc:  # fastavro raises many types on a bad payload
            raise DecodeError(
                f"Avro payload does not match writer schema id {schema_id}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if buffer.tell() != len(payload):
            raise DecodeError(
                f"Avro payload does not match writer schema id {schema_id}: "
                f"{len(payload) - buffer.tell()} bytes left after the record"
            )
        if self._record_type is None:
            return value
        for name in resolution.defaulted:
            del value[name]
        try:
            return msgspec.convert(value, self._record_type)
        except msgspec.ValidationError as exc:
            text = str(exc)
            field = text.rsplit(" - at ", 1)[1].strip("`") if " - at " in text else None
            raise DecodeError(
                f"{self._record_type.__name__} (writer schema id {schema_id}): {text}",
                field=field,
            ) from None

    async def prepare_send(self, value: Any) -> None:
        if self._send_id is not None or value is None:
            return
        if self._reader is None:  # dict: send with the subject's latest schema
            if self._subjects.strategy != "topic":
                raise ConfigurationError(
                    f"topic {self._subjects.topic!r}: sending dicts as Avro needs "
                    "subject_strategy='topic' (the subject's latest schema is the writer's)"
                )
            latest = await self._registry.latest(self._subjects.subject(""))
            self._send_schema = fastavro.parse_schema(json.loads(latest.schema))
            self._send_id = latest.schema_id
            return
        text = json.dumps(self._reader, separators=(",", ":"))
        name = avro_full_name(self._record_type) if self._record_type else str(self._reader)
        self._send_id = await self._registry.register(self._subjects.subject(name), text, "AVRO")
        self._send_schema = fastavro.parse_schema(self._reader)

    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if self._send_id is None:
            raise SchemaNotLoaded(
                f"topic {self._subjects.topic!r}: prepare_send() must run before encode()"
            )
        if self._record_type is not None:
            if isinstance(value, dict):
                value = msgspec.convert(value, self._record_type)
            if not isinstance(value, self._record_type):
                raise TypeError(
                    f"expected {self._record_type.__name__}, got {type(value).__name__}"
                )
            value = _avro_datum(value)
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self._send_schema, value)
        return frame(self._send_id, buffer.getvalue())


def _lacking(reader: Any, writer: Any) -> tuple[str, ...]:
    """The reader record's field names the writer record does not have."""
    if not (isinstance(reader, dict) and isinstance(writer, dict)):
        return ()
    written = {f["name"] for f in writer.get("fields", ())}
    return tuple(f["name"] for f in reader.get("fields", ()) if f["name"] not in written)


def _avro_datum(value: Any) -> Any:
    """A Record as the dicts fastavro writes, under the fields' encoded names."""
    if isinstance(value, Record):
        names = type(value).__struct_encode_fields__
        return {
            name: _avro_datum(getattr(value, attr))
            for name, attr in zip(names, value.__struct_fields__, strict=True)
        }
    if isinstance(value, list):
        return [_avro_datum(v) for v in value]
    if isinstance(value, dict):
        return {k: _avro_datum(v) for k, v in value.items()}
    return value
