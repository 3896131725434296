"""Decoded values as a property test compares them: NaN equal to NaN.

Two reads of the same bytes agree even when a double is NaN, but `==` says otherwise (NaN
equals nothing, not itself), and a Record or a message holding one is then unequal to its
twin. Hypothesis finds such a double in random bytes sooner or later.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
from google.protobuf.message import Message

__all__ = ["comparable"]


def comparable(value: Any) -> Any:
    """`value` in a form `==` compares fully: a message as its type and deterministic bytes,
    a Record (any msgspec Struct) as builtins, NaN as the text "NaN"."""
    if isinstance(value, Message):
        return type(value).DESCRIPTOR.full_name, value.SerializeToString(deterministic=True)
    if isinstance(value, msgspec.Struct):
        value = msgspec.to_builtins(value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [comparable(item) for item in value]
    return value
