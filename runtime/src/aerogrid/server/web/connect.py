"""The Connect protocol (https://connectrpc.com/docs/protocol): unary and server-streaming.

Unary: the body is the message (`application/proto` or `application/json`, whole-body
`content-encoding`); an error is an HTTP status from the status table with a JSON body
`{"code", "message"}`. Server streaming (`application/connect+proto|json`): the request is
one envelope (`connect-content-encoding`); the response is envelopes ended by an
end-stream envelope (flag 0x02) holding `{}` or `{"error": {...}}` and the trailers
(`"metadata"`), under HTTP 200; a unary call's trailers are `trailer-` headers.
Both honour `connect-timeout-ms` and refuse a `connect-protocol-version` other than 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.web.compression import decompress
from aerogrid.server.web.envelope import FLAG_END_STREAM, envelope, single_message
from aerogrid.server.web.methods import Method
from aerogrid.server.web.protocol import EnvelopedProtocol, Headers, UnaryProtocol
from aerogrid.server.web.protocol_error import ProtocolError, connect_error_json
from aerogrid.server.web.serialization import Serialization

__all__ = ["ConnectStream", "ConnectUnary", "unary_error_response"]

_TIMEOUT: Final = re.compile(r"[0-9]{1,10}")


def _check_version(headers: Headers) -> None:
    version = headers.get("connect-protocol-version")
    if version is not None and version.strip() != "1":
        raise ProtocolError(
            Code.INVALID_ARGUMENT, f"connect-protocol-version must be 1, got {version!r}"
        )


def _timeout(headers: Headers) -> float | None:
    raw = headers.get("connect-timeout-ms")
    if raw is None:
        return None
    if _TIMEOUT.fullmatch(raw.strip()) is None:
        raise ProtocolError(Code.INVALID_ARGUMENT, f"malformed connect-timeout-ms {raw!r}")
    return int(raw) / 1000


def unary_error_response(error: ServiceError, status: int | None = None) -> tuple[int, str, bytes]:
    """A Connect unary error: the code's HTTP status (unless `status` overrides it), JSON body."""
    body = json.dumps(connect_error_json(error), separators=(",", ":")).encode()
    return status or error.code.http_status, "application/json", body


class ConnectUnary(UnaryProtocol):
    """Connect unary: `application/proto` or `application/json`."""

    def __init__(self, serialization: Serialization) -> None:
        super().__init__(serialization)
        self.content_type = f"application/{serialization.name}"

    def serves(self, method: Method[Any]) -> bool:
        return method.unary is not None

    def check_headers(self, headers: Headers) -> None:
        _check_version(headers)

    def timeout(self, headers: Headers) -> float | None:
        return _timeout(headers)

    def request_message(self, body: bytes, headers: Headers, limit: int) -> bytes:
        return decompress(body, headers.get("content-encoding"), limit)

    def error_response(self, error: ServiceError) -> tuple[int, str, bytes]:
        return unary_error_response(error)

    def trailer_headers(self, trailers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(f"trailer-{name}", value) for name, value in trailers]


class ConnectStream(EnvelopedProtocol):
    """Connect server streaming: `application/connect+proto` or `application/connect+json`."""

    def __init__(self, serialization: Serialization) -> None:
        super().__init__(serialization)
        self.content_type = f"application/connect+{serialization.name}"

    def serves(self, method: Method[Any]) -> bool:
        return method.stream is not None

    def check_headers(self, headers: Headers) -> None:
        _check_version(headers)

    def timeout(self, headers: Headers) -> float | None:
        return _timeout(headers)

    def request_message(self, body: bytes, headers: Headers, limit: int) -> bytes:
        return single_message(body, headers.get("connect-content-encoding"), limit)

    def message(self, payload: bytes) -> bytes:
        return envelope(0, payload)

    def end(self, error: ServiceError | None, trailers: Sequence[tuple[str, str]] = ()) -> bytes:
        body: dict[str, object] = {} if error is None else {"error": connect_error_json(error)}
        if trailers:
            metadata: dict[str, list[str]] = {}
            for name, value in trailers:
                metadata.setdefault(name, []).append(value)
            body["metadata"] = metadata
        return envelope(FLAG_END_STREAM, json.dumps(body, separators=(",", ":")).encode())
