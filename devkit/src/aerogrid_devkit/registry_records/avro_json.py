"""A JSON value (as a person types it) checked against an Avro schema and made writable.

fastavro's own validation names no path for a missing field and lets unknown fields
through, so `aerogrid produce` walks the schema itself: every mismatch is a
`ValueMismatch` naming the field (`$.lines[0].sku`) and what the schema wants. It also
turns the JSON forms of Avro's logical types into what fastavro writes: a decimal from
a number or a numeric string, a timestamp or date from an ISO string (or the number).
Unions take the value as is (`null` or a branch's value), not Avro's `{"type": value}`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = ["ValueMismatch", "avro_datum"]

_INTEGERS = ("int", "long")
_FLOATS = ("float", "double")


class ValueMismatch(ValueError):
    """The value does not fit the schema at `path`."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def avro_datum(schema: Any, value: Any, named: dict[str, Any], path: str = "$") -> Any:
    """`value` as fastavro writes it with `schema` (parsed; `named`: its named types)."""
    if isinstance(schema, str) and schema in named:
        return avro_datum(named[schema], value, named, path)
    if isinstance(schema, list):
        return _union(schema, value, named, path)
    kind = schema if isinstance(schema, str) else schema["type"]
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if logical is not None and kind in ("int", "long", "bytes", "fixed"):
        converted = _logical(schema, logical, value, path)
        if converted is not None:
            return converted
    if kind == "null":
        if value is not None:
            raise ValueMismatch(path, f"{_shown(value)} is not null")
        return None
    if kind == "boolean":
        return _checked(value, isinstance(value, bool), "a boolean", path)
    if kind in _INTEGERS:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        return _checked(value, is_int, f"an integer ({kind})", path)
    if kind in _FLOATS:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        return float(_checked(value, is_number, f"a number ({kind})", path))
    if kind == "string":
        return _checked(value, isinstance(value, str), "a string", path)
    if kind in ("bytes", "fixed"):
        data = _checked(value, isinstance(value, str), "a string (its UTF-8 bytes)", path)
        encoded = data.encode()
        if kind == "fixed" and len(encoded) != schema["size"]:
            raise ValueMismatch(path, f"fixed {schema['name']} needs {schema['size']} bytes")
        return encoded
    if kind == "enum":
        if value not in schema["symbols"]:
            raise ValueMismatch(path, f"{_shown(value)} is not one of {schema['symbols']}")
        return value
    if kind == "array":
        items = _checked(value, isinstance(value, list), "an array", path)
        return [avro_datum(schema["items"], v, named, f"{path}[{i}]") for i, v in enumerate(items)]
    if kind == "map":
        entries = _checked(value, isinstance(value, dict), "an object (a map)", path)
        return {
            k: avro_datum(schema["values"], v, named, f"{path}.{k}") for k, v in entries.items()
        }
    if kind in ("record", "error"):
        return _record(schema, value, named, path)
    raise ValueMismatch(path, f"the schema's type {kind!r} is not supported here")


def _record(schema: dict[str, Any], value: Any, named: dict[str, Any], path: str) -> Any:
    fields = _checked(value, isinstance(value, dict), f"an object (record {schema['name']})", path)
    known = {f["name"] for f in schema["fields"]}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueMismatch(
            f"{path}.{unknown[0]}", f"record {schema['name']} has no field {unknown[0]!r}"
        )
    datum: dict[str, Any] = {}
    for field in schema["fields"]:
        name = field["name"]
        where = f"{path}.{name}"
        if name in fields:
            datum[name] = avro_datum(field["type"], fields[name], named, where)
        elif "default" in field:
            datum[name] = avro_datum(field["type"], field["default"], named, where)
        else:
            raise ValueMismatch(where, "missing (the field is required: it has no default)")
    return datum


def _union(branches: list[Any], value: Any, named: dict[str, Any], path: str) -> Any:
    if value is None and "null" in branches:
        return None
    failures = []
    for branch in branches:
        if branch == "null":
            continue
        try:
            return avro_datum(branch, value, named, path)
        except ValueMismatch as exc:
            if exc.path != path:  # it reached inside this branch: that error says more
                raise
            failures.append(str(exc).removeprefix(f"{path}: "))
    raise ValueMismatch(path, f"matches no branch of the union: {'; '.join(failures)}")


def _logical(schema: dict[str, Any], logical: str, value: Any, path: str) -> Any:
    """The logical type's Python value, or None to treat the value as the plain type."""
    if logical == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueMismatch(path, f"{_shown(value)} is not a decimal number")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ValueMismatch(path, f"{_shown(value)} is not a decimal number") from None
        scale = int(schema.get("scale", 0))
        if not number.is_finite() or -int(number.as_tuple().exponent) > scale:
            raise ValueMismatch(path, f"{value} has more than {scale} decimal places")
        digits = len(number.quantize(Decimal(1).scaleb(-scale)).as_tuple().digits)
        if digits > int(schema["precision"]):
            raise ValueMismatch(path, f"{value} has more than {schema['precision']} digits")
        return number
    if not isinstance(value, str):
        return None
    try:
        if logical.startswith(("timestamp-", "local-timestamp-")):
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None and logical.startswith("timestamp-"):
                moment = moment.replace(tzinfo=UTC)
            return moment
        if logical == "date":
            return date.fromisoformat(value)
        if logical.startswith("time-"):
            return time.fromisoformat(value)
    except ValueError:
        raise ValueMismatch(path, f"{_shown(value)} is not an ISO {logical}") from None
    return None


def _checked(value: Any, ok: bool, wanted: str, path: str) -> Any:
    if not ok:
        raise ValueMismatch(path, f"{_shown(value)} is not {wanted}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"
