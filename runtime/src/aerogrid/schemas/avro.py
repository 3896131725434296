"""`AvroCodec`: Avro records in the Confluent wire format, with schema resolution.

The writer schema comes from the registry by the record's id, parsed once per id;
fastavro (C) reads the payload with it into dicts; msgspec converts those into the
topic's Record (C too). That conversion is the reader's half of Avro schema resolution:
fields the writer has and the Record lacks are dropped, fields the Record has and the
writer lacks take the Record's defaults (or fail naming the field), int widens to float,
and record names need not match. fastavro's own resolution does the same for the types
a Record can declare, but costs about 3 µs more per record (it matches both schemas on
every call), needs the writer's and reader's record names to agree, and hands back
defaults of logical types unconverted (a timestamp default as an int). One difference:
a writer `string` read into a `bytes` field is refused, not promoted.

`dict` gets the record as written; str, int, float, bool and bytes keys or values are
Avro primitives.
"""

from __future__ import annotations

import enum
import importlib
import io
import json
from collections.abc import Callable
from typing import Any

import fastavro
import msgspec

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.record_formats import json_error
from aerogrid.records import Record
from aerogrid.schemas.avro_bounds import unbounded_array
from aerogrid.schemas.avro_logical import writer_for_reader
from aerogrid.schemas.avro_schema import avro_full_name, avro_schema
from aerogrid.schemas.codec import SCHEMA_TYPES
from aerogrid.schemas.codec_base import RegistryCodecBase
from aerogrid.schemas.errors import SchemaNotFound
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import HEADER_BYTES

_READ_OPTIONS = {
    "return_record_name": False,
    "return_record_name_override": False,
    "handle_unicode_errors": "strict",
    "return_named_type": False,
    "return_named_type_override": False,
}
_convert = msgspec.convert  # one global lookup a record, not two
#: fastavro's reader of one datum: (file, writer schema, named schemas, reader, options).
_ReadData = Callable[[io.BytesIO, Any, dict[str, Any], Any, dict[str, Any]], Any]
#: A writer schema as read: (the datum reader, the parsed schema, its named schemas).
_Read = tuple[_ReadData, Any, dict[str, Any]]


def _public_read(
    buffer: io.BytesIO, parsed: Any, named: dict[str, Any], reader: Any, options: dict[str, Any]
) -> Any:
    """For a fastavro without `_read_data`: the public, slower call."""
    return fastavro.schemaless_reader(buffer, parsed, None)


def _compiled_read() -> _ReadData:
    """fastavro's compiled `_read_data` (fastavro is pinned), else the public call.

    The public `schemaless_reader` compares and re-parses the schemas on every call (about
    1 µs of a 2 µs read); `_read_data` is what it calls after that.
    """
    try:
        read_data = getattr(importlib.import_module("fastavro._read"), "_read_data", None)
    except ImportError:
        read_data = None
    return _public_read if read_data is None else read_data


_READ_DATA = _compiled_read()


def _datum_reader(parsed: Any) -> _Read:
    """How to read one datum written with `parsed`: a tuple, so a record costs no extra
    Python call (a closure over these costs 0.07 µs a record)."""
    named = {"writer": parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}}
    named["reader"] = {}
    return _READ_DATA, parsed, named


