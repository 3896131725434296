"""The context of one RPC, passed down from routing to the call: what, how, from whom."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from aerogrid.server.identity import Caller
from aerogrid.server.web.asgi import ASGIScope
from aerogrid.server.web.methods import Method
from aerogrid.server.web.protocol import Headers, WireProtocol

__all__ = ["Metadata", "RequestContext", "current_request", "enter_request"]

_P = TypeVar("_P", bound=WireProtocol)

#: Response headers or trailers: (lower-case name, value) pairs; a name may repeat.
Metadata = list[tuple[str, str]]


@dataclass(slots=True)
class RequestContext(Generic[_P]):
    """One RPC request. `timeout` and `caller` are filled in once the body has arrived:
    a malformed header is answered only after the request has been read."""

    #: The procedure's path, `/aerogrid.v1.GridService/Subscribe`.
    procedure: str
    method: Method[Any]
    protocol: _P
    headers: Headers
    scope: ASGIScope
    #: Seconds the caller gives the call (its protocol's timeout header); None: no limit.
    timeout: float | None = None
    caller: Caller | None = None
    #: Headers and trailers the call adds to its response (set before its first message:
    #: a stream's headers go out with it). AeroGrid's own services add none.
    response_headers: Metadata = field(default_factory=list)
    response_trailers: Metadata = field(default_factory=list)

    @property
    def peer(self) -> tuple[str, int] | None:
        """The client's (host, port), as the server saw the socket; None on a Unix socket."""
        client = self.scope.get("client")
        return (str(client[0]), int(client[1])) if client else None

    @property
    def where(self) -> str:
        """The procedure and the peer, for logs."""
        peer = self.peer
        return f"{self.procedure} from {peer[0]}:{peer[1]}" if peer else self.procedure


_CURRENT: ContextVar[RequestContext[Any]] = ContextVar("aerogrid_web_request")


def current_request() -> RequestContext[Any]:
    """The request a service call runs in (inside a call served by `calls.CallRunner`)."""
    return _CURRENT.get()


def enter_request(ctx: RequestContext[Any]) -> None:
    """Make `ctx` the current request of this task (and of those it starts)."""
    _CURRENT.set(ctx)
