"""Registry-format records (Avro, Protobuf, JSON Schema) as JSON, for `aerogrid tail` and the TUI.

A key or value that starts with the Confluent header (magic byte 0, a 4-byte schema id)
is decoded with its writer schema from the registry, by id, and shown with that id and
the subject it is registered under. Whatever goes wrong is shown, never raised: a record
that does not decode is `Undecoded` with the reason (its bytes are shown as stored), and
an unreachable registry is said once per record without waiting on it again for a while
(`RETRY_AFTER`), so tailing a busy topic never hangs on a registry that is down.
"""

from __future__ import annotations

import functools
import io
import json
import time
from dataclasses import dataclass
from typing import Any

import fastavro
import msgspec
from google.protobuf import descriptor_pb2, json_format
from google.protobuf.descriptor_pool import DescriptorPool

from aerogrid.errors import DecodeError
from aerogrid.schemas.avro_bounds import unbounded_array
from aerogrid.schemas.codec import SCHEMA_TYPES
from aerogrid.schemas.errors import RegistryUnavailable, SchemaNotFound, SchemaRegistryError
from aerogrid.schemas.protobuf import message_full_name, read_indexes
from aerogrid.schemas.protobuf_parse import MessageTree, message_tree, parse_schema
from aerogrid.schemas.protobuf_record import message_class, pool_with
from aerogrid.schemas.registry import RegisteredSchema, RegistrySettings, SchemaRegistry
from aerogrid.schemas.registry_settings import no_registry
from aerogrid.schemas.wire import parse_frame, peek_schema_id
from aerogrid_devkit.registry_records.settings import NAME_A_TOOLS_REGISTRY

__all__ = ["Decoded", "RecordDecoder", "Undecoded", "escaped"]

#: Seconds a registry that did not answer is left alone (records meanwhile shown raw).
RETRY_AFTER = 10.0
#: Seconds one registry request may take: the tools show records, they do not wait.
REQUEST_TIMEOUT = 3.0
_FORMATS = {schema_type: fmt for fmt, schema_type in SCHEMA_TYPES.items()}


@dataclass(frozen=True)
class Decoded:
    """A decoded key or value: JSON-friendly `value`, the writer schema's id and subject."""

    format: str
    schema_id: int
    subject: str | None
    value: Any
    #: Whether `subject` is the topic's own (`<topic>-value` / `-key`), as most are.
    own_subject: bool = False

    @property
    def label(self) -> str:
        """`[avro id=3 orders-value]`, the prefix the tools show."""
        return f"[{self.format} id={self.schema_id}{' ' + self.subject if self.subject else ''}]"

    @property
    def brief_label(self) -> str:
        """`[avro id=3]` when the subject is the topic's own (a table cell has little room)."""
        return f"[{self.format} id={self.schema_id}]" if self.own_subject else self.label

    def as_json(self) -> dict[str, Any]:
        return {"format": self.format, "id": self.schema_id, "subject": self.subject}


@dataclass(frozen=True)
class Undecoded:
    """A key or value in the Confluent wire format that could not be decoded, and why."""

    reason: str


