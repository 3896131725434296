"""Request compression: identity and gzip (what Connect and gRPC-Web clients send).

Responses are not compressed, which every client must accept.
"""

from __future__ import annotations

import zlib
from typing import Final

from aerogrid.server.errors import Code
from aerogrid.server.web.protocol_error import ProtocolError

__all__ = ["IDENTITY", "check_supported", "decompress", "is_identity"]

IDENTITY: Final = "identity"


def is_identity(encoding: str | None) -> bool:
    """Whether a content-encoding header value means "not compressed"."""
    return encoding in (None, "", IDENTITY)


def check_supported(encoding: str | None) -> None:
    """Refuse (UNIMPLEMENTED) an encoding we cannot inflate."""
    if not is_identity(encoding) and encoding != "gzip":
        raise ProtocolError(
            Code.UNIMPLEMENTED,
            f"unsupported compression {encoding!r}; supported: gzip, identity",
        )


def decompress(data: bytes, encoding: str | None, limit: int) -> bytes:
    """`data` as sent, uncompressed; at most `limit` bytes once inflated."""
    if is_identity(encoding):
        return data
    check_supported(encoding)
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ProtocolError(
            Code.INVALID_ARGUMENT, f"bad gzip data: {exc}", refused="malformed"
        ) from None
    if len(out) > limit:
        raise ProtocolError(
            Code.RESOURCE_EXHAUSTED, f"request message exceeds {limit} bytes", refused="too_large"
        )
    return out
