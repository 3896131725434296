"""Who calls: the `authorization` header, and whether the peer is this machine.

A browser page from elsewhere calling us on loopback gets no loopback privileges (e.g.
anonymous access): any web site the user visits could make that call. Its origin must
be listed or itself local (`CorsPolicy.trusts`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aerogrid.server.identity import Caller
from aerogrid.server.web.asgi import ASGIScope
from aerogrid.server.web.cors import CorsPolicy
from aerogrid.server.web.protocol import Headers

__all__ = ["CallerAuthenticator", "PeerAuthentication"]


class CallerAuthenticator(Protocol):
    """What the transport needs from `aerogrid.server.auth.Authenticator`."""

    async def authenticate(self, authorization: str | None, *, peer_is_loopback: bool) -> Caller:
        """The caller, or raises a `ServiceError` (unauthenticated / permission_denied)."""
        ...


class PeerAuthentication:
    """Authenticates a request from its headers and its peer's address."""

    def __init__(
        self,
        authenticator: CallerAuthenticator,
        is_loopback: Callable[[str], bool],
        cors: CorsPolicy,
    ) -> None:
        self._authenticator = authenticator
        self._is_loopback = is_loopback
        self._cors = cors

    async def caller(self, scope: ASGIScope, headers: Headers) -> Caller:
        """The caller, or the `ServiceError` refusing it."""
        client = scope.get("client")
        host = client[0] if client else None
        loopback = host is not None and self._is_loopback(str(host))
        origin = headers.get("origin")
        if loopback and origin is not None and not self._cors.trusts(origin):
            loopback = False
        return await self._authenticator.authenticate(
            headers.get("authorization"), peer_is_loopback=loopback
        )
