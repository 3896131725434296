"""Hand-assembled aerogrid.v1 messages for the fan-out hot path.

Every caught-up subscriber of a grid gets the same delta, and every new one the same
snapshot, so rows are encoded once (as they are published) and messages are built by
joining those bytes: a merged delta of thousands of rows is a `bytes.join`, not a
protobuf build. The layout follows grid.proto exactly; tests decode the results with
the generated classes and compare them with messages built the ordinary way.
"""

from __future__ import annotations

from collections.abc import Iterable

from aerogrid.grids import RowKey, RowTuple
from aerogrid.server.encoding import row_message

# Field tags (field number << 3 | wire type) of grid.proto.
_RESPONSE_SNAPSHOT = b"\x12"  # SubscribeResponse.snapshot = 2, length-delimited
_RESPONSE_DELTA = b"\x1a"  # SubscribeResponse.delta = 3, length-delimited
_SEQ = b"\x08"  # Snapshot.seq = 1 and Delta.seq = 1, varint
_ROW = b"\x12"  # Snapshot.rows = 2 and Delta.upserts = 2, length-delimited
_DELETE = b"\x1a"  # Delta.deletes = 3, length-delimited
_CONFLATED = b"\x20"  # Delta.conflated = 4, varint
_COMPLETE = b"\x18\x01"  # Snapshot.complete = 3, varint true


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


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
