"""Protobuf records: a message in the Confluent wire format, read as a generated class or a Record.

After the 5-byte header, Confluent's Protobuf serializers write the message's place in
its .proto file as "message indexes" (a zigzag varint count, then each index; the
common `[0]` is the single byte 0), then the message. The writer's schema (from the
registry, by id) says which message those indexes name.

A generated class reads the message itself, once the writer's message is checked to be
that same message (a record of another type would otherwise parse into nonsense without
an error). A `Record` reads any message by field name: the message is decoded with the
writer's schema (`aerogrid.schemas.protobuf_record`), so field numbers never need to agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.protowire import varint
from aerogrid.records import Record
from aerogrid.schemas.codec import SCHEMA_TYPES
from aerogrid.schemas.codec_base import RegistryCodecBase
from aerogrid.schemas.protobuf_parse import MessageTree, message_tree, parse_schema
from aerogrid.schemas.protobuf_record import (
    message_class,
    message_to_record,
    pool_with,
    record_file,
    record_to_message,
)
from aerogrid.schemas.protobuf_text import proto_text
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import HEADER_BYTES

SCHEMA_TYPE = SCHEMA_TYPES["protobuf"]
#: More nesting than any real schema has: a longer index list is garbage, not a message.
MAX_INDEXES = 64
#: The message indexes `[0]` (a file's first message), which nearly every record has.
FIRST_MESSAGE = b"\x00"
#: Index prefixes remembered per writer schema: more than a schema has messages, yet
#: bounded, since one index list has many spellings (varints padded with 0x80 bytes).
MAX_KNOWN_PREFIXES = 256


def message_indexes(descriptor: Descriptor) -> list[int]:
    """Where a message stands in its file: top-level index, then each nested index."""
    path: list[int] = []
    current = descriptor
    while current.containing_type is not None:
        parent = current.containing_type
        path.append([n.full_name for n in parent.nested_types].index(current.full_name))
        current = parent
    top = [m.full_name for m in current.file.message_types_by_name.values()]
    path.append(top.index(current.full_name))
    return path[::-1]


def encode_indexes(indexes: list[int]) -> bytes:
    """The zigzag varints of the index list; `[0]` is the single byte 0."""
    if indexes == [0]:
        return b"\x00"
    return b"".join(varint(_zigzag(n)) for n in [len(indexes), *indexes])


def read_indexes(payload: memoryview) -> tuple[list[int], int]:
    """(message indexes, bytes they took) at the start of a payload; DecodeError if bad."""
    count, offset = _read_zigzag(payload, 0)
    if count == 0:
        return [0], offset
    if not 0 < count <= MAX_INDEXES:
        raise DecodeError(f"message index count {count} is not a Protobuf record's")
    indexes = []
    for _ in range(count):
        index, offset = _read_zigzag(payload, offset)
        if index < 0:
            raise DecodeError(f"message index {index} is negative")
        indexes.append(index)
    return indexes, offset


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _read_zigzag(data: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise DecodeError("the record ends inside its message indexes")
        if shift > 63:
            raise DecodeError("a message index varint is longer than 10 bytes")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), offset


@dataclass
class WriterSchema:
    """What decoding needs of one writer schema; `pool` only when a Record reads it."""

    file: descriptor_pb2.FileDescriptorProto
    tree: tuple[MessageTree, ...]
    pool: descriptor_pool.DescriptorPool | None = None
    classes: dict[str, type[Message]] = field(default_factory=dict)
    #: (full name, class that parses it) by the message-index bytes of records this
    #: schema's codec read: the indexes are walked once per prefix, not per record.
    readers: dict[bytes, tuple[str, type[Message]]] = field(default_factory=dict)

    def message_type(self, full_name: str) -> type[Message]:
        known = self.classes.get(full_name)
        if known is None:
            assert self.pool is not None
            known = self.classes[full_name] = message_class(self.pool, full_name)
        return known


def _writer_schema(registered: RegisteredSchema, *, with_pool: bool) -> WriterSchema:
    """A parsed writer schema; raises (the id is then unusable) if it does not parse.

    A Record reads with the writer's own schema, so its pool holds the files the writer
    imports too (its references, fetched with it); a generated class needs only the names.
    """
    file = parse_schema(registered.schema, f"schema-{registered.schema_id}.proto")
    tree = message_tree(file)
    if not tree:
        raise ValueError("it declares no message")
    if not with_pool:
        return WriterSchema(file, tree)
    return WriterSchema(file, tree, pool_with(file, dict(_imported(registered))))


def _imported(
    registered: RegisteredSchema,
) -> Iterator[tuple[str, descriptor_pb2.FileDescriptorProto]]:
    """Every file a writer schema imports through references, transitively, by import path."""
    for reference, dependency in zip(registered.references, registered.resolved, strict=False):
        yield reference.name, parse_schema(dependency.schema, reference.name)
        yield from _imported(dependency)


def message_full_name(
    file: descriptor_pb2.FileDescriptorProto, tree: tuple[MessageTree, ...], indexes: list[int]
) -> str:
    """The full name of the message at `indexes` in `file` (whose `message_tree` is `tree`),
    or a DecodeError naming the bad index."""
    names = [file.package] if file.package else []
    level = tree
    for depth, index in enumerate(indexes):
        if index >= len(level):
            where = "top-level" if depth == 0 else f"nested in {'.'.join(names)}"
            raise DecodeError(
                f"message index {indexes} is not in the writer schema: "
                f"{len(level)} {where} message(s)"
            )
        name, level = level[index]
        names.append(name)
    return ".".join(names)


class ProtobufCodec(RegistryCodecBase[WriterSchema]):
    """A topic's keys or values as Protobuf: a generated message class or a Record."""

    format = "protobuf"
    schema_type = SCHEMA_TYPE

    def __init__(self, value_type: Any, *, registry: SchemaRegistry, subjects: SubjectNamer):
        record_type: type[Record] | None = None
        if isinstance(value_type, type) and issubclass(value_type, Record):
            record_type = value_type
            own_file = record_file(value_type)
            own_name = f"{own_file.package}.{value_type.__name__}"
            self._message_type = message_class(pool_with(own_file), own_name)
        elif isinstance(value_type, type) and issubclass(value_type, Message):
            self._message_type = value_type
            own_file = descriptor_pb2.FileDescriptorProto()
            value_type.DESCRIPTOR.file.CopyToProto(own_file)
        else:
            raise ConfigurationError(
                f"format='protobuf' takes a generated Protobuf message class or a Record, "
                f"not {value_type!r}"
            )
        self._descriptor = cast(Descriptor, self._message_type.DESCRIPTOR)
        self._own_file = own_file  # written as .proto text when first sent
        with_pool = record_type is not None
        super().__init__(
            registry=registry,
            subjects=subjects,
            record_type=record_type,
            parse=lambda registered: _writer_schema(registered, with_pool=with_pool),
        )
        self._indexes = encode_indexes(message_indexes(self._descriptor))

    def _read(self, schema_id: int, writer: WriterSchema, payload: memoryview) -> Any:
        return self._read_record(schema_id, writer, bytes(HEADER_BYTES) + payload)

    def _read_record(self, schema_id: int, writer: WriterSchema, data: bytes) -> Any:
        """Read past the header of the whole record: the message is parsed from a view
        (a slice of the bytes would copy them); the class to parse it with is `_reader`'s
        for the bytes of its indexes, found once per writer schema and prefix."""
        if data[HEADER_BYTES : HEADER_BYTES + 1] == FIRST_MESSAGE:
            prefix, start = FIRST_MESSAGE, HEADER_BYTES + 1
        else:
            _, length = read_indexes(memoryview(data)[HEADER_BYTES:])
            start = HEADER_BYTES + length
            prefix = data[HEADER_BYTES:start]
        known = writer.readers.get(prefix)
        if known is None:
            known = self._reader(schema_id, writer, prefix)
            if len(writer.readers) < MAX_KNOWN_PREFIXES:
                writer.readers[prefix] = known
        name, reader = known
        try:  # upb parses any buffer; the stub says bytes
            message = reader.FromString(memoryview(data)[start:])  # type: ignore[arg-type]
        except (ProtobufDecodeError, ValueError, RuntimeError) as exc:
            raise DecodeError(f"not a {name} (schema id {schema_id}): {exc}") from None
        if self._record_type is None:
            return message
        return message_to_record(message, self._record_type, f"{name} (schema id {schema_id})")

    def _reader(
        self, schema_id: int, writer: WriterSchema, prefix: bytes
    ) -> tuple[str, type[Message]]:
        """(the message's full name, the class to parse it with) for the message indexes
        `prefix`; DecodeError if they name no message, or (for a generated class) another."""
        indexes, _ = read_indexes(memoryview(prefix))
        name = message_full_name(writer.file, writer.tree, indexes)
        if self._record_type is not None:
            return name, writer.message_type(name)
        if name != self._descriptor.full_name:
            raise DecodeError(
                f"the record is a {name} (schema id {schema_id}), "
                f"the topic reads {self._descriptor.full_name}"
            )
        return name, self._message_type

    def _own_schema(self) -> tuple[str, str]:
        return self._descriptor.full_name, proto_text(self._own_file)

    def _write(self, value: Any) -> bytes:
        expected = self._record_type or self._message_type
        if not isinstance(value, expected):
            name = self._descriptor.full_name if self._record_type is None else expected.__name__
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        message = (
            value if isinstance(value, Message) else record_to_message(value, self._message_type)
        )
        return self._indexes + message.SerializeToString()
