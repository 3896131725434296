"""The changelog format: one Kafka record per changed row, keyed by the row key.

Keys are JSON (so an int key comes back an int); values are a JSON object of
column → cell, with Decimal and datetime tagged so they come back exactly; a delete is
a tombstone (no value), which compaction then removes. Rows are stored by column name,
so a grid may gain or drop columns between versions of an app.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import msgspec

from aerogrid.grids import Cell, Grid, RowKey, RowTuple

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def encode_key(key: RowKey) -> bytes:
    return _encoder.encode(key)


def decode_key(data: bytes | None) -> RowKey:
    key = _decoder.decode(data or b"null")
    if isinstance(key, bool) or not isinstance(key, str | int):
        raise ValueError(f"changelog key {data!r} is not a str or int")
    return key


def _tag(cell: Cell) -> Any:
    if isinstance(cell, Decimal):
        return {"$decimal": str(cell)}
    if isinstance(cell, dt.datetime):
        return {"$datetime": cell.isoformat()}
    return cell


def _untag(value: Any) -> Cell:
    if isinstance(value, dict):
        if "$decimal" in value:
            return Decimal(value["$decimal"])
        if "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
        raise ValueError(f"unknown tagged cell {value!r}")
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise ValueError(f"cell {value!r} is not a cell value")


def encode_row(grid: Grid, row: RowTuple | None) -> bytes | None:
    if row is None:
        return None
    return _encoder.encode({c: _tag(v) for c, v in zip(grid.columns, row, strict=True)})


def decode_row(grid: Grid, data: bytes | None) -> RowTuple | None:
    """A stored row aligned with the grid's current columns (new columns: the default)."""
    if data is None:
        return None
    stored = _decoder.decode(data)
    if not isinstance(stored, dict):
        raise ValueError("changelog value is not a JSON object")
    default = grid._default_tuple()
    return tuple(
        _untag(stored[column]) if column in stored else default[i]
        for i, column in enumerate(grid.columns)
    )
