"""The grid service's wire messages: grid rows to aerogrid.v1 `SubscribeResponse`s, and back.

This module serves the server layer (and the client, which reads cells back with
`value_to_cell`): the cell ↔ `Value` mapping, and every message a subscription sends,
the schema, snapshot chunks, deltas and heartbeats. How records look on Kafka is not
here: input topics' formats are `aerogrid.record_formats`, the changelog's is
`aerogrid.engine.changelog`.

Two ways of building a message live side by side. Every caught-up subscriber of a grid
gets the same delta, and every new one the same snapshot, so for them rows are encoded
once (as they are published) and messages are hand-assembled by joining those bytes: a
merged delta of thousands of rows is a `bytes.join`, not a protobuf build (the layout
follows grid.proto exactly; tests decode the results with the generated classes and
compare them with messages built the ordinary way). Subscribers that asked for some
columns or keys get messages built with the generated classes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal

from google.protobuf.timestamp_pb2 import Timestamp

from aerogrid.grids import Cell, RowKey, RowTuple
from aerogrid.protowire import varint
from aerogrid.v1 import grid_pb2

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

# -- cells and rows ----------------------------------------------------------------------


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
    """One row, of the columns at `indices` (None: all of them)."""
    cells = row if indices is None else [row[i] for i in indices]
    return grid_pb2.Row(key=str(key), cells=[cell_to_value(c) for c in cells])


# -- messages built with the generated classes -------------------------------------------


def schema_message(
    app: str, grid: str, columns: Iterable[str], epoch: str, stale: str | None
) -> bytes:
    """A subscription's first message: what it will receive, and whether it is stale."""
    schema = grid_pb2.Schema(
        app=app,
        grid=grid,
        columns=[grid_pb2.Column(name=c) for c in columns],
        epoch=epoch,
        stale=_stale(stale),
    )
    return grid_pb2.SubscribeResponse(schema=schema).SerializeToString()


def snapshot_messages(seq: int, rows: Sequence[grid_pb2.Row], chunk_rows: int) -> list[bytes]:
    """`rows` at `seq` as snapshot chunks of `chunk_rows`, the last one marked complete."""
    chunks = []
    for start in range(0, max(len(rows), 1), chunk_rows):
        snapshot = grid_pb2.Snapshot(
            seq=seq,
            rows=rows[start : start + chunk_rows],
            complete=start + chunk_rows >= len(rows),
        )
        chunks.append(grid_pb2.SubscribeResponse(snapshot=snapshot).SerializeToString())
    return chunks


def delta_message(
    seq: int,
    changes: dict[RowKey, RowTuple | None],
    indices: Sequence[int] | None,
    keys: frozenset[str] | None,
    conflated: int,
) -> bytes:
    """The changes (None: deleted) of the rows in `keys` (None: all), as one Delta."""
    upserts = []
    deletes = []
    for key, row in changes.items():
        if keys is not None and str(key) not in keys:
            continue
        if row is None:
            deletes.append(str(key))
        else:
            upserts.append(row_message(key, row, indices))
    delta = grid_pb2.Delta(seq=seq, upserts=upserts, deletes=deletes, conflated=conflated)
    return grid_pb2.SubscribeResponse(delta=delta).SerializeToString()


def heartbeat_message(seq: int, stale: str | None) -> bytes:
    """A heartbeat at `seq`, carrying `Stale` while the app is degraded."""
    stamp = Timestamp()
    stamp.GetCurrentTime()
    heartbeat = grid_pb2.Heartbeat(seq=seq, server_time=stamp, stale=_stale(stale))
    return grid_pb2.SubscribeResponse(heartbeat=heartbeat).SerializeToString()


def _stale(reason: str | None) -> grid_pb2.Stale | None:
    return None if reason is None else grid_pb2.Stale(reason=reason)


# -- hand-assembled messages for the fan-out hot path ------------------------------------

# Field tags (field number << 3 | wire type) of grid.proto.
_RESPONSE_SNAPSHOT = b"\x12"  # SubscribeResponse.snapshot = 2, length-delimited
_RESPONSE_DELTA = b"\x1a"  # SubscribeResponse.delta = 3, length-delimited
_SEQ = b"\x08"  # Snapshot.seq = 1 and Delta.seq = 1, varint
_ROW = b"\x12"  # Snapshot.rows = 2 and Delta.upserts = 2, length-delimited
_DELETE = b"\x1a"  # Delta.deletes = 3, length-delimited
_CONFLATED = b"\x20"  # Delta.conflated = 4, varint
_COMPLETE = b"\x18\x01"  # Snapshot.complete = 3, varint true


def _field(tag: bytes, payload: bytes) -> bytes:
    return tag + varint(len(payload)) + payload


def row_field(key: RowKey, row: RowTuple) -> bytes:
    """One row, all columns, as a tagged `rows`/`upserts` field."""
    return _field(_ROW, row_message(key, row, None).SerializeToString())


def delete_field(key: RowKey) -> bytes:
    return _field(_DELETE, str(key).encode())


def delta_response(seq: int, fields: Iterable[bytes], conflated: int = 0) -> bytes:
    """A SubscribeResponse{delta} from pre-encoded upsert and delete fields."""
    body = _SEQ + varint(seq) + b"".join(fields)
    if conflated:
        body += _CONFLATED + varint(conflated)
    return _field(_RESPONSE_DELTA, body)


def snapshot_response(seq: int, rows: Iterable[bytes], complete: bool) -> bytes:
    """A SubscribeResponse{snapshot} chunk from pre-encoded row fields."""
    body = _SEQ + varint(seq) + b"".join(rows)
    if complete:
        body += _COMPLETE
    return _field(_RESPONSE_SNAPSHOT, body)
