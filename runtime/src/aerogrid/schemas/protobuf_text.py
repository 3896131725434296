"""Protobuf schemas as registries hold them: `.proto` text, written and read without protoc.

Registries store a Protobuf schema as `.proto` text (Confluent's also take a base64
FileDescriptorProto, which its Python serializer sends). We write the text from a
generated class's file descriptor (`proto_text`), and read only what decoding needs
from a writer schema (`message_names`): every message's full name in the order
Confluent's message indexes count them, map entries included, as protoc numbers them.
"""

from __future__ import annotations

import base64
import binascii
import re

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError as ProtobufDecodeError

from aerogrid.errors import ConfigurationError

FieldProto = descriptor_pb2.FieldDescriptorProto

#: A message's name and its nested messages, in declaration order.
MessageTree = tuple[str, tuple["MessageTree", ...]]

_SCALARS = {
    FieldProto.TYPE_DOUBLE: "double",
    FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_INT64: "int64",
    FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_INT32: "int32",
    FieldProto.TYPE_FIXED64: "fixed64",
    FieldProto.TYPE_FIXED32: "fixed32",
    FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_STRING: "string",
    FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_UINT32: "uint32",
    FieldProto.TYPE_SFIXED32: "sfixed32",
    FieldProto.TYPE_SFIXED64: "sfixed64",
    FieldProto.TYPE_SINT32: "sint32",
    FieldProto.TYPE_SINT64: "sint64",
}
_LABELS = {FieldProto.LABEL_OPTIONAL: "optional", FieldProto.LABEL_REQUIRED: "required"}
#: Imports every registry knows without a reference.
WELL_KNOWN_PREFIX = "google/protobuf/"


def proto_text(file: descriptor_pb2.FileDescriptorProto) -> str:
    """The `.proto` source of a file descriptor (messages, enums, oneofs, maps, reserved).

    ConfigurationError for what we do not write: editions, groups, extensions, and
    imports other than the well-known types (schema references are not supported yet).
    """
    syntax = file.syntax or "proto2"
    if syntax not in ("proto2", "proto3"):
        raise ConfigurationError(f"{file.name}: Protobuf {syntax} is not supported (proto2/3)")
    others = [dep for dep in file.dependency if not dep.startswith(WELL_KNOWN_PREFIX)]
    if others:
        raise ConfigurationError(
            f"{file.name} imports {', '.join(others)}: schema references are not supported "
            "yet; only google/protobuf/ well-known types may be imported"
        )
    if file.extension:
        raise ConfigurationError(f"{file.name}: extensions are not supported")
    lines = [f'syntax = "{syntax}";']
    if file.package:
        lines.append(f"package {file.package};")
    lines.extend(f'import "{dep}";' for dep in file.dependency)
    for enum in file.enum_type:
        lines.extend(_enum(enum, ""))
    for message in file.message_type:
        lines.extend(_message(message, "", proto3=syntax == "proto3"))
    return "\n".join(lines) + "\n"


