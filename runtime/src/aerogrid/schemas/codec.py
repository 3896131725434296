"""The registry codec protocol, the writer-schema cache every registry codec shares, the factory.

A registry-format topic (Avro, Protobuf, JSON Schema) decodes with a schema it learns
from the record (the Confluent header's id), so decoding has an async step the plain
codecs lack: `schema_id_to_load` (cheap, per record) names an id not held yet, the
engine awaits `load(id)` (and owns the retry policy when the registry is down), then
calls `decode` synchronously like any `aerogrid.record_formats.Codec`. Sending is the
mirror: `prepare_send` registers or looks up the writer schema, then `encode` frames.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, Literal, Protocol, TypeVar, cast, runtime_checkable

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.schemas.errors import (
    RegistryAuthError,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaNotLoaded,
    SchemaRegistryError,
)
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer, SubjectStrategy, subject_strategy
from aerogrid.schemas.wire import peek_schema_id

RegistryFormat = Literal["avro", "protobuf", "json-schema"]
REGISTRY_FORMATS: tuple[RegistryFormat, ...] = ("avro", "protobuf", "json-schema")

#: Format → (module, class). Imported on first use, so an app without Protobuf topics
#: never imports protobuf's codec (nor fastavro without Avro topics).
_CODEC_CLASSES: dict[str, tuple[str, str]] = {
    "avro": ("aerogrid.schemas.avro", "AvroCodec"),
    "protobuf": ("aerogrid.schemas.protobuf", "ProtobufCodec"),
    "json-schema": ("aerogrid.schemas.json_schema", "JsonSchemaCodec"),
}

Parsed = TypeVar("Parsed")


@runtime_checkable
class RegistryCodec(Protocol):
    """A codec whose writer schemas live in a schema registry (also a record_formats.Codec)."""

    format: str

    def schema_id_to_load(self, data: bytes | None) -> int | None:
        """The writer schema id this record needs and the codec does not hold yet.

        None: decode can run now, including when the frame is bad (decode then raises
        DecodeError). Cheap: called for every record.
        """
        ...

    async def load(self, schema_id: int) -> None:
        """Fetch and parse a writer schema.

        RegistryUnavailable propagates (the engine retries); SchemaNotFound is remembered
        so decode() raises DecodeError("schema id N is not in the registry").
        """
        ...

    def decode(self, data: bytes | None) -> Any:
        """The record's value; only DecodeError for bad records, like every Codec."""
        ...

    async def prepare_send(self, value: Any) -> None:
        """Register or look up the writer schema of `value` under the subject strategy.

        Cached; RegistryUnavailable, SchemaRejected and RegistryAuthError propagate.
        """
        ...

    def encode(self, value: Any) -> bytes | None:
        """The framed record; after prepare_send for this value's type."""
        ...


class CodecClass(Protocol):
    """What a registry codec class's constructor takes (the factory's one call)."""

    def __call__(
        self, value_type: Any, *, registry: SchemaRegistry, subjects: SubjectNamer
    ) -> RegistryCodec: ...


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
        self._parsed: dict[int, Parsed] = {}
        self._unusable: dict[int, str] = {}

    def to_load(self, data: bytes | None) -> int | None:
        """The id of a well-framed record not held yet, else None."""
        schema_id = peek_schema_id(data)
        if schema_id is None or schema_id in self._parsed or schema_id in self._unusable:
            return None
        return schema_id

    async def load(self, schema_id: int) -> None:
        if schema_id in self._parsed or schema_id in self._unusable:
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
            self._parsed[schema_id] = self._parse(registered)
        except Exception as exc:  # the registry holds a schema we cannot use: the record's fault
            self._unusable[schema_id] = (
                f"schema id {schema_id} does not parse as {self._schema_type}: {exc}"
            )

    def get(self, schema_id: int) -> Parsed:
        """The parsed schema; DecodeError if unusable, SchemaNotLoaded if never loaded."""
        parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        reason = self._unusable.get(schema_id)
        if reason is not None:
            raise DecodeError(reason)
        raise SchemaNotLoaded(f"schema id {schema_id} was not loaded before decode()")


def registry_codec(
    fmt: str,
    value_type: Any,
    *,
    registry: SchemaRegistry,
    topic: str,
    is_key: bool = False,
    strategy: SubjectStrategy | str = "topic",
) -> RegistryCodec:
    """The codec of a registry-format topic's keys or values, or a ConfigurationError."""
    if fmt not in _CODEC_CLASSES:
        raise ConfigurationError(
            f"unknown registry format {fmt!r}: use {', '.join(map(repr, REGISTRY_FORMATS))}"
        )
    module_name, class_name = _CODEC_CLASSES[fmt]
    codec_class = cast(CodecClass, getattr(importlib.import_module(module_name), class_name))
    subjects = SubjectNamer(topic=topic, is_key=is_key, strategy=subject_strategy(strategy))
    return codec_class(value_type, registry=registry, subjects=subjects)
