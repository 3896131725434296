"""CORS for the add-in and other browser pages: which origins may call, and the preflight.

Every call is still authenticated: CORS only decides which pages' scripts may read the
answers. `allowed_origins` None lets any origin call.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Collection
from typing import Final

from aerogrid import net
from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.server.web.asgi import Response
from aerogrid.server.web.protocol import Headers

__all__ = ["CorsPolicy"]

ALLOW_HEADERS: Final = (
    "authorization, content-type, connect-protocol-version, connect-timeout-ms, "
    "connect-content-encoding, connect-accept-encoding, grpc-timeout, grpc-encoding, "
    f"grpc-accept-encoding, x-grpc-web, x-user-agent, {APP_HEADER}, {TENANT_HEADER}"
)
EXPOSE_HEADERS: Final = "grpc-status, grpc-message, grpc-status-details-bin"
METHODS: Final = "GET, POST, OPTIONS"


class CorsPolicy:
    """The origins whose pages may call us, and which are trusted as this machine's own."""

    def __init__(self, allowed_origins: Collection[str] | None) -> None:
        self._allowed = None if allowed_origins is None else frozenset(allowed_origins)

    def allows(self, origin: str) -> bool:
        return self._allowed is None or origin in self._allowed

    def trusts(self, origin: str) -> bool:
        """Whether a page from `origin` may have the local user's privileges on loopback:
        it is listed, or itself local (localhost, 127.0.0.1, [::1])."""
        if self._allowed is not None and origin in self._allowed:
            return True
        try:
            host = urllib.parse.urlsplit(origin).hostname
        except ValueError:
            return False
        return host is not None and net.is_loopback(host)

    def response_headers(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The headers every response to a page from `origin` carries (none: not allowed)."""
        if origin is None or not self.allows(origin):
            return []
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
            (b"vary", b"Origin"),
        ]

    async def preflight(self, headers: Headers, response: Response) -> None:
        """Answer an OPTIONS request."""
        out = [("allow", METHODS)]
        origin = headers.get("origin")
        if origin is not None and self.allows(origin):
            out += [
                ("access-control-allow-methods", METHODS),
                ("access-control-allow-headers", ALLOW_HEADERS),
                ("access-control-max-age", "7200"),
            ]
            # Chrome's Private Network Access asks before a public page calls loopback.
            if headers.get("access-control-request-private-network", "").lower() == "true":
                out.append(("access-control-allow-private-network", "true"))
        await response.start(204, out)
        await response.body(b"", more=False)
