"""Protobuf's base-128 varint, written in one place.

Two layers write raw protobuf bytes: the grid server's hand-assembled messages
(`aerogrid.server.messages`, every tag length and seq of the fan-out hot path) and the
Protobuf record format's message indexes (`aerogrid.schemas.protobuf`). This module
imports nothing, so the schemas layer can share it without importing the server.
"""

from __future__ import annotations

__all__ = ["varint"]

#: The one-byte varints (0..127), built once: most lengths and counts are small, and a
#: table lookup is cheaper than building the bytes (the two-byte ones skip the loop).
_ONE_BYTE: tuple[bytes, ...] = tuple(bytes((n,)) for n in range(0x80))


def varint(value: int) -> bytes:
    """`value` (>= 0) as a protobuf varint: 7 bits a byte, low bits first."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
