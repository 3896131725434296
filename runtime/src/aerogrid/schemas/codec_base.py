"""`RegistryCodecBase`: what every registry codec does alike, so a format keeps only its own work.

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
from typing import Any, Generic

from aerogrid.record_formats import tombstone_error
from aerogrid.records import Record
from aerogrid.schemas.codec import Parsed, WriterSchemas
from aerogrid.schemas.errors import SchemaNotLoaded
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame, parse_frame


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
        schema_id, payload = parse_frame(data)
        return self._read(schema_id, self._writers.get(schema_id), payload)

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
