"""Which of a writer's logical types the Record wants converted, and which it wants raw.

fastavro converts every logical type the writer declares (a `uuid` string to a UUID, a
`timestamp-millis` long to a datetime). A Record that declares the field as the
underlying type (`id: str`, `at: int`) wants the raw value, as Avro's resolution rules
give a reader without the logical type; msgspec would refuse the converted one. So the
writer schema a codec reads with keeps a logical type only where the Record's field has
the same kind (datetime for any timestamp, Decimal for decimal, ...), and fields the
Record does not have are read raw (they are dropped anyway).

Both schemas are fastavro-normalized (`parse_schema(s, _write_hint=False)`: full names,
named types defined once and referenced by full name after).
"""

from __future__ import annotations

from typing import Any

#: Logical type → the kind of Python value fastavro makes of it.
_KINDS = {
    "decimal": "decimal",
    "uuid": "uuid",
    "date": "date",
    "time-millis": "time",
    "time-micros": "time",
    "timestamp-millis": "datetime",
    "timestamp-micros": "datetime",
    "local-timestamp-millis": "datetime",
    "local-timestamp-micros": "datetime",
}
_NAMED = ("record", "error", "enum", "fixed")


def writer_for_reader(writer: Any, reader: Any) -> Any:
    """A copy of `writer` without the logical types `reader` does not use at the same place."""
    return _Stripper(_definitions(writer), _definitions(reader)).walk(writer, reader)


def _definitions(schema: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for branch in node:
                visit(branch)
        elif isinstance(node, dict):
            if node.get("type") in _NAMED and "name" in node:
                found[node["name"]] = node
            for field in node.get("fields", ()):
                visit(field["type"])
            for key in ("items", "values"):
                if key in node:
                    visit(node[key])

    visit(schema)
    return found


def _kind(node: Any) -> str | None:
    """The Python kind of a node's logical type, if it has one fastavro converts."""
    return _KINDS.get(node.get("logicalType", "")) if isinstance(node, dict) else None


class _Stripper:
    def __init__(self, writer_defs: dict[str, Any], reader_defs: dict[str, Any]) -> None:
        self.writer_defs = writer_defs
        self.reader_defs = reader_defs

    def walk(self, writer: Any, reader: Any) -> Any:
        if isinstance(reader, str):
            reader = self.reader_defs.get(reader, reader)
        if isinstance(writer, list):
            return [self.walk(branch, self._branch_for(branch, reader)) for branch in writer]
        if isinstance(reader, list):
            reader = self._branch_for(writer, reader)
        if not isinstance(writer, dict):
            return writer  # a primitive, or a named type referenced again
        node = dict(writer)
        kind = _kind(node)
        if kind is not None and kind != _kind(reader):
            del node["logicalType"]
        reader_node = reader if isinstance(reader, dict) else {}
        if "fields" in node:
            reader_fields = {f["name"]: f["type"] for f in reader_node.get("fields", ())}
            node["fields"] = [
                {**f, "type": self.walk(f["type"], reader_fields.get(f["name"]))}
                for f in node["fields"]
            ]
        for key in ("items", "values"):
            if key in node:
                node[key] = self.walk(node[key], reader_node.get(key))
        return node

    def _branch_for(self, writer: Any, reader: Any) -> Any:
        """The reader's union branch a writer branch resolves to (same type, else the only one)."""
        if not isinstance(reader, list):
            return reader
        branches = [self.reader_defs.get(b, b) if isinstance(b, str) else b for b in reader]
        branches = [b for b in branches if b != "null"]
        resolved = self.writer_defs.get(writer, writer) if isinstance(writer, str) else writer
        for branch in branches:
            if _type_name(branch) == _type_name(resolved):
                return branch
        return branches[0] if len(branches) == 1 else None


def _type_name(node: Any) -> Any:
    return node.get("type") if isinstance(node, dict) else node