def _enum(enum: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    if enum.options.allow_alias:
        lines.append(f"{indent}  option allow_alias = true;")
    lines.extend(f"{indent}  {value.name} = {value.number};" for value in enum.value)
    return [*lines, f"{indent}}}"]


def _message(message: descriptor_pb2.DescriptorProto, indent: str, *, proto3: bool) -> list[str]:
    inner = indent + "  "
    if message.extension or message.extension_range:
        raise ConfigurationError(f"message {message.name}: extensions are not supported")
    entries = {n.name: n for n in message.nested_type if n.options.map_entry}
    oneofs: dict[int, list[FieldProto]] = {}
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            oneofs.setdefault(field.oneof_index, []).append(field)
    lines = [f"{indent}message {message.name} {{"]
    for field in message.field:
        if field.HasField("oneof_index") and not field.proto3_optional:
            members = oneofs.pop(field.oneof_index, None)
            if members is not None:  # the whole oneof, where its first field stands
                lines.append(f"{inner}oneof {message.oneof_decl[field.oneof_index].name} {{")
                lines.extend(f"{inner}  {_field(f, entries, proto3)}" for f in members)
                lines.append(f"{inner}}}")
            continue
        lines.append(f"{inner}{_field(field, entries, proto3)}")
    for enum in message.enum_type:
        lines.extend(_enum(enum, inner))
    for nested in message.nested_type:
        if not nested.options.map_entry:
            lines.extend(_message(nested, inner, proto3=proto3))
    for reserved in message.reserved_range:  # end is exclusive in descriptors
        lines.append(f"{inner}reserved {reserved.start} to {reserved.end - 1};")
    if message.reserved_name:
        names = ", ".join(f'"{name}"' for name in message.reserved_name)
        lines.append(f"{inner}reserved {names};")
    return [*lines, f"{indent}}}"]


def _field(
    field: FieldProto, entries: dict[str, descriptor_pb2.DescriptorProto], proto3: bool
) -> str:
    if field.type == FieldProto.TYPE_GROUP:
        raise ConfigurationError(f"field {field.name}: groups are not supported")
    entry = entries.get(field.type_name.rsplit(".", 1)[-1])
    if entry is not None and field.label == FieldProto.LABEL_REPEATED:
        key, value = (_type(f) for f in entry.field)
        return f"map<{key}, {value}> {field.name} = {field.number};"
    label = (
        "" if field.HasField("oneof_index") and not field.proto3_optional else _label(field, proto3)
    )
    return f"{label}{_type(field)} {field.name} = {field.number}{_field_options(field)};"


def _label(field: FieldProto, proto3: bool) -> str:
    if field.label == FieldProto.LABEL_REPEATED:
        return "repeated "
    if proto3:
        return "optional " if field.proto3_optional else ""
    return f"{_LABELS[field.label]} "


def _type(field: FieldProto) -> str:
    if field.type in _SCALARS:
        return _SCALARS[field.type]
    return field.type_name  # fully qualified, with its leading dot: unambiguous anywhere


def _field_options(field: FieldProto) -> str:
    options = []
    if field.HasField("default_value"):
        quoted = field.type in (FieldProto.TYPE_STRING, FieldProto.TYPE_BYTES)
        value = (
            '"' + field.default_value.replace('"', '\\"') + '"' if quoted else field.default_value
        )
        options.append(f"default = {value}")
    if field.options.HasField("packed"):
        options.append(f"packed = {'true' if field.options.packed else 'false'}")
    return f" [{', '.join(options)}]" if options else ""


# Reading a writer schema: tokens of .proto text, comments dropped, strings kept whole.
_TOKENS = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[\w.]+|\S', re.S)


def message_names(schema: str) -> tuple[str, tuple[MessageTree, ...]]:
    """(package, top-level message trees) of a writer schema: .proto text or base64 descriptor."""
    descriptor = _base64_descriptor(schema)
    if descriptor is not None:
        return descriptor.package, tuple(_tree(m) for m in descriptor.message_type)
    return _parse_text(schema)


def _base64_descriptor(schema: str) -> descriptor_pb2.FileDescriptorProto | None:
    if "{" in schema or ";" in schema:
        return None
    try:
        raw = base64.b64decode(schema.strip(), validate=True)
        return descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, ValueError, ProtobufDecodeError):
        return None


def _tree(message: descriptor_pb2.DescriptorProto) -> MessageTree:
    return message.name, tuple(_tree(n) for n in message.nested_type)


def _parse_text(schema: str) -> tuple[str, tuple[MessageTree, ...]]:
    tokens = [t for t in _TOKENS.findall(schema) if not t.startswith(("//", "/*"))]
    package = ""
    # A stack of (name or None for a non-message block, the nested messages found so far).
    stack: list[tuple[str | None, list[MessageTree]]] = [("", [])]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "package" and len(stack) == 1:
            package = tokens[i + 1]
        elif token == "message" and i + 2 < len(tokens) and tokens[i + 2] == "{":
            stack.append((tokens[i + 1], []))
            i += 3
            continue
        elif token == "map" and i + 1 < len(tokens) and tokens[i + 1] == "<" and stack[-1][0]:
            close = tokens.index(">", i)
            stack[-1][1].append((_map_entry_name(tokens[close + 1]), ()))
            i = close + 2
            continue
        elif token == "group":
            raise ValueError("proto2 groups are not supported")
        elif token == "{":
            stack.append((None, []))
        elif token == "}":
            if len(stack) == 1:
                raise ValueError("unbalanced '}'")
            name, nested = stack.pop()
            if name is not None:
                stack[-1][1].append((name, tuple(nested)))
        i += 1
    if len(stack) != 1:
        raise ValueError("unbalanced '{'")
    return package, tuple(stack[0][1])


def _map_entry_name(field_name: str) -> str:
    """protoc's name for a map field's entry message: `foo_bar` → `FooBarEntry`."""
    parts = field_name.split("_")
    return "".join(p[:1].upper() + p[1:] for p in parts) + "Entry"
