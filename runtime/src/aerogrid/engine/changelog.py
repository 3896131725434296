"""The changelog format: one Kafka record per changed row, keyed by the row key.

Keys are JSON (so an int key comes back an int); values are a JSON object of
column → cell, with Decimal and datetime tagged so they come back exactly; a delete is
a tombstone (no value), which compaction then removes. Rows are stored by column name,
so a grid may gain or drop columns between versions of an app.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from aerogrid.grids import Cell, Grid, RowKey, RowTuple

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_key_decoder = msgspec.json.Decoder(str | int)


def encode_key(key: RowKey) -> bytes:
    return _encoder.encode(key)


def decode_key(data: bytes | None) -> RowKey:
    try:
        key: RowKey = _key_decoder.decode(data or b"null")
    except msgspec.ValidationError:
        raise ValueError(f"changelog key {data!r} is not a str or int") from None
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
    return row_decoder(grid)(data)


def row_decoder(grid: Grid) -> Callable[[bytes | None], RowTuple | None]:
    """`decode_row` for one grid, with its columns and default row looked up once.

    Restore calls it for every changelog record, so the common cell (a JSON scalar) is
    taken as it is and only tagged cells (Decimal, datetime) are converted.
    """
    columns = grid.columns
    default = grid._default_tuple()
    pairs = list(zip(columns, default, strict=True))

    def decode(data: bytes | None) -> RowTuple | None:
        if data is None:
            return None
        stored = _decoder.decode(data)
        if type(stored) is not dict:
            raise ValueError("changelog value is not a JSON object")
        values: list[Any] = [stored.get(c, d) for c, d in pairs]
        for i, value in enumerate(values):
            kind = type(value)
            if kind is dict:
                values[i] = _untag(value)
            elif kind is list:
                raise ValueError(f"cell {value!r} is not a cell value")
        return tuple(values)

    return decode
