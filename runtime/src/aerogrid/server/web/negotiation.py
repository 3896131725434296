"""Which wire protocol a request speaks: one step, from its HTTP method and content type.

Each media type names one protocol object (`connect.py`, `grpc_web.py`) with its
serialization; whether that protocol can carry the procedure asked for is the protocol's
answer (`serves`). Anything else is not an RPC.
"""

from __future__ import annotations

from typing import Final

from aerogrid.server.web.connect import ConnectStream, ConnectUnary
from aerogrid.server.web.grpc_web import GrpcWeb, GrpcWebText
from aerogrid.server.web.protocol import EnvelopedProtocol, Headers, UnaryProtocol
from aerogrid.server.web.serialization import JSON, PROTO

__all__ = ["ACCEPTED_TYPES", "Negotiated", "negotiate"]

Negotiated = UnaryProtocol | EnvelopedProtocol

_BY_MEDIA_TYPE: Final[dict[str, Negotiated]] = {
    "application/proto": ConnectUnary(PROTO),
    "application/json": ConnectUnary(JSON),
    "application/connect+proto": ConnectStream(PROTO),
    "application/connect+json": ConnectStream(JSON),
    "application/grpc-web": GrpcWeb(PROTO),
    "application/grpc-web+proto": GrpcWeb(PROTO),
    "application/grpc-web+json": GrpcWeb(JSON),
    "application/grpc-web-text": GrpcWebText(PROTO),
    "application/grpc-web-text+proto": GrpcWebText(PROTO),
    "application/grpc-web-text+json": GrpcWebText(JSON),
}

#: What an `accept-post` header lists when a content type is refused.
ACCEPTED_TYPES: Final = (
    "application/proto, application/json, application/connect+proto, "
    "application/connect+json, application/grpc-web+proto, application/grpc-web+json, "
    "application/grpc-web-text+proto"
)


def negotiate(http_method: str, headers: Headers) -> Negotiated | None:
    """The protocol of an RPC request; None when the request is no RPC (not a POST, or
    a content type no protocol speaks)."""
    if http_method != "POST":
        return None
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return _BY_MEDIA_TYPE.get(media)
