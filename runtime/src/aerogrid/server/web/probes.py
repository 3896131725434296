"""The routes beside the RPCs: `/healthz` (alive), `/readyz` (ready to serve) and `/metrics`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aerogrid.metrics import REGISTRY
from aerogrid.server.errors import ServiceError
from aerogrid.server.web.asgi import TEXT_PLAIN, ASGIScope, Response
from aerogrid.server.web.authentication import PeerAuthentication
from aerogrid.server.web.protocol import Headers

__all__ = ["PATHS", "Probes", "Readiness"]

log = logging.getLogger(__name__)

#: What `/readyz` reports: ready or not, optionally with a detail line.
Readiness = bool | tuple[bool, str]

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class Probes:
    """Answers GET and HEAD on `PATHS`."""

    def __init__(
        self, is_ready: Callable[[], Readiness], authentication: PeerAuthentication
    ) -> None:
        self._is_ready = is_ready
        self._authentication = authentication

    async def serve(
        self, path: str, scope: ASGIScope, headers: Headers, response: Response
    ) -> None:
        if path == "/healthz":
            await response.whole(200, TEXT_PLAIN, b"ok\n")
        elif path == "/readyz":
            ready, detail = self._ready()
            body = ("ready" if ready else "not ready") + (f": {detail}" if detail else "")
            await response.whole(200 if ready else 503, TEXT_PLAIN, (body + "\n").encode())
        else:
            await self._metrics(scope, headers, response)

    async def _metrics(self, scope: ASGIScope, headers: Headers, response: Response) -> None:
        """The metrics, for whom a grid call would admit: a valid token, or loopback.

        They name the apps and grids served here, which other tenants must not learn.
        """
        try:
            await self._authentication.caller(scope, headers)
        except ServiceError as exc:
            status = exc.code.http_status
            challenge = [("www-authenticate", "Bearer")] if status == 401 else []
            await response.whole(status, TEXT_PLAIN, f"{exc.message}\n".encode(), challenge)
            return
        await response.whole(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))

    def _ready(self) -> tuple[bool, str]:
        try:
            answer = self._is_ready()
        except Exception:
            log.exception("is_ready() failed")
            return False, "the readiness check failed"
        return answer if isinstance(answer, tuple) else (bool(answer), "")
