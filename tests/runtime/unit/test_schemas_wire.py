"""The Confluent wire format: framing, and the DecodeError every malformed header gets."""

from __future__ import annotations

import pytest

from aerogrid.errors import DecodeError
from aerogrid.limits import MAX_RECORD_BYTES
from aerogrid.schemas.wire import frame, framed_schema_id, parse_frame, peek_schema_id


def test_frame_is_magic_byte_then_big_endian_id_then_payload() -> None:
    data = frame(0x01020304, b"payload")
    assert data == b"\x00\x01\x02\x03\x04payload"
    schema_id, payload = parse_frame(data)
    assert schema_id == 0x01020304
    assert bytes(payload) == b"payload"
    assert peek_schema_id(data) == 0x01020304


def test_an_empty_payload_is_a_frame_too() -> None:
    schema_id, payload = parse_frame(frame(7, b""))
    assert (schema_id, bytes(payload)) == (7, b"")


@pytest.mark.parametrize("schema_id", [-1, 2**32])
def test_an_id_outside_four_bytes_cannot_be_framed(schema_id: int) -> None:
    with pytest.raises(ValueError, match="4-byte"):
        frame(schema_id, b"")


def test_a_magic_byte_that_is_not_zero_is_named() -> None:
    with pytest.raises(DecodeError, match="magic byte 0x7b is not 0"):
        parse_frame(b'{"product": "a"}')
    assert peek_schema_id(b'{"product": "a"}') is None


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_a_record_shorter_than_the_header_is_named(data: bytes) -> None:
    with pytest.raises(DecodeError, match="shorter than the 5-byte header"):
        parse_frame(data)
    assert peek_schema_id(data) is None


def test_a_tombstone_has_no_schema_id() -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        parse_frame(None)
    assert peek_schema_id(None) is None


def test_a_record_over_the_size_limit_is_refused_before_parsing() -> None:
    with pytest.raises(DecodeError, match="limit"):
        parse_frame(frame(1, bytes(MAX_RECORD_BYTES)))


@pytest.mark.parametrize(
    "data",
    [
        frame(7, b"x"),
        frame(0xFFFFFFFF, b""),
        frame(1, bytes(MAX_RECORD_BYTES - 5)),
        frame(1, bytes(MAX_RECORD_BYTES - 4)),
        b'{"product": "a"}',
        b"\x00\x00\x00\x01",
        b"",
        None,
    ],
)
def test_the_hot_path_check_accepts_exactly_what_parse_frame_accepts(data: bytes | None) -> None:
    """decode's one-unpack check must not let through a frame parse_frame would refuse."""
    try:
        expected: int | None = parse_frame(data)[0]
    except DecodeError:
        expected = None
    assert framed_schema_id(data) == expected
