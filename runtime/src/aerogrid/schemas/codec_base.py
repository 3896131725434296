"""What every registry codec does alike (`RegistryCodecBase`, `WriterSchemas`), once.

Avro, Protobuf and JSON Schema differ in how a writer schema parses, how a payload
reads and writes, and what the declared type registers. The rest is one policy for all
three, kept here: writer schemas loaded by id (`WriterSchemas`), a tombstone (no value)
refused for a Record as `aerogrid.record_formats` refuses it and passed as None for the
other types, the Confluent frame around the payload, and the declared type's schema
registered once, under the subject strategy, on the first value sent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aerogrid.errors import DecodeError
from aerogrid.record_formats import tombstone_error
from aerogrid.records import Record
from aerogrid.schemas.errors import (
    RegistryAuthError,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaNotLoaded,
    SchemaRegistryError,
)
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import HEADER_BYTES, frame, framed_schema_id, parse_frame, peek_schema_id

#: What a format makes of a writer schema (a reader, a validator, a parsed .proto).
Parsed = TypeVar("Parsed")


class WriterSchemas(Generic[Parsed]):
    """One codec's writer schemas by id, parsed once, and the ids that cannot be used.

    An id the registry does not have, or whose schema is of another format, does not
    parse or references a schema the registry does not have, is the record's fault:
    remembered as the DecodeError every record with that id gets. RegistryUnavailable
    (and RegistryAuthError) propagate, not remembered: the next load asks again. The
    schemas an id references are fetched first (`RegisteredSchema.resolved`).
    """

    def __init__(
        self,
        registry: SchemaRegistry,
        *,
        schema_type: str,
        parse: Callable[[RegisteredSchema], Parsed],
    ) -> None:
        self._registry = registry
        self._schema_type = schema_type
        self._parse = parse
        #: The parsed writer schemas by id (decode's hot path reads it; only `load` adds).
        self.parsed: dict[int, Parsed] = {}
        self._unusable: dict[int, str] = {}

    def to_load(self, data: bytes | None) -> int | None:
        """The id of a well-framed record not held yet, else None."""
        schema_id = peek_schema_id(data)
        if schema_id is None or schema_id in self.parsed or schema_id in self._unusable:
            return None
        return schema_id

    async def load(self, schema_id: int) -> None:
        if schema_id in self.parsed or schema_id in self._unusable:
            return
        try:
            registered = await self._registry.schema_by_id(schema_id)
        except SchemaNotFound:
            self._unusable[schema_id] = f"schema id {schema_id} is not in the registry"
            return
        if registered.schema_type != self._schema_type:
            self._unusable[schema_id] = (
                f"schema id {schema_id} is a {registered.schema_type} schema, "
                f"not {self._schema_type}"
            )
            return
        try:
            registered = await self._registry.with_references(registered)
        except SchemaNotFound as missing:
            self._unusable[schema_id] = (
                f"schema id {schema_id} references a schema the registry does not have: {missing}"
            )
            return
        except (RegistryUnavailable, RegistryAuthError):
            raise
        except SchemaRegistryError as refused:  # a reference cycle, an odd answer
            self._unusable[schema_id] = f"schema id {schema_id}: {refused}"
            return
        try:
            self.parsed[schema_id] = self._parse(registered)
        except Exception as exc:  # the registry holds a schema we cannot use: the record's fault
            self._unusable[schema_id] = (
                f"schema id {schema_id} does not parse as {self._schema_type}: {exc}"
            )

    def get(self, schema_id: int) -> Parsed:
        """The parsed schema; DecodeError if unusable, SchemaNotLoaded if never loaded."""
        parsed = self.parsed.get(schema_id)
        if parsed is not None:
            return parsed
        reason = self._unusable.get(schema_id)
        if reason is not None:
            raise DecodeError(reason)
        raise SchemaNotLoaded(f"schema id {schema_id} was not loaded before decode()")


class RegistryCodecBase(ABC, Generic[Parsed]):
    """A `RegistryCodec` whose format supplies parse, read, write and its own schema."""

    #: The topic's name of the format ("avro", "protobuf", "json-schema"), set by each class.
    format: str
    #: The registry's name of the format ("AVRO", "PROTOBUF", "JSON"), set by each class.
    schema_type: str

    def __init__(
        self,
        *,
        registry: SchemaRegistry,
        subjects: SubjectNamer,
        record_type: type[Record] | None,
        parse: Callable[[RegisteredSchema], Parsed],
    ) -> None:
        self._registry = registry
        self._subjects = subjects
        self._record_type = record_type
        self._writers: WriterSchemas[Parsed] = WriterSchemas(
            registry, schema_type=self.schema_type, parse=parse
        )
        self._held = self._writers.parsed
        self._own_id: int | None = None

    def schema_id_to_load(self, data: bytes | None) -> int | None:
        return self._writers.to_load(data)

    async def load(self, schema_id: int) -> None:
        await self._writers.load(schema_id)

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            if self._record_type is not None:
                raise tombstone_error(self._record_type)
            return None
        # The hot path: a well-framed record whose writer is held (one header unpack).
        schema_id = framed_schema_id(data)
        if schema_id is not None:
            writer = self._held.get(schema_id)
            if writer is not None:
                return self._read_record(schema_id, writer, data)
        # The worded way: a bad frame raises in parse_frame, an unusable or unloaded id in get.
        schema_id, _ = parse_frame(data)
        return self._read_record(schema_id, self._writers.get(schema_id), data)

    def _read_record(self, schema_id: int, writer: Parsed, data: bytes) -> Any:
        """The value of the well-framed record `data`: `_read` of its payload, unless a
        format reads faster from the whole record (past its header) and overrides this."""
        return self._read(schema_id, writer, memoryview(data)[HEADER_BYTES:])

    async def prepare_send(self, value: Any) -> None:
        if self._own_id is None and value is not None:
            self._own_id = await self._register_own()

    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if self._own_id is None:
            raise SchemaNotLoaded(
                f"topic {self._subjects.topic!r}: prepare_send() must run before encode()"
            )
        return frame(self._own_id, self._write(value))

    async def _register_own(self) -> int:
        """The id of the schema values are sent with: the declared type's, registered."""
        record_name, text = self._own_schema()
        return await self._registry.register(
            self._subjects.subject(record_name), text, self.schema_type
        )

    @abstractmethod
    def _own_schema(self) -> tuple[str, str]:
        """(the record name the subject strategy uses, the schema text) of the declared type."""

    @abstractmethod
    def _read(self, schema_id: int, writer: Parsed, payload: memoryview) -> Any:
        """The value of a framed record's payload written with `writer`; only DecodeError."""

    @abstractmethod
    def _write(self, value: Any) -> bytes:
        """The payload of `value` (TypeError for a value of another type)."""
