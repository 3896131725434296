"""The changelog record format: one Kafka record per changed row, keyed by the row key.

This module serves the engine: `engine.kafka` writes these records when it commits and
`engine.restore` reads them back; grids use `record_size` to refuse a row too big for it.

Keys are JSON (so an int key comes back an int); values are a JSON object of
column → cell, with Decimal and datetime tagged so they come back exactly; a delete is
a tombstone (no value), which compaction then removes. Rows are stored by column name,
so a grid may gain or drop columns between versions of an app.

Decoding raises only DecodeError, so restore can skip a foreign or damaged record; a
grid refuses a row whose record would exceed MAX_ROW_BYTES (see `record_size`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from aerogrid.errors import DecodeError
from aerogrid.grids import Cell, Grid, RowKey, RowTuple

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()
_key_decoder = msgspec.json.Decoder(str | int)


def encode_key(key: RowKey) -> bytes:
    return _encoder.encode(key)


def decode_key(data: bytes | None) -> RowKey:
    try:
        key: RowKey = _key_decoder.decode(data or b"null")
    except Exception as exc:
        raise DecodeError(
            f"changelog key {(data or b'')[:40]!r} is not a str or int: {exc}"
        ) from None
    return key


def record_size(grid: Grid, key: RowKey, row: RowTuple) -> int:
    """The bytes of a row's changelog record (key and value); ValueError if unencodable."""
    value = encode_row(grid, row)
    return len(encode_key(key)) + (len(value) if value is not None else 0)


def _tag(cell: Cell) -> Any:
    if isinstance(cell, Decimal):
        return {"$decimal": str(cell)}
    if isinstance(cell, dt.datetime):
        return {"$datetime": cell.isoformat()}
    return cell


def _untag(value: dict[str, Any]) -> Cell:
    try:
        if "$decimal" in value:
            return Decimal(value["$decimal"])
        if "$datetime" in value:
            return dt.datetime.fromisoformat(value["$datetime"])
    except Exception as exc:  # InvalidOperation, TypeError, ValueError
        raise DecodeError(f"tagged cell {_short(value)} is not valid: {exc!r}") from None
    raise DecodeError(f"unknown tagged cell {_short(value)}")


def _short(value: Any) -> str:
    """A cell for an error message, cut (a damaged record may hold megabytes)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:79] + "…"


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
    default = grid.default_tuple()
    pairs = list(zip(columns, default, strict=True))

    def decode(data: bytes | None) -> RowTuple | None:
        if data is None:
            return None
        try:
            stored = _decoder.decode(data)
        except Exception as exc:  # msgspec's errors, invalid UTF-8, deep nesting
            raise DecodeError(f"changelog row is not JSON: {type(exc).__name__}: {exc}") from None
        if type(stored) is not dict:
            raise DecodeError("changelog value is not a JSON object")
        values: list[Any] = [stored.get(c, d) for c, d in pairs]
        for i, value in enumerate(values):
            kind = type(value)
            if kind is dict:
                values[i] = _untag(value)
            elif kind is list:
                raise DecodeError(f"cell {_short(value)} is not a cell value")
        return tuple(values)

    return decode