class RecordDecoder:
    """Decodes registry-format keys and values with one registry (None: none configured)."""

    def __init__(self, settings: RegistrySettings | None) -> None:
        self.settings = settings
        self._registry = (
            SchemaRegistry(settings, timeout=REQUEST_TIMEOUT) if settings is not None else None
        )
        self._subjects: dict[int, list[str]] = {}
        self._down_until = 0.0
        self._subjects_retry_at = 0.0
        self._down_reason = ""

    async def aclose(self) -> None:
        if self._registry is not None:
            await self._registry.aclose()

    async def decode(
        self, data: bytes | None, topic: str, *, is_key: bool = False
    ) -> Decoded | Undecoded | None:
        """None when `data` is not in the Confluent wire format (shown as stored)."""
        schema_id = peek_schema_id(data)
        if schema_id is None or data is None:
            return None
        if self._registry is None:
            return Undecoded(
                f"Confluent wire format, schema id {schema_id}: "
                + no_registry(how=NAME_A_TOOLS_REGISTRY)
            )
        if time.monotonic() < self._down_until:
            return Undecoded(self._down_reason)
        try:
            registered = await self._registry.schema_by_id(schema_id)
            subjects = await self._subjects_of(schema_id)
        except SchemaNotFound:
            return Undecoded(f"schema id {schema_id} is not in the registry")
        except SchemaRegistryError as exc:  # unreachable, refused credentials, odd answers
            if isinstance(exc, RegistryUnavailable):
                self._down_until = time.monotonic() + RETRY_AFTER
                self._down_reason = f"not decoded: {exc}"
            return Undecoded(f"not decoded: {exc}")
        fmt = _FORMATS.get(registered.schema_type, registered.schema_type.lower())
        try:
            value = _decode(registered, data)
        except Exception as exc:  # any decoder's error: the record is shown raw, with why
            return Undecoded(f"{fmt} schema id {schema_id}: {exc}")
        subject = _subject(subjects, topic, is_key)
        own = subject == f"{topic}-{'key' if is_key else 'value'}"
        return Decoded(fmt, schema_id, subject, value, own_subject=own)

    async def annotate(
        self, described: dict[str, Any], topic: str, key: bytes | None, value: bytes | None
    ) -> None:
        """A described record (`kafka_tools.describe`) with its key and value decoded.

        A decoded part replaces the text and gains `<part>_schema` (format, id, subject);
        one that does not decode is shown escaped on one line and gains `<part>_note` (why).
        """
        for part, data in (("key", key), ("value", value)):
            found = await self.decode(data, topic, is_key=part == "key")
            if isinstance(found, Decoded):
                described[part] = found.value
                described[f"{part}_schema"] = found.as_json()
            elif isinstance(found, Undecoded) and data is not None:
                described[part] = escaped(data)
                described[f"{part}_note"] = found.reason

    async def _subjects_of(self, schema_id: int) -> list[str]:
        """The subjects the id is registered under; empty if the registry cannot say."""
        known = self._subjects.get(schema_id)
        if known is not None:
            return known
        if time.monotonic() < self._subjects_retry_at:
            return []
        assert self._registry is not None
        try:
            found = await self._registry.subjects_of(schema_id)
        except RegistryUnavailable:  # asked again after a while, never waited on per record
            self._subjects_retry_at = time.monotonic() + RETRY_AFTER
            return []
        except (SchemaRegistryError, KeyError):  # refused, or an answer not shaped as Confluent's
            found = []
        self._subjects[schema_id] = found
        return found


def escaped(data: bytes) -> str:
    """A binary record as one line of text: control bytes and bytes not UTF-8 as escapes."""
    text = data.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _subject(subjects: list[str], topic: str, is_key: bool) -> str | None:
    """The topic's own subject when the id is under several (Apicurio shares ids by content)."""
    own = f"{topic}-{'key' if is_key else 'value'}"
    if own in subjects:
        return own
    return next(
        (s for s in subjects if s.startswith(f"{topic}-")), subjects[0] if subjects else None
    )


def _decode(registered: RegisteredSchema, data: bytes) -> Any:
    _, payload = parse_frame(data)
    if registered.schema_type == "AVRO":
        return _avro(registered.schema, payload)
    if registered.schema_type == "JSON":
        return json.loads(bytes(payload))
    if registered.schema_type == "PROTOBUF":
        return _protobuf(registered, payload)
    raise DecodeError(f"schema type {registered.schema_type!r} is not one the devkit reads")


@functools.lru_cache(maxsize=256)
def _avro_schema(schema: str) -> Any:
    """A writer schema parsed once (ids are immutable, so its text is the key)."""
    parsed = fastavro.parse_schema(json.loads(schema))
    unbounded = unbounded_array(parsed)
    if unbounded:
        raise DecodeError(f"the writer schema's array at {unbounded} could be endless: not read")
    return parsed


@functools.lru_cache(maxsize=256)
def _protobuf_schema(
    schema: str,
) -> tuple[descriptor_pb2.FileDescriptorProto, tuple[MessageTree, ...], DescriptorPool]:
    """A writer .proto parsed once: its file, its message tree and a pool holding it."""
    file = parse_schema(schema, "writer.proto")
    return file, message_tree(file), pool_with(file)


def _avro(schema: str, payload: memoryview) -> Any:
    parsed = _avro_schema(schema)
    buffer = io.BytesIO(payload)
    value = fastavro.schemaless_reader(buffer, parsed, None)
    if buffer.tell() != len(payload):
        raise DecodeError(f"{len(payload) - buffer.tell()} bytes left after the record")
    return msgspec.to_builtins(value)  # decimals as strings, times as ISO, bytes as base64


def _protobuf(registered: RegisteredSchema, payload: memoryview) -> Any:
    file, tree, pool = _protobuf_schema(registered.schema)
    indexes, offset = read_indexes(payload)
    message = message_class(pool, message_full_name(file, tree, indexes))()
    message.ParseFromString(bytes(payload[offset:]))
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
