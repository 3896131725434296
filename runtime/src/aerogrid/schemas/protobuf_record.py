"""Records as Protobuf messages: a proto3 schema from a Record's annotations, and the
conversions between a Record and a message of any schema, field by field NAME.

Reading matches fields by name, not number, because a Record mirrors another team's
message by its fields' names (as with Avro and JSON Schema); the message is decoded with
the WRITER's schema (from the registry), so the numbers are the writer's own. Writing
uses the schema derived here, whose numbers follow the Record's declaration order: a
producer that adds fields adds them at the end, as with any .proto file.

Types: str → string, int → int64, float → double, bool, bytes, Decimal → string (its
exact text), datetime → google.protobuf.Timestamp (timezone-aware only), date → string
(ISO), Optional[T] → proto3 `optional T` (a message has presence anyway), list[T] →
repeated, dict[str, T] → map<string, T>, a nested Record → a message of the file.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect as inspect
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message

from aerogrid.errors import ConfigurationError, DecodeError
from aerogrid.record_formats import json_error
from aerogrid.records import Record
from aerogrid.schemas.protobuf_convert import fast_dict, reference_dict
from aerogrid.schemas.protobuf_parse import SCALAR_TYPES, map_entry_name

FieldProto = descriptor_pb2.FieldDescriptorProto
TIMESTAMP = "google/protobuf/timestamp.proto"
MAX_IMPORT_DEPTH = 32
_SCALAR_OF: dict[type[inspect.Type], str] = {
    inspect.StrType: "string",
    inspect.IntType: "int64",
    inspect.FloatType: "double",
    inspect.BoolType: "bool",
    inspect.BytesType: "bytes",
    inspect.DecimalType: "string",
    inspect.DateType: "string",
}


def record_file(record_type: type[Record]) -> descriptor_pb2.FileDescriptorProto:
    """The proto3 file of a Record: it is message 0, its nested Records the next ones."""
    # A module's name may hold what a proto package may not (an app file named `my-app.py`).
    package = re.sub(r"[^A-Za-z0-9_.]", "_", record_type.__module__).strip("_.") or "aerogrid"
    file = descriptor_pb2.FileDescriptorProto(
        name=f"{package.replace('.', '/')}/{record_type.__name__}.proto",
        package=package,
        syntax="proto3",
    )
    todo: list[type[Record]] = [record_type]
    names: dict[type[Record], str] = {record_type: record_type.__name__}
    while todo:
        current = todo.pop(0)
        message = file.message_type.add(name=names[current])
        info = inspect.type_info(current)
        assert isinstance(info, inspect.StructType)
        for number, field in enumerate(info.fields, start=1):
            proto = message.field.add(name=field.encode_name, number=number)
            where = f"{current.__name__}.{field.name}"
            _describe(proto, field.type, where, message, file, names, todo)
        for index, optional in enumerate(f for f in message.field if f.proto3_optional):
            optional.oneof_index = index
            message.oneof_decl.add(name=f"_{optional.name}")
    return file


def _describe(
    proto: FieldProto,
    declared: inspect.Type,
    where: str,
    message: descriptor_pb2.DescriptorProto,
    file: descriptor_pb2.FileDescriptorProto,
    names: dict[type[Record], str],
    todo: list[type[Record]],
) -> None:
    """Fill one field's label and type from its annotation (ConfigurationError if none fits)."""
    proto.label = FieldProto.LABEL_OPTIONAL
    if isinstance(declared, inspect.UnionType):
        others = [t for t in declared.types if not isinstance(t, inspect.NoneType)]
        if len(others) != 1 or len(declared.types) != 2:
            raise ConfigurationError(f"{where}: Protobuf takes Optional[T], not other unions")
        declared = others[0]
        # Messages have presence already; None is empty for a repeated field or a map.
        proto.proto3_optional = type(declared) in _SCALAR_OF
    if isinstance(declared, inspect.ListType):
        proto.label = FieldProto.LABEL_REPEATED
        _element(proto, declared.item_type, where, file, names, todo)
    elif isinstance(declared, inspect.DictType):
        if not isinstance(declared.key_type, inspect.StrType):
            raise ConfigurationError(f"{where}: a Protobuf map here needs str keys")
        entry = message.nested_type.add(name=map_entry_name(proto.name))
        entry.options.map_entry = True
        key = entry.field.add(name="key", number=1, label=FieldProto.LABEL_OPTIONAL)
        key.type = FieldProto.TYPE_STRING
        value = entry.field.add(name="value", number=2, label=FieldProto.LABEL_OPTIONAL)
        _element(value, declared.value_type, where, file, names, todo)
        proto.label = FieldProto.LABEL_REPEATED
        proto.type = FieldProto.TYPE_MESSAGE
        proto.type_name = f".{file.package}.{message.name}.{entry.name}"
    else:
        _element(proto, declared, where, file, names, todo)


