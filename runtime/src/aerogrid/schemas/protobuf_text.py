"""Protobuf schemas as registries hold them: `.proto` text, written without protoc.

Registries store a Protobuf schema as `.proto` text (Confluent's also take a base64
FileDescriptorProto, which its Python serializer sends; Apicurio and others want text).
`proto_text` writes it from a file descriptor (a generated class's, or a Record's);
reading a writer's schema is `aerogrid.schemas.protobuf_parse`.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.protobuf_parse import SCALAR_TYPES

FieldProto = descriptor_pb2.FieldDescriptorProto

_SCALARS = {number: name for name, number in SCALAR_TYPES.items()}
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
        value = field.default_value  # bytes: already C-escaped by protoc; strings: raw text
        if field.type == FieldProto.TYPE_STRING:
            value = f'"{_escaped(value)}"'
        elif field.type == FieldProto.TYPE_BYTES:
            value = f'"{value}"'
        options.append(f"default = {value}")
    if field.options.HasField("packed"):
        options.append(f"packed = {'true' if field.options.packed else 'false'}")
    return f" [{', '.join(options)}]" if options else ""


def _escaped(text: str) -> str:
    """A string literal's inside: backslash, quote and control characters escaped."""
    out = []
    for char in text:
        if char in '\\"':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return "".join(out)
