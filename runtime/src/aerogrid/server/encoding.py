"""Grid rows to wire messages (aerogrid.v1) and back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from aerogrid.grids import Cell, RowKey, RowTuple
from aerogrid.v1 import grid_pb2

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def cell_to_value(cell: Cell) -> grid_pb2.Value:
    kind = type(cell)
    if kind is int:
        assert isinstance(cell, int)
        if _INT64_MIN <= cell <= _INT64_MAX:
            return grid_pb2.Value(int_value=cell)
        return grid_pb2.Value(decimal_value=str(cell))
    if kind is float:
        return grid_pb2.Value(float_value=cell)  # type: ignore[arg-type]
    if kind is str:
        return grid_pb2.Value(string_value=cell)  # type: ignore[arg-type]
    if kind is bool:
        return grid_pb2.Value(bool_value=cell)  # type: ignore[arg-type]
    if cell is None:
        return grid_pb2.Value()
    if isinstance(cell, Decimal):
        return grid_pb2.Value(decimal_value=str(cell))
    if isinstance(cell, dt.datetime):
        stamp = Timestamp()
        stamp.FromDatetime(cell if cell.tzinfo else cell.replace(tzinfo=dt.UTC))
        return grid_pb2.Value(timestamp_value=stamp)
    if isinstance(cell, int):  # an int subclass (IntEnum and the like)
        return grid_pb2.Value(int_value=int(cell))
    if isinstance(cell, float):
        return grid_pb2.Value(float_value=float(cell))
    return grid_pb2.Value(string_value=str(cell))


def value_to_cell(value: grid_pb2.Value) -> Cell:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "decimal_value":
        return Decimal(value.decimal_value)
    if kind == "timestamp_value":
        return value.timestamp_value.ToDatetime(tzinfo=dt.UTC)
    cell: Cell = getattr(value, kind)
    return cell


def row_message(key: RowKey, row: RowTuple, indices: Sequence[int] | None) -> grid_pb2.Row:
    cells = row if indices is None else [row[i] for i in indices]
    return grid_pb2.Row(key=str(key), cells=[cell_to_value(c) for c in cells])
