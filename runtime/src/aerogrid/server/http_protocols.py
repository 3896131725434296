"""hypercorn's HTTP/1.1 and HTTP/2 protocols, with the changes `http_server` needs.

* **A response head leaves with its body's first bytes**, in one write, as Go's and most
  servers do (they buffer the head until the handler writes or returns). hypercorn writes
  the head at once and the body in a later write; under load a client whose deadline falls
  between the two sees an error status with an empty body (the Connect conformance
  suite's timeout cases caught it on two busy cores). Every response we send has a body
  or an end right after its head (web/asgi.py `Response`), so holding the head costs
  nothing.
* **HTTP/2 request data for a stream already answered is dropped.** hypercorn 0.18.0
  looks the stream of every DATA frame up without checking that it is still open, so a
  client still sending a body we answered early (an error) kills the whole connection
  with a KeyError (pgjones/hypercorn#329; fixes #312, #334 unmerged). Such data is
  dropped, its flow-control window given back.

hypercorn's `ProtocolWrapper` picks its classes by module globals of `hypercorn.protocol`;
there is no other hook, so `install()` sets them.
"""

from __future__ import annotations

import contextlib
from typing import Any

import h2.events
import h2.exceptions
import h11
import hypercorn.protocol
from hypercorn.events import RawData
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.typing import H11SendableEvent

__all__ = ["install"]


class _H11Protocol(H11Protocol):
    """HTTP/1.1: the response head waits for the first body bytes (or the end)."""

    _head: bytes = b""

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        if isinstance(event, h11.Response):
            try:
                self._head += self.connection.send(event) or b""
            except h11.LocalProtocolError:
                if self.connection.their_state != h11.ERROR:
                    raise
            return
        if not self._head:
            await super()._send_h11_event(event)
            return
        head, self._head = self._head, b""
        try:
            data = self.connection.send(event) or b""
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            data = b""
        await self.send(RawData(data=head + data))


class _H2Protocol(H2Protocol):
    """HTTP/2: a response's HEADERS frame is queued with its first DATA frame (or its end),
    not before: any flush (a PING or SETTINGS answered meanwhile) would send it alone.
    Late request data for an answered stream is dropped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Response headers by stream, until the stream's data is sent.
        self._heads: dict[int, list[tuple[bytes, bytes]]] = {}

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, Response):
            self._heads[event.stream_id] = [
                (b":status", b"%d" % event.status_code),
                *event.headers,
                *self.config.response_headers("h2"),
            ]
            return
        await super().stream_send(event)

    async def _send_data(self, stream_id: int) -> None:
        head = self._heads.pop(stream_id, None)
        if head is not None:
            # The stream or the connection may have closed meanwhile: the send finds out.
            with contextlib.suppress(KeyError, h2.exceptions.ProtocolError):
                self.connection.send_headers(stream_id, head)
        await super()._send_data(stream_id)

    async def _close_stream(self, stream_id: int) -> None:
        self._heads.pop(stream_id, None)
        await super()._close_stream(stream_id)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
                await self._flush()
            else:
                await super()._handle_events([event])


def install() -> None:
    """Make hypercorn's connections use these protocols (idempotent)."""
    hypercorn.protocol.H2Protocol = _H2Protocol  # type: ignore[attr-defined]
    hypercorn.protocol.H11Protocol = _H11Protocol  # type: ignore[attr-defined]
