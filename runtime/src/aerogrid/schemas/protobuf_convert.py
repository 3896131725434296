"""A message's plain dict, as `json_format.MessageToDict` gives it, without its per-field cost.

A Record reads a Protobuf message through the dict `MessageToDict` makes of it (proto field
names, fields without presence always there): `reference_dict` is that definition. It walks
the descriptor of every message it prints, field by field, at about 3 µs for a two-field
message; `fast_dict` reads the same fields straight off the message with a plan built once
per message type (the attribute to read, whether to ask HasField, how its value is printed)
and gives an equal dict, or None where the plan does not reach (extensions, an enum value
JSON option, a value the reference refuses, a field named HasField): the caller then takes
the reference path, which words the error. Its keys come in declaration order, not the
reference's (set fields by number, then the defaults): equal as a dict, so a Record
converted from it is the same, but which bad field msgspec names first may differ, and so a
failed conversion is redone from the reference dict.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any, cast

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.internal.type_checkers import ToShortestFloat
from google.protobuf.message import Message

Convert = Callable[[Any], Any]
#: Well-known types the reference prints with their own ToJsonString (RFC 3339, "1.5s", ...).
JSON_STRING_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)
#: Well-known types printed by the reference itself, for the nested message alone.
DELEGATED_TYPES = frozenset(
    {
        "google.protobuf.Any",
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
    }
)
WRAPPERS_FILE = "google/protobuf/wrappers.proto"
INT64_TYPES = frozenset(
    {FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64}
)  # printed as strings, as ProtoJSON has them
#: Plans kept at most (one per message type met); past it they are built again.
MAX_PLANS = 1024


def reference_dict(message: Message) -> dict[str, Any]:
    """The definition: MessageToDict with proto field names, fields without presence always."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


class Unplanned(Exception):
    """A message type the fast path leaves to the reference."""


class MessagePlan:
    """How to print one message type: fields always printed, and fields printed if set."""

    def __init__(self) -> None:
        self.always: tuple[tuple[str, Convert | None], ...] = ()
        self.if_set: tuple[tuple[str, Convert | None], ...] = ()

    def to_dict(self, message: Any) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        for name, convert in self.always:
            value = getattr(message, name)
            plain[name] = value if convert is None else convert(value)
        for name, convert in self.if_set:
            if message.HasField(name):
                value = getattr(message, name)
                plain[name] = value if convert is None else convert(value)
        return plain


#: By message descriptor (upb's or the pure-Python one): its plan, or None if it has none.
#: Only whole plans are put here (a thread never meets one still being built).
_plans: dict[object, MessagePlan | None] = {}
_UNSEEN = MessagePlan()
Building = dict[object, MessagePlan]


def fast_dict(message: Message) -> dict[str, Any] | None:
    """The reference's dict of `message`, or None where the reference must make it."""
    descriptor = message.DESCRIPTOR
    plan = _plans.get(descriptor, _UNSEEN)
    if plan is _UNSEEN:
        plan = _new_plan(cast(Descriptor, descriptor))
    if plan is None:
        return None
    try:
        return plan.to_dict(message)
    except Exception:  # whatever the reference refuses (a Timestamp past 9999...), it words
        return None


def _new_plan(descriptor: Descriptor) -> MessagePlan | None:
    """The plan of a message type and of the types in it, kept once all are whole."""
    building: Building = {}
    try:
        plan: MessagePlan | None = _plan(descriptor, building)
    except Exception:  # Unplanned, or a descriptor this protobuf has otherwise: the reference
        plan, building = None, {}
    if len(_plans) >= MAX_PLANS:
        _plans.clear()
    _plans.update(building)
    _plans[descriptor] = plan
    return plan


def _plan(descriptor: Descriptor, building: Building) -> MessagePlan:
    """The plan of a message type, in `building` before its fields so a recursive type finds
    it; Unplanned if the reference must print it."""
    if descriptor.full_name in JSON_STRING_TYPES or descriptor.file.name == WRAPPERS_FILE:
        raise Unplanned(descriptor.full_name)  # a top-level well-known type: not a Record's
    if descriptor.extension_ranges:
        raise Unplanned(f"{descriptor.full_name} takes extensions")
    plan = building[descriptor] = MessagePlan()
    always: list[tuple[str, Convert | None]] = []
    if_set: list[tuple[str, Convert | None]] = []
    for field in descriptor.fields:
        converter = _field(field, building)
        (if_set if field.has_presence else always).append((field.name, converter))
    plan.always, plan.if_set = tuple(always), tuple(if_set)
    return plan


def _field(field: FieldDescriptor, building: Building) -> Convert | None:
    """How a field's value is printed: a map, a list, or a single value (None: as it is)."""
    if field.is_repeated:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key = _map_key(entry.fields_by_name["key"])
            value = _value(entry.fields_by_name["value"], building)
            return _map_of(key, value)
        each = _value(field, building)
        return list if each is None else _list_of(each)
    return _value(field, building)


def _map_of(key: Convert, value: Convert | None) -> Convert:
    if value is None:
        return lambda entries: {key(k): entries[k] for k in entries}
    return lambda entries: {key(k): value(entries[k]) for k in entries}


def _list_of(each: Convert) -> Convert:
    return lambda values: [each(v) for v in values]


def _map_key(field: FieldDescriptor) -> Convert:
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return lambda key: "true" if key else "false"
    return str


def _value(field: FieldDescriptor, building: Building) -> Convert | None:
    """One value of a field, as the reference's _FieldToJsonObject prints it."""
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        return _message(cast(Descriptor, field.message_type), building)
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        return _enum(cast(EnumDescriptor, field.enum_type))
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _base64
    if kind in INT64_TYPES:
        return str
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return _double
    if kind == FieldDescriptor.CPPTYPE_FLOAT:
        return _float
    return None  # str, bool and 32-bit integers print as they are


def _message(descriptor: Descriptor, building: Building) -> Convert:
    name = descriptor.full_name
    if descriptor.file.name == WRAPPERS_FILE:
        inner = _value(descriptor.fields_by_name["value"], building)
        if inner is None:
            return lambda wrapper: wrapper.value
        return lambda wrapper: inner(wrapper.value)
    if name in JSON_STRING_TYPES:
        return lambda message: message.ToJsonString()
    if name in DELEGATED_TYPES:
        return reference_dict
    nested = building.get(descriptor) or _plans.get(descriptor) or _plan(descriptor, building)
    return nested.to_dict


def _enum(enum: EnumDescriptor) -> Convert:
    if enum.full_name == "google.protobuf.NullValue":
        return lambda _: None
    if _enum_json_option_known():
        raise Unplanned("enum values may carry a JSON name option")
    names = {value.number: value.name for value in enum.values}
    if enum.is_closed:
        return lambda number: names[number]  # KeyError: the reference refuses it
    return lambda number: names.get(number, number)


def _enum_json_option_known() -> bool:
    """Whether `pb.enumvalue.json` is in the default pool: the reference then reads it."""
    try:
        descriptor_pool.Default().FindExtensionByName("pb.enumvalue.json")
    except KeyError:
        return False
    return True


def _base64(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _double(value: float) -> float | str:
    if math.isinf(value):
        return "-Infinity" if value < 0.0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return value


def _float(value: float) -> float | str:
    if math.isinf(value) or math.isnan(value):
        return _double(value)
    return ToShortestFloat(value)
