"""`Record`: typed Kafka values declared with annotations, JSON on the wire.

Records are msgspec Structs: decoding validates types in C, names the failing field,
and ignores unknown fields, which is what a stream of evolving JSON events needs.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Record(msgspec.Struct, kw_only=True):
    """Base class of a Kafka value type.

    Fields come from annotations: str, int, float, bool, Decimal, datetime, Optional,
    list, dict, nested Records, with defaults. Fields are keyword-only, so a required
    field may follow one with a default.
    """

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict of Python values (nested Records become dicts too)."""
        return {name: _plain(getattr(self, name)) for name in self.__struct_fields__}


def _plain(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
