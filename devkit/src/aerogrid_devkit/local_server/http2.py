"""What the front reads of an HTTP/2 connection: its first request's content type.

Native gRPC and Connect (or gRPC-Web) can both come as HTTP/2 with prior knowledge
(h2c) or as `h2` in TLS, so the preface alone does not tell which server a connection
is for: the content type of its first request does (`application/grpc[+codec]` is
native gRPC; `application/connect+proto`, `application/proto`, `application/json`,
`application/grpc-web…` and anything else are the browser protocols). A connection is
routed by its first request: HTTP/2 clients do not mix protocols on one connection in
practice (grpc-go, grpcurl, grpcio, connect-es, connect-go, .NET's `GrpcChannel` each
speak one).

The request is decoded by `h2` (hypercorn's HTTP/2 library: frames, padding,
CONTINUATION and HPACK done right), fed the bytes read so far; nothing is answered
from it. Native gRPC clients (grpc-go, grpcio) send their first request only after the
server's SETTINGS, so the front sends one of its own first (`SERVER_PREFACE`: empty,
i.e. every default, which the real server's SETTINGS then amend), and takes the
client's acknowledgement of it out of the stream (`DropFirstSettingsAck`) so the server
behind sees a connection exactly as if it had been first.
"""

from __future__ import annotations

from typing import Final

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived
from h2.exceptions import ProtocolError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import Frame, SettingsFrame

__all__ = [
    "HTTP2_PREFACE",
    "SERVER_PREFACE",
    "DropFirstSettingsAck",
    "first_request_is_grpc",
    "is_grpc_content_type",
]

#: What every HTTP/2 client sends first (RFC 9113 §3.4).
HTTP2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: The front's own SETTINGS frame (no settings: the defaults), sent once it saw the preface.
SERVER_PREFACE: Final = SettingsFrame(0).serialize()
_FRAME_HEADER: Final = 9


def is_grpc_content_type(value: bytes) -> bool:
    """Native gRPC's content type: application/grpc, or application/grpc+CODEC (not -web)."""
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/grpc" or media.startswith(b"application/grpc+")


def first_request_is_grpc(head: bytes) -> bool | None:
    """Whether the first request on an HTTP/2 connection that began with `head` is native gRPC.

    `head` starts with the client preface. None: no whole request head in it yet.
    Raises ValueError for bytes that are not HTTP/2 (h2's protocol errors).
    """
    connection = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    at, end = 0, len(HTTP2_PREFACE)
    # Whole frames one at a time, so that what follows the request (a frame h2 refuses,
    # say) cannot change the answer once the request is in: the same head, the same route.
    while end <= len(head):
        try:
            events = connection.receive_data(head[at:end])
        except ProtocolError as exc:
            raise ValueError(f"not HTTP/2: {exc}") from None
        for event in events:
            if isinstance(event, RequestReceived):
                headers = dict(event.headers or [])
                return is_grpc_content_type(bytes(headers.get(b"content-type", b"")))
        if end + _FRAME_HEADER > len(head):
            break
        at, end = end, end + _FRAME_HEADER + int.from_bytes(head[end : end + 3], "big")
    return None


class DropFirstSettingsAck:
    """Passes a client's bytes on, less its first SETTINGS acknowledgement (of `SERVER_PREFACE`).

    The client acknowledges SETTINGS in the order it received them, and the front's came
    before any of the server's, so its first acknowledgement is the front's. Frame
    headers are read (hyperframe) only until that one is gone; then bytes pass as they are.
    """

    def __init__(self) -> None:
        self.done = False
        self._preface = len(HTTP2_PREFACE)
        self._payload = 0
        self._partial = b""

    def __call__(self, data: bytes) -> bytes:
        if self.done:
            return data
        data, self._partial = self._partial + data, b""
        passed = bytearray()
        at = min(self._preface, len(data))
        passed += data[:at]
        self._preface -= at
        while at < len(data):
            if self._payload:
                step = min(self._payload, len(data) - at)
                passed += data[at : at + step]
                self._payload -= step
                at += step
                continue
            if len(data) - at < _FRAME_HEADER:
                self._partial = data[at:]
                break
            header = data[at : at + _FRAME_HEADER]
            try:
                frame, length = Frame.parse_frame_header(memoryview(header))
            except HyperframeError:
                self.done = True  # not HTTP/2 after all: the server says so, not the front
                passed += data[at:]
                break
            at += _FRAME_HEADER
            if isinstance(frame, SettingsFrame) and "ACK" in frame.flags:
                self.done = True
                passed += data[at:]
                break
            passed += header
            self._payload = length
        return bytes(passed)
