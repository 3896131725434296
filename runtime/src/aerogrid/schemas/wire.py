"""The Confluent wire format: a zero magic byte, a 4-byte big-endian schema id, the payload.

Every registry format (Avro, Protobuf, JSON Schema) frames its payload this way; what
follows the header (Protobuf's message indexes, then the message) is the format's own.
The record size bound is checked here, once for every registry format.
"""

from __future__ import annotations

import struct

from aerogrid.errors import DecodeError
from aerogrid.limits import MAX_RECORD_BYTES

MAGIC_BYTE = 0
HEADER_BYTES = 5
_HEADER = struct.Struct(">BI")


def frame(schema_id: int, payload: bytes) -> bytes:
    """The record bytes for `payload` written with the schema `schema_id`."""
    if not 0 <= schema_id <= 0xFFFFFFFF:
        raise ValueError(f"schema id {schema_id} does not fit the 4-byte header")
    return _HEADER.pack(MAGIC_BYTE, schema_id) + payload


def parse_frame(data: bytes | None) -> tuple[int, memoryview]:
    """(schema id, payload) of a framed record, or a DecodeError saying what is wrong.

    The payload is a memoryview: no copy of the record.
    """
    if data is None:
        raise DecodeError("the record has no value (a tombstone), so no schema id")
    if len(data) > MAX_RECORD_BYTES:
        raise DecodeError(f"record {len(data)} bytes > limit {MAX_RECORD_BYTES} bytes")
    if len(data) < HEADER_BYTES:
        raise DecodeError(
            f"record shorter than the {HEADER_BYTES}-byte header "
            f"({len(data)} bytes): not the Confluent wire format"
        )
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise DecodeError(
            f"magic byte 0x{magic:02x} is not 0: not the Confluent wire format "
            "(was it written without a schema registry serializer?)"
        )
    return schema_id, memoryview(data)[HEADER_BYTES:]


def framed_schema_id(data: bytes | None) -> int | None:
    """The schema id of a record `parse_frame` accepts, else None (it then says why).

    The decode hot path's check: one unpack, no payload view (the codec reads past the
    header itself).
    """
    if data is None or not HEADER_BYTES <= len(data) <= MAX_RECORD_BYTES:
        return None
    magic, schema_id = _HEADER.unpack_from(data)
    return None if magic != MAGIC_BYTE else schema_id


def peek_schema_id(data: bytes | None) -> int | None:
    """The schema id of a well-framed record, else None (decode then says what is wrong).

    Cheap: what a codec's `schema_id_to_load` asks of every record.
    """
    if data is None or len(data) < HEADER_BYTES or data[0] != MAGIC_BYTE:
        return None
    schema_id: int = _HEADER.unpack_from(data)[1]
    return schema_id
