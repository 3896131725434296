"""What every web wire protocol is: its request side and its two response shapes.

A protocol object (`connect.py`, `grpc_web.py`) holds everything one wire format decides:
its content types, how the request message is framed and compressed, its timeout header,
and how a result or an error is written. `negotiation.py` picks one per request; the
call runners (`calls.py`) only ask it questions, so a fifth format is one more object.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from aerogrid.server.errors import ServiceError
from aerogrid.server.web.methods import Method
from aerogrid.server.web.serialization import Serialization

__all__ = ["EnvelopedProtocol", "Headers", "UnaryProtocol", "WireProtocol"]

#: Request headers by lower-case name (the first of repeated headers).
Headers = Mapping[str, str]


class WireProtocol(ABC):
    """The request side of one wire format, with one serialization (proto or JSON)."""

    #: The content type of responses (requests may spell theirs in aliases).
    content_type: str

    def __init__(self, serialization: Serialization) -> None:
        self.serialization = serialization

    @abstractmethod
    def serves(self, method: Method[Any]) -> bool:
        """Whether this format can carry `method` (unary or server-streaming)."""

    def check_headers(self, headers: Headers) -> None:  # noqa: B027 - optional hook
        """Refuse a request whose protocol headers are wrong (a ProtocolError)."""

    @abstractmethod
    def timeout(self, headers: Headers) -> float | None:
        """The caller's deadline in seconds from its timeout header (None: none)."""

    @abstractmethod
    def request_message(self, body: bytes, headers: Headers, limit: int) -> bytes:
        """The one request message in `body`, unframed and decompressed."""


class UnaryProtocol(WireProtocol):
    """A format whose response is one whole HTTP body (Connect unary)."""

    @abstractmethod
    def error_response(self, error: ServiceError) -> tuple[int, str, bytes]:
        """(HTTP status, content type, body) of a failed call."""

    @abstractmethod
    def trailer_headers(self, trailers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """The call's trailers, as the headers of its one response carry them."""


class EnvelopedProtocol(WireProtocol):
    """A format whose response is a stream of envelopes, ended by a status envelope."""

    @abstractmethod
    def message(self, payload: bytes) -> bytes:
        """One response message, framed."""

    @abstractmethod
    def end(self, error: ServiceError | None, trailers: Sequence[tuple[str, str]] = ()) -> bytes:
        """The last frame: success, or the error, with the call's trailers."""
