"""Give a reader schema the writer's record names, so Avro resolution matches them.

Avro resolves a writer record against a reader record only when their names match
(fastavro compares the full names). A producer's `com.acme.Order` and the app's
`app.Order` Record describe the same topic's values: the topic already says they are
the same type, so the reader's records take the writer's names, pairwise by field.
Both schemas must be fastavro-normalized (`parse_schema(s, _write_hint=False)`: every
name fully qualified).
"""

from __future__ import annotations

from typing import Any

_NAMED = ("record", "error", "enum", "fixed")


def reader_named_like(reader: Any, writer: Any) -> Any:
    """A copy of `reader` whose named types carry the names of the writer's matching ones."""
    reader_defs = _definitions(reader, {})
    writer_defs = _definitions(writer, {})
    renames: dict[str, str] = {}
    _pair(reader, writer, reader_defs, writer_defs, renames)
    return _renamed(reader, renames)


def _definitions(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    """Every named type defined in `schema`, by full name."""
    if isinstance(schema, list):
        for branch in schema:
            _definitions(branch, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED and "name" in schema:
            found[schema["name"]] = schema
        for field in schema.get("fields", ()):
            _definitions(field["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _definitions(schema[key], found)
    return found


def _pair(
    reader: Any,
    writer: Any,
    reader_defs: dict[str, Any],
    writer_defs: dict[str, Any],
    renames: dict[str, str],
) -> None:
    reader = reader_defs.get(reader, reader) if isinstance(reader, str) else reader
    writer = writer_defs.get(writer, writer) if isinstance(writer, str) else writer
    if isinstance(reader, list) or isinstance(writer, list):
        reader_branches = _non_null(reader)
        writer_branches = _non_null(writer)
        if len(reader_branches) == 1 and len(writer_branches) == 1:
            _pair(reader_branches[0], writer_branches[0], reader_defs, writer_defs, renames)
        return
    if not (isinstance(reader, dict) and isinstance(writer, dict)):
        return
    kind = reader.get("type")
    if kind != writer.get("type"):
        return
    if kind in _NAMED:
        if reader["name"] in renames:  # already paired (recursion, or a second use)
            return
        renames[reader["name"]] = writer["name"]
    if kind in ("record", "error"):
        writer_fields = {f["name"]: f["type"] for f in writer.get("fields", ())}
        for field in reader.get("fields", ()):
            if field["name"] in writer_fields:
                _pair(
                    field["type"], writer_fields[field["name"]], reader_defs, writer_defs, renames
                )
    for key in ("items", "values"):
        if key in reader and key in writer:
            _pair(reader[key], writer[key], reader_defs, writer_defs, renames)


def _non_null(schema: Any) -> list[Any]:
    branches = schema if isinstance(schema, list) else [schema]
    return [b for b in branches if b != "null"]


def _renamed(schema: Any, renames: dict[str, str]) -> Any:
    if isinstance(schema, str):
        return renames.get(schema, schema)
    if isinstance(schema, list):
        return [_renamed(branch, renames) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    copy = dict(schema)
    if copy.get("type") in _NAMED and "name" in copy:
        copy["name"] = renames.get(copy["name"], copy["name"])
        copy.pop("namespace", None)  # the name is full
    else:
        copy["type"] = _renamed(copy.get("type"), renames)
    if "fields" in copy:
        copy["fields"] = [{**f, "type": _renamed(f["type"], renames)} for f in copy["fields"]]
    for key in ("items", "values"):
        if key in copy:
            copy[key] = _renamed(copy[key], renames)
    return copy
