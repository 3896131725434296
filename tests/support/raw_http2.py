"""Just enough HTTP/2 by hand to send what no gRPC library would: a cut request message.

A client that opens a gRPC call and then sends a message prefix promising more bytes
than follow, and waits: `open_call` sends the preface, SETTINGS, the call's HEADERS and
`data` (without END_STREAM); `wait_end` answers the server's SETTINGS and PINGs until
the call ends (trailers, RST_STREAM or GOAWAY) or the connection does.
"""

from __future__ import annotations

import asyncio
import struct

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


def _literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman (short strings)."""
    raw_name, raw_value = name.encode(), value.encode()
    assert len(raw_name) < 127 and len(raw_value) < 127
    return b"\x00" + bytes([len(raw_name)]) + raw_name + bytes([len(raw_value)]) + raw_value


def grpc_message(payload: bytes, *, promised: int | None = None) -> bytes:
    """A gRPC length-prefixed message; `promised` lies about its length."""
    length = len(payload) if promised is None else promised
    return b"\x00" + struct.pack(">I", length) + payload


async def open_call(
    host: str, port: int, path: str, data: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    block = b"".join(
        _literal(name, value)
        for name, value in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", f"{host}:{port}"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    writer.write(PREFACE + frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, block))
    if data:
        writer.write(frame(DATA, 0, 1, data))
    await writer.drain()
    return reader, writer


async def wait_end(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
    """How call 1 ended: "trailers", "rst_stream", "goaway" or "closed"."""
    while True:
        try:
            header = await reader.readexactly(9)
            length = int.from_bytes(header[:3], "big")
            kind, flags, stream = header[3], header[4], int.from_bytes(header[5:], "big")
            payload = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return "closed"
        if kind == SETTINGS and not flags & ACK:
            writer.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            writer.write(frame(PING, ACK, 0, payload))
        elif kind == HEADERS and stream == 1 and flags & END_STREAM:
            return "trailers"
        elif kind == RST_STREAM and stream == 1:
            return "rst_stream"
        elif kind == GOAWAY:
            return "goaway"
