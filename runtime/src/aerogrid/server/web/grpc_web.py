"""gRPC-Web (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md), binary and text.

The request is one envelope (`grpc-encoding`), the response data frames then a trailers
frame (flag 0x80) with the call's trailers, `grpc-status`, `grpc-message` and
`grpc-status-details-bin`, under HTTP 200; `grpc-timeout`
is honoured. The text variant (`application/grpc-web-text`) is the same, base64-encoded:
the request whole, each response frame on its own (padded), as text clients expect.
Unary methods are served as one-message streams.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any, Final

from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.web.envelope import FLAG_TRAILERS, envelope, single_message
from aerogrid.server.web.error_details import GRPC_STATUS_DETAILS, grpc_status_details
from aerogrid.server.web.methods import Method
from aerogrid.server.web.protocol import EnvelopedProtocol, Headers
from aerogrid.server.web.protocol_error import ProtocolError
from aerogrid.server.web.serialization import Serialization

__all__ = ["GrpcWeb", "GrpcWebText"]

_TIMEOUT: Final = re.compile(r"([0-9]{1,8})([HMSmun])")
_TIMEOUT_UNIT: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _percent_encode(text: str) -> str:
    """grpc-message encoding: printable ASCII except '%' as is, everything else %XX."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text.encode()
    )


class GrpcWeb(EnvelopedProtocol):
    """gRPC-Web binary: `application/grpc-web[+proto]` or `application/grpc-web+json`."""

    _kind = "grpc-web"

    def __init__(self, serialization: Serialization) -> None:
        super().__init__(serialization)
        self.content_type = f"application/{self._kind}+{serialization.name}"

    def serves(self, method: Method[Any]) -> bool:
        return True

    def timeout(self, headers: Headers) -> float | None:
        raw = headers.get("grpc-timeout")
        if raw is None:
            return None
        match = _TIMEOUT.fullmatch(raw.strip())
        if match is None:
            raise ProtocolError(Code.INVALID_ARGUMENT, f"malformed grpc-timeout {raw!r}")
        return int(match.group(1)) * _TIMEOUT_UNIT[match.group(2)]

    def request_message(self, body: bytes, headers: Headers, limit: int) -> bytes:
        return single_message(body, headers.get("grpc-encoding"), limit)

    def _frame(self, frame: bytes) -> bytes:
        return frame

    def message(self, payload: bytes) -> bytes:
        return self._frame(envelope(0, payload))

    def end(self, error: ServiceError | None, trailers: Sequence[tuple[str, str]] = ()) -> bytes:
        lines = [f"{name}:{value}\r\n" for name, value in trailers]
        if error is None:
            lines.append("grpc-status:0\r\n")
        else:
            message = _percent_encode(error.message)
            lines.append(f"grpc-status:{error.code.grpc_number}\r\ngrpc-message:{message}\r\n")
            details = grpc_status_details(error)
            if details is not None:
                lines.append(f"{GRPC_STATUS_DETAILS}:{details}\r\n")
        return self._frame(envelope(FLAG_TRAILERS, "".join(lines).encode("latin-1")))


class GrpcWebText(GrpcWeb):
    """gRPC-Web text: `application/grpc-web-text[+proto|+json]`, base64 both ways."""

    _kind = "grpc-web-text"

    def request_message(self, body: bytes, headers: Headers, limit: int) -> bytes:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(
                Code.INVALID_ARGUMENT, "body is not valid base64", refused="malformed"
            ) from None
        return super().request_message(raw, headers, limit)

    def _frame(self, frame: bytes) -> bytes:
        return base64.b64encode(frame)
