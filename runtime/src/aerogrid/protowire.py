"""Protobuf's base-128 varint, written in one place.

Two layers write raw protobuf bytes: the grid server's hand-assembled messages
(`aerogrid.server.messages`, every tag length and seq of the fan-out hot path) and the
Protobuf record format's message indexes (`aerogrid.schemas.protobuf`). This module
imports nothing, so the schemas layer can share it without importing the server.
"""

from __future__ import annotations

__all__ = ["varint"]

#: The one-byte varints (0..127), built once: most lengths are small, and a lookup is
#: cheaper than building bytes. Up to four bytes (a seq or a length below 2**28) are
#: written without the loop, which costs more per byte.
_ONE_BYTE: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(0x80))


def varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf varint: 7 bits a byte, low bits first."""
    if value < 0x80:
        if value < 0:
            raise ValueError(f"a varint is never negative, got {value}")
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    low = (value & 0x7F) | 0x80
    if value < 0x200000:
        return bytes((low, ((value >> 7) & 0x7F) | 0x80, value >> 14))
    if value < 0x10000000:
        return bytes(
            (low, ((value >> 7) & 0x7F) | 0x80, ((value >> 14) & 0x7F) | 0x80, value >> 21)
        )
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
