"""Writer schemas a tiny record could make endless: arrays of items that take no bytes.

An Avro array is a count then the items; when an item takes zero bytes (null, an empty
record, a zero-size fixed), a 5-byte count makes fastavro build a list of billions of
items from a few bytes: a hung, memory-eating app. Every other type takes at least one
byte per item, so a record's size bounds the work its decode does (and MAX_RECORD_BYTES
bounds the size). Such writer schemas are refused when loaded; their records are dead
letters naming why. (Maps are safe: each entry has a key of at least one byte.)
"""

from __future__ import annotations

from typing import Any


def unbounded_array(schema: Any) -> str | None:
    """The path of an array whose items take no bytes in a fastavro-parsed schema, or None."""
    named: dict[str, Any] = schema.get("__named_schemas", {}) if isinstance(schema, dict) else {}
    return _find(schema, named, "$", set())


def _find(schema: Any, named: dict[str, Any], path: str, seen: set[str]) -> str | None:
    if isinstance(schema, str):
        if schema not in named or schema in seen:
            return None
        return _find(named[schema], named, path, seen | {schema})
    if isinstance(schema, list):
        for branch in schema:
            found = _find(branch, named, path, seen)
            if found:
                return found
        return None
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if kind == "array":
        if _takes_no_bytes(schema["items"], named, set()):
            return path
        return _find(schema["items"], named, f"{path}[]", seen)
    if kind == "map":
        return _find(schema["values"], named, f"{path}{{}}", seen)
    if kind in ("record", "error"):
        seen = seen | {schema.get("name", "")}
        for field in schema.get("fields", ()):
            found = _find(field["type"], named, f"{path}.{field['name']}", seen)
            if found:
                return found
        return None
    if isinstance(kind, dict | list):
        return _find(kind, named, path, seen)
    return None


def _takes_no_bytes(schema: Any, named: dict[str, Any], seen: set[str]) -> bool:
    if schema == "null":
        return True
    if isinstance(schema, str):
        if schema not in named or schema in seen:
            return False
        return _takes_no_bytes(named[schema], named, seen | {schema})
    if not isinstance(schema, dict):
        return False  # a union: its branch index takes a byte
    kind = schema.get("type")
    if kind in ("record", "error"):
        inner = seen | {schema.get("name", "")}
        return all(_takes_no_bytes(f["type"], named, inner) for f in schema.get("fields", ()))
    if kind == "fixed":
        return int(schema.get("size", 1)) == 0
    if isinstance(kind, str | dict) and kind not in ("array", "map", "enum"):
        return _takes_no_bytes(kind, named, seen)  # {"type": "null"}, logical wrappers
    return False
