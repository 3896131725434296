"""Reading a writer's Protobuf schema as a registry holds it, without protoc.

Registries hand back `.proto` text (Confluent's may hand back a base64 descriptor,
which its Python serializer registers). `parse_schema` turns either into a
FileDescriptorProto that a DescriptorPool accepts: messages (nested too), enums, fields
with their labels, maps (as protoc's `XEntry` nested types, counted where protoc counts
them, which Confluent's message indexes rely on), oneofs and proto3 `optional`. Options,
services, extensions and reserved ranges are skipped: decoding needs none of them.
Type names are kept as written; the pool resolves them by Protobuf's scoping rules.
"""

from __future__ import annotations

import base64
import binascii
import re

from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError as ProtobufDecodeError

FieldProto = descriptor_pb2.FieldDescriptorProto
MessageProto = descriptor_pb2.DescriptorProto

#: A message's name and its nested messages, in declaration order.
MessageTree = tuple[str, tuple["MessageTree", ...]]

SCALAR_TYPES: dict[str, int] = {
    "double": FieldProto.TYPE_DOUBLE,
    "float": FieldProto.TYPE_FLOAT,
    "int64": FieldProto.TYPE_INT64,
    "uint64": FieldProto.TYPE_UINT64,
    "int32": FieldProto.TYPE_INT32,
    "fixed64": FieldProto.TYPE_FIXED64,
    "fixed32": FieldProto.TYPE_FIXED32,
    "bool": FieldProto.TYPE_BOOL,
    "string": FieldProto.TYPE_STRING,
    "bytes": FieldProto.TYPE_BYTES,
    "uint32": FieldProto.TYPE_UINT32,
    "sfixed32": FieldProto.TYPE_SFIXED32,
    "sfixed64": FieldProto.TYPE_SFIXED64,
    "sint32": FieldProto.TYPE_SINT32,
    "sint64": FieldProto.TYPE_SINT64,
}
_LABELS = {
    "optional": FieldProto.LABEL_OPTIONAL,
    "required": FieldProto.LABEL_REQUIRED,
    "repeated": FieldProto.LABEL_REPEATED,
}
# Tokens of .proto text: comments (dropped), strings whole, names, numbers, punctuation.
_TOKENS = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[\w.+-]+|\S', re.S)


def parse_schema(schema: str, name: str = "writer.proto") -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of a writer schema (.proto text or base64); ValueError if it is neither."""
    descriptor = _base64_descriptor(schema)
    if descriptor is None:
        descriptor = _Parser(schema).file()
    descriptor.name = name
    return descriptor


def message_tree(file: descriptor_pb2.FileDescriptorProto) -> tuple[MessageTree, ...]:
    """Every message's name, nested as declared: what message indexes count."""

    def tree(message: MessageProto) -> MessageTree:
        return message.name, tuple(tree(n) for n in message.nested_type)

    return tuple(tree(m) for m in file.message_type)


def map_entry_name(field_name: str) -> str:
    """protoc's name for a map field's entry message: `tag_counts` → `TagCountsEntry`."""
    return "".join(part[:1].upper() + part[1:] for part in field_name.split("_")) + "Entry"


def _base64_descriptor(schema: str) -> descriptor_pb2.FileDescriptorProto | None:
    if "{" in schema or ";" in schema:
        return None
    try:
        raw = base64.b64decode(schema.strip(), validate=True)
        return descriptor_pb2.FileDescriptorProto.FromString(raw)
    except (binascii.Error, ValueError, ProtobufDecodeError):
        return None