class AvroCodec(RegistryCodecBase[_Read]):
    """The Avro codec of one topic's keys or values (see the module docstring)."""

    format = "avro"
    schema_type = SCHEMA_TYPES["avro"]

    def __init__(
        self, value_type: Any, *, registry: SchemaRegistry, subjects: SubjectNamer
    ) -> None:
        self.value_type = value_type
        # dict reads as written; everything else has a schema of its own (or is refused here).
        self._reader: Any = None if value_type is dict else avro_schema(value_type)
        self._normal_reader: Any = (
            None if self._reader is None else fastavro.parse_schema(self._reader, _write_hint=False)
        )
        super().__init__(
            registry=registry,
            subjects=subjects,
            record_type=(
                value_type
                if isinstance(value_type, type) and issubclass(value_type, Record)
                else None
            ),
            parse=self._parse_writer,
        )
        self._send_schema: Any = None

    def _parse_writer(self, registered: RegisteredSchema) -> _Read:
        """The reader of a writer schema: its references' named types parsed first, and
        only the logical types the declared type wants converted (see avro_logical)."""
        named: dict[str, Any] = {}
        _parse_references(registered, named)
        writer = json.loads(registered.schema)
        if self._normal_reader is not None:
            normal = fastavro.parse_schema(writer, named_schemas=dict(named), _write_hint=False)
            writer = writer_for_reader(normal, self._normal_reader)
        parsed = fastavro.parse_schema(writer, named_schemas=named)
        unbounded = unbounded_array(parsed)
        if unbounded:
            raise ValueError(
                f"the array at {unbounded} holds items of zero bytes, so a few bytes could "
                "make it endless: refused"
            )
        return _datum_reader(parsed)

    def _read(self, schema_id: int, writer: _Read, payload: memoryview) -> Any:
        return self._read_record(schema_id, writer, bytes(HEADER_BYTES) + payload)

    def _read_record(self, schema_id: int, writer: _Read, data: bytes) -> Any:
        """Read past the header of the whole record: a BytesIO over bytes shares them,
        where one over the payload's memoryview would copy it (0.2 µs a record)."""
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_BYTES)
        read, parsed, named = writer
        try:
            value = read(buffer, parsed, named, None, _READ_OPTIONS)
        except Exception as exc:  # fastavro raises many types on a bad payload
            raise DecodeError(
                f"Avro payload does not match writer schema id {schema_id}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        left = len(data) - buffer.tell()
        if left:
            raise DecodeError(
                f"Avro payload does not match writer schema id {schema_id}: "
                f"{left} bytes left after the record"
            )
        if self._reader is None:
            return value
        try:
            return _convert(value, self.value_type)
        except msgspec.ValidationError as exc:  # the field's path, as every record format names it
            name = getattr(self.value_type, "__name__", str(self.value_type))
            raise json_error(exc, f"{name} (writer schema id {schema_id})") from None

    async def _register_own(self) -> int:
        if self._reader is not None:
            self._send_schema = fastavro.parse_schema(self._reader)
            return await super()._register_own()
        # dict: send with the subject's latest schema
        if self._subjects.strategy != "topic":
            raise ConfigurationError(
                f"topic {self._subjects.topic!r}: sending dicts as Avro needs "
                "subject_strategy='topic' (the subject's latest schema is the writer's)"
            )
        subject = self._subjects.subject("")
        try:
            latest = await self._registry.with_references(await self._registry.latest(subject))
        except SchemaNotFound:
            raise ConfigurationError(
                f"topic {self._subjects.topic!r}: dicts are sent with the latest schema of "
                f"subject {subject!r}, and the registry has none: register one, or "
                "declare the type as a Record"
            ) from None
        named: dict[str, Any] = {}
        _parse_references(latest, named)
        self._send_schema = fastavro.parse_schema(json.loads(latest.schema), named_schemas=named)
        return latest.schema_id

    def _own_schema(self) -> tuple[str, str]:
        text = json.dumps(self._reader, separators=(",", ":"))
        name = avro_full_name(self._record_type) if self._record_type else str(self._reader)
        return name, text

    def _write(self, value: Any) -> bytes:
        if self._record_type is not None:
            if isinstance(value, dict):
                value = msgspec.convert(value, self._record_type)
            if not isinstance(value, self._record_type):
                raise TypeError(
                    f"expected {self._record_type.__name__}, got {type(value).__name__}"
                )
            value = _avro_datum(value)
        buffer = io.BytesIO()
        try:
            fastavro.schemaless_writer(buffer, self._send_schema, value)
        except (TypeError, ValueError) as exc:  # the same kind of error, saying where
            raise (TypeError if isinstance(exc, TypeError) else ValueError)(
                f"topic {self._subjects.topic!r}: cannot write this value as Avro: {exc}"
            ) from exc
        return buffer.getvalue()


def _parse_references(registered: RegisteredSchema, named: dict[str, Any]) -> None:
    """Parse what `registered` references (depth first) into `named`."""
    if len(registered.resolved) != len(registered.references):
        raise ValueError("its references were not fetched")
    for dependency in registered.resolved:
        _parse_references(dependency, named)
        fastavro.parse_schema(json.loads(dependency.schema), named_schemas=named)


def _avro_datum(value: Any) -> Any:
    """A Record as the dicts fastavro writes, under the fields' encoded names."""
    if isinstance(value, Record):
        names = type(value).__struct_encode_fields__
        return {
            name: _avro_datum(getattr(value, attr))
            for name, attr in zip(names, value.__struct_fields__, strict=True)
        }
    if isinstance(value, list | set | frozenset | tuple):
        return [_avro_datum(v) for v in value]
    if isinstance(value, dict):
        return {k: _avro_datum(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value
