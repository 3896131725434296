"""The envelope both Connect streams and gRPC-Web frame messages in: flags, length, payload.

https://connectrpc.com/docs/protocol#streaming-request and the gRPC-Web spec: a 1-byte
flags field and a 4-byte big-endian length before each message.
"""

from __future__ import annotations

import struct
from typing import Final

from aerogrid.server.errors import Code
from aerogrid.server.web.compression import check_supported, decompress, is_identity
from aerogrid.server.web.protocol_error import ProtocolError

__all__ = ["FLAG_COMPRESSED", "FLAG_END_STREAM", "FLAG_TRAILERS", "envelope", "single_message"]

FLAG_COMPRESSED: Final = 0x01
#: Connect: the last envelope, holding the end-of-stream JSON.
FLAG_END_STREAM: Final = 0x02
#: gRPC-Web: the last frame, holding the trailers.
FLAG_TRAILERS: Final = 0x80

_PREFIX: Final = struct.Struct(">BI")


def envelope(flags: int, payload: bytes) -> bytes:
    return _PREFIX.pack(flags, len(payload)) + payload


def single_message(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The one request message of a server-streaming (or gRPC-Web) call's body.

    As connect-go and the conformance suite have it: no message, or more than one, is
    UNIMPLEMENTED (the procedure takes one); an unknown encoding is UNIMPLEMENTED even for
    an uncompressed message; a compressed message without a declared encoding is INTERNAL.
    """
    if not is_identity(encoding):
        check_supported(encoding)
    if not body:
        raise ProtocolError(
            Code.UNIMPLEMENTED, "expected one request message, got none", refused="malformed"
        )
    if len(body) < _PREFIX.size:
        got = "an empty body" if not body else f"{len(body)} bytes"
        raise ProtocolError(
            Code.INVALID_ARGUMENT,
            f"truncated envelope: expected a 5-byte message prefix, got {got}",
            refused="malformed",
        )
    flags, length = _PREFIX.unpack_from(body)
    payload = body[_PREFIX.size : _PREFIX.size + length]
    if len(payload) < length:
        raise ProtocolError(
            Code.INVALID_ARGUMENT,
            f"truncated envelope: prefix promises {length} bytes, body has {len(payload)}",
            refused="malformed",
        )
    if len(body) > _PREFIX.size + length:
        raise ProtocolError(
            Code.UNIMPLEMENTED,
            "expected exactly one request message, got more",
            refused="malformed",
        )
    if flags & ~FLAG_COMPRESSED:
        raise ProtocolError(
            Code.INVALID_ARGUMENT, f"unexpected envelope flags 0x{flags:02x}", refused="malformed"
        )
    if flags & FLAG_COMPRESSED:
        if is_identity(encoding):
            raise ProtocolError(
                Code.INTERNAL,
                "compressed message but no request compression was declared",
                refused="malformed",
            )
        return decompress(payload, encoding, limit)
    return payload