class _Parser:
    """A recursive-descent reader of the .proto statements decoding needs."""

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = [
            t for t in _TOKENS.findall(text) if not t.startswith(("//", "/*"))
        ]
        self.at = 0

    def file(self) -> descriptor_pb2.FileDescriptorProto:
        file = descriptor_pb2.FileDescriptorProto(syntax="proto2")
        while not self._done():
            word = self._next()
            if word == "syntax":
                self._expect("=")
                file.syntax = self._string()
                self._expect(";")
            elif word == "edition":
                raise ValueError("Protobuf editions are not supported (proto2 and proto3 are)")
            elif word == "package":
                file.package = self._next()
                self._expect(";")
            elif word == "import":
                path = self._next()
                if path in ("public", "weak"):
                    path = self._next()
                file.dependency.append(_unquote(path))
                self._expect(";")
            elif word == "message":
                self._message(file.message_type.add(), proto3=file.syntax == "proto3")
            elif word == "enum":
                self._enum(file.enum_type.add())
            elif word in ("service", "extend"):
                self._next()
                self._skip_block()
            elif word != ";":
                self._skip_statement()
        if file.syntax not in ("proto2", "proto3"):
            raise ValueError(f"syntax {file.syntax!r} is not proto2 or proto3")
        return file

    def _message(self, message: MessageProto, *, proto3: bool) -> None:
        message.name = self._next()
        self._expect("{")
        synthetic: list[FieldProto] = []
        while (word := self._next()) != "}":
            if word == "message":
                self._message(message.nested_type.add(), proto3=proto3)
            elif word == "enum":
                self._enum(message.enum_type.add())
            elif word == "oneof":
                index = len(message.oneof_decl)
                message.oneof_decl.add(name=self._next())
                self._expect("{")
                while (inner := self._next()) != "}":
                    if inner in ("option", ";"):
                        if inner == "option":
                            self._skip_statement()
                        continue
                    field = self._field(message, inner, proto3=proto3)
                    field.oneof_index = index
            elif word in ("option", "reserved", "extensions"):
                self._skip_statement()
            elif word == "extend":
                self._next()
                self._skip_block()
            elif word == "group" or self._peek() == "group":
                raise ValueError("proto2 groups are not supported")
            elif word != ";":
                field = self._field(message, word, proto3=proto3)
                if field.proto3_optional:
                    synthetic.append(field)
        for field in synthetic:  # protoc puts proto3 optional's oneofs after the real ones
            field.oneof_index = len(message.oneof_decl)
            message.oneof_decl.add(name=f"_{field.name}")

    def _field(self, message: MessageProto, word: str, *, proto3: bool) -> FieldProto:
        field = message.field.add(label=FieldProto.LABEL_OPTIONAL)
        if word in _LABELS:
            field.label = _LABELS[word]
            field.proto3_optional = proto3 and word == "optional"
            word = self._next()
        if word == "map":
            self._expect("<")
            key, _, value = self._next(), self._expect(","), self._next()
            self._expect(">")
            field.name = self._next()
            entry = message.nested_type.add(name=map_entry_name(field.name))
            entry.options.map_entry = True
            _set_type(entry.field.add(name="key", number=1, label=FieldProto.LABEL_OPTIONAL), key)
            _set_type(
                entry.field.add(name="value", number=2, label=FieldProto.LABEL_OPTIONAL), value
            )
            field.label = FieldProto.LABEL_REPEATED
            field.type_name = entry.name
        else:
            _set_type(field, word)
            field.name = self._next()
        self._expect("=")
        field.number = int(self._next(), 0)
        if self._peek() == "[":
            self._skip_brackets("[", "]")
        self._expect(";")
        return field

    def _enum(self, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        enum.name = self._next()
        self._expect("{")
        while (word := self._next()) != "}":
            if word in ("option", "reserved"):
                self._skip_statement()
            elif word != ";":
                self._expect("=")
                enum.value.add(name=word, number=int(self._next(), 0))
                if self._peek() == "[":
                    self._skip_brackets("[", "]")
                self._expect(";")
        if not enum.value:
            raise ValueError(f"enum {enum.name} has no value")

    # Token helpers.
    def _done(self) -> bool:
        return self.at >= len(self.tokens)

    def _peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else ""

    def _next(self) -> str:
        if self._done():
            raise ValueError("the schema ends in the middle of a statement")
        self.at += 1
        return self.tokens[self.at - 1]

    def _expect(self, token: str) -> str:
        found = self._next()
        if found != token:
            raise ValueError(f"expected {token!r}, found {found!r} (token {self.at})")
        return found

    def _string(self) -> str:
        return _unquote(self._next())

    def _skip_statement(self) -> None:
        """Up to and including the next `;` at this level (an option's `{...}` value included)."""
        while (token := self._next()) != ";":
            if token in "{[(" and len(token) == 1:
                self.at -= 1
                self._skip_brackets(token, {"{": "}", "[": "]", "(": ")"}[token])

    def _skip_block(self) -> None:
        while self._peek() != "{":
            self._next()
        self._skip_brackets("{", "}")

    def _skip_brackets(self, opening: str, closing: str) -> None:
        self._expect(opening)
        depth = 1
        while depth:
            token = self._next()
            depth += (token == opening) - (token == closing)


def _set_type(field: FieldProto, name: str) -> None:
    if name in SCALAR_TYPES:
        field.type = SCALAR_TYPES[name]  # type: ignore[assignment]
    else:  # a message or an enum: the pool finds which
        field.type_name = name


def _unquote(token: str) -> str:
    if len(token) < 2 or token[0] not in "\"'" or token[-1] != token[0]:
        raise ValueError(f"expected a quoted string, found {token!r}")
    return token[1:-1]
