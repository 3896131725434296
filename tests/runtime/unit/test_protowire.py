"""`aerogrid.protowire.varint` writes what protobuf itself writes, for every size of value."""

from __future__ import annotations

import pytest
from google.protobuf.wrappers_pb2 import UInt64Value

from aerogrid.protowire import varint

#: Each varint length's edges (1 to 10 bytes), and values between them.
EDGES = sorted(
    {0, 1, 300, 20000, 123456789, 2**64 - 1}
    | {2**bits + d for bits in range(7, 64, 7) for d in (-1, 0)}
)


@pytest.mark.parametrize("value", EDGES)
def test_varint_is_protobufs_encoding(value: int) -> None:
    # UInt64Value is field 1, wire type varint: tag 0x08 then the value (nothing for 0).
    expected = UInt64Value(value=value).SerializeToString()
    assert b"\x08" + varint(value) == (expected or b"\x08\x00")


def test_a_negative_value_is_refused_not_written_as_garbage() -> None:
    with pytest.raises(ValueError, match="never negative"):
        varint(-1)
