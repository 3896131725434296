"""Protobuf records: a generated message in the Confluent wire format.

After the 5-byte header, Confluent's Protobuf serializers write the message's place in
its .proto file as "message indexes" (a zigzag varint count, then each index; the
common `[0]` is the single byte 0), then the message. We decode with the topic's
generated class (the reader), after checking that the writer's schema (from the
registry, by id) names that same message at those indexes: a record of another
message type would otherwise parse into nonsense without an error.

A `Record` value type is refused for now (ConfigurationError): use a generated class,
or format="avro" / "json-schema" for Records.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError as ProtobufDecodeError
from google.protobuf.message import Message

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.schemas.codec import WriterSchemas
from aerogrid.schemas.errors import SchemaNotLoaded
from aerogrid.schemas.protobuf_text import MessageTree, message_names, proto_text
from aerogrid.schemas.registry import RegisteredSchema, SchemaRegistry
from aerogrid.schemas.subjects import SubjectNamer
from aerogrid.schemas.wire import frame, parse_frame

SCHEMA_TYPE = "PROTOBUF"
#: More nesting than any real schema has: a longer index list is garbage, not a message.
MAX_INDEXES = 64


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
    return b"".join(_varint(_zigzag(n)) for n in [len(indexes), *indexes])


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


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


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


def _writer_names(registered: RegisteredSchema) -> tuple[str, tuple[MessageTree, ...]]:
    """What decoding needs of a writer schema; raises (the id is then unusable) if bad."""
    package, messages = message_names(registered.schema)
    if not messages:
        raise ValueError("it declares no message")
    return package, messages


def _full_name(package: str, messages: tuple[MessageTree, ...], indexes: list[int]) -> str:
    """The full name of the message at `indexes`, or a DecodeError naming the bad index."""
    names = [package] if package else []
    level = messages
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


class ProtobufCodec:
    """A topic's keys or values as one generated Protobuf message class."""

    format = "protobuf"

    def __init__(self, value_type: Any, *, registry: SchemaRegistry, subjects: SubjectNamer):
        if not (isinstance(value_type, type) and issubclass(value_type, Message)):
            raise ConfigurationError(
                f"format='protobuf' takes a generated Protobuf message class, not "
                f"{value_type!r} (a Record is not supported for Protobuf yet: use "
                "format='avro' or 'json-schema', or generate a class with protoc)"
            )
        self._message_class: type[Message] = value_type
        self._descriptor = cast(Descriptor, value_type.DESCRIPTOR)
        self._registry = registry
        self._subjects = subjects
        self._writers: WriterSchemas[tuple[str, tuple[MessageTree, ...]]] = WriterSchemas(
            registry, schema_type=SCHEMA_TYPE, parse=_writer_names
        )
        self._indexes = encode_indexes(message_indexes(self._descriptor))
        self._own_id: int | None = None

    def schema_id_to_load(self, data: bytes | None) -> int | None:
        return self._writers.to_load(data)

    async def load(self, schema_id: int) -> None:
        await self._writers.load(schema_id)

    def decode(self, data: bytes | None) -> Any:
        if data is None:
            return None
        schema_id, payload = parse_frame(data)
        package, messages = self._writers.get(schema_id)
        indexes, offset = read_indexes(payload)
        writer = _full_name(package, messages, indexes)
        if writer != self._descriptor.full_name:
            raise DecodeError(
                f"the record is a {writer} (schema id {schema_id}), "
                f"the topic reads {self._descriptor.full_name}"
            )
        message = self._message_class()
        try:
            message.ParseFromString(bytes(payload[offset:]))
        except (ProtobufDecodeError, ValueError, RuntimeError) as exc:
            raise DecodeError(f"not a {writer} (schema id {schema_id}): {exc}") from None
        return message

    async def prepare_send(self, value: Any) -> None:
        if self._own_id is not None:
            return
        file = descriptor_pb2.FileDescriptorProto()
        self._descriptor.file.CopyToProto(file)
        self._own_id = await self._registry.register(
            self._subjects.subject(self._descriptor.full_name), proto_text(file), SCHEMA_TYPE
        )

    def encode(self, value: Any) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, self._message_class):
            raise TypeError(f"expected {self._descriptor.full_name}, got {type(value).__name__}")
        if self._own_id is None:
            raise SchemaNotLoaded(
                f"encode() before prepare_send(): no schema id for {self._descriptor.full_name}"
            )
        return frame(self._own_id, self._indexes + value.SerializeToString())