def _element(
    proto: FieldProto,
    declared: inspect.Type,
    where: str,
    file: descriptor_pb2.FileDescriptorProto,
    names: dict[type[Record], str],
    todo: list[type[Record]],
) -> None:
    """A single value's type: a scalar, a Timestamp or another Record's message."""
    scalar = _SCALAR_OF.get(type(declared))
    if scalar is not None:
        proto.type = SCALAR_TYPES[scalar]  # type: ignore[assignment]
    elif isinstance(declared, inspect.DateTimeType):
        proto.type = FieldProto.TYPE_MESSAGE
        proto.type_name = ".google.protobuf.Timestamp"
        if TIMESTAMP not in file.dependency:
            file.dependency.append(TIMESTAMP)
    elif isinstance(declared, inspect.StructType) and issubclass(declared.cls, Record):
        if declared.cls not in names:
            if declared.cls.__name__ in names.values():
                raise ConfigurationError(f"{where}: two nested Records named {declared.cls!r}")
            names[declared.cls] = declared.cls.__name__
            todo.append(declared.cls)
        proto.type = FieldProto.TYPE_MESSAGE
        proto.type_name = f".{file.package}.{names[declared.cls]}"
    else:
        raise ConfigurationError(
            f"{where}: {declared!r} has no Protobuf form here (str, int, float, bool, bytes, "
            "Decimal, datetime, date, a Record; Optional, list or dict[str, ...] of those)"
        )


def pool_with(
    file: descriptor_pb2.FileDescriptorProto,
    imported: Mapping[str, descriptor_pb2.FileDescriptorProto] | None = None,
) -> descriptor_pool.DescriptorPool:
    """A pool of its own holding `file`, the files it imports and the well-known types.

    `imported` maps an import path to its file (a writer's references, from the registry);
    ValueError for an import that is neither there nor a well-known type.
    """
    pool = descriptor_pool.DescriptorPool()
    given = dict(imported or {})
    added: set[str] = set()

    def add_known(known: FileDescriptor) -> None:
        for dependency in known.dependencies:
            add_known(dependency)
        if known.name not in added:
            added.add(known.name)
            pool.AddSerializedFile(known.serialized_pb)

    def add(path: str, depth: int) -> None:
        if path in added:
            return
        if depth > MAX_IMPORT_DEPTH:
            raise ValueError(f"imports nest deeper than {MAX_IMPORT_DEPTH} (a cycle?) at {path}")
        if path.startswith("google/protobuf/") and path.endswith(".proto"):
            module = path.removesuffix(".proto").replace("/", ".") + "_pb2"
            try:
                add_known(importlib.import_module(module).DESCRIPTOR)
            except ImportError:
                raise ValueError(f"it imports {path}, which is not a well-known type") from None
            return
        if path not in given:
            raise ValueError(f"it imports {path}, which the registry gave no reference for")
        for dependency in given[path].dependency:
            add(dependency, depth + 1)
        added.add(path)
        pool.Add(given[path])

    for path in file.dependency:
        add(path, 0)
    pool.Add(file)
    return pool


def message_class(pool: descriptor_pool.DescriptorPool, full_name: str) -> type[Message]:
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(full_name))


def record_to_message(record: Record, message_type: type[Message]) -> Message:
    """The message of a Record (by field name); TypeError if a value has no Protobuf form."""
    message = message_type()
    try:
        json_format.ParseDict(msgspec.to_builtins(record), message)
    except json_format.ParseError as exc:
        raise TypeError(
            f"{type(record).__name__} as {message.DESCRIPTOR.full_name}: {exc}"
        ) from None
    return message


def message_to_record(message: Message, record_type: type[Record], what: str) -> Any:
    """The Record of a message of any schema, by field name; DecodeError if they disagree.

    As `record_by_reference`, faster: the fast dict (`protobuf_convert.fast_dict`) makes the
    same Record as the reference dict; what it does not make, or a Record it does not fit,
    is redone by the reference, whose error (naming the field it names first) is reported.
    """
    fast = fast_dict(message)
    if fast is not None:
        try:
            return msgspec.convert(fast, record_type, strict=False)
        except msgspec.ValidationError:
            pass
    return record_by_reference(message, record_type, what)


def record_by_reference(message: Message, record_type: type[Record], what: str) -> Any:
    """The definition of `message_to_record`: the Record of MessageToDict's dict."""
    try:
        plain = reference_dict(message)
    except (json_format.Error, ValueError) as exc:  # e.g. a Timestamp past year 9999
        raise DecodeError(f"{what} has a value no Record can hold: {exc}") from None
    try:
        return msgspec.convert(plain, record_type, strict=False)
    except msgspec.ValidationError as exc:  # the field's path, as every record format names it
        raise json_error(exc, f"{what} does not fit {record_type.__name__}") from None
