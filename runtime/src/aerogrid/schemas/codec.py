"""The registry codec protocol, and the factory the SDK calls for a registry-format topic.

A registry-format topic (Avro, Protobuf, JSON Schema) decodes with a schema it learns
from the record (the Confluent header's id), so decoding has an async step the plain
codecs lack: `schema_id_to_load` (cheap, per record) names an id not held yet, the
engine awaits `load(id)` (and owns the retry policy when the registry is down), then
calls `decode` synchronously like any `aerogrid.record_formats.Codec`. Sending is the
mirror: `prepare_send` registers or looks up the writer schema, then `encode` frames.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal, Protocol, cast, runtime_checkable

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer, SubjectStrategy, subject_strategy

RegistryFormat = Literal["avro", "protobuf", "json-schema"]
REGISTRY_FORMATS: tuple[RegistryFormat, ...] = ("avro", "protobuf", "json-schema")
#: Each format's name in the registry's API (`schemaType`; Confluent leaves out AVRO).
SCHEMA_TYPES: dict[str, str] = {"avro": "AVRO", "protobuf": "PROTOBUF", "json-schema": "JSON"}

#: Format → (module, class). Imported on first use, so an app without Protobuf topics
#: never imports protobuf's codec (nor fastavro without Avro topics).
_CODEC_CLASSES: dict[str, tuple[str, str]] = {
    "avro": ("aerogrid.schemas.avro", "AvroCodec"),
    "protobuf": ("aerogrid.schemas.protobuf", "ProtobufCodec"),
    "json-schema": ("aerogrid.schemas.json_schema", "JsonSchemaCodec"),
}


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
