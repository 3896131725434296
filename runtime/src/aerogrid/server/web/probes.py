"""The routes beside the RPCs: `/healthz` (alive), `/readyz` (ready to serve), `/metrics`,
and `/replica` (this process's role among the app's replicas, as JSON)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

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

PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/replica"})
JSON = "application/json"


class Probes:
    """Answers GET and HEAD on `PATHS`."""

    def __init__(
        self,
        is_ready: Callable[[], Readiness],
        authentication: PeerAuthentication,
        describe: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._is_ready = is_ready
        self._authentication = authentication
        self._describe = describe

    async def serve(
        self, path: str, scope: ASGIScope, headers: Headers, response: Response
    ) -> None:
        if path == "/healthz":
            await response.whole(200, TEXT_PLAIN, b"ok\n")
        elif path == "/readyz":
            ready, detail = self._ready()
            body = ("ready" if ready else "not ready") + (f": {detail}" if detail else "")
            await response.whole(200 if ready else 503, TEXT_PLAIN, (body + "\n").encode())
        elif path == "/replica" and self._describe is None:
            await response.whole(404, TEXT_PLAIN, b"not a replica\n")
        elif await self._admitted(scope, headers, response):
            if path == "/replica" and self._describe is not None:
                await response.whole(200, JSON, json.dumps(self._describe()).encode())
            else:
                await response.whole(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))

    async def _admitted(self, scope: ASGIScope, headers: Headers, response: Response) -> bool:
        """Metrics and the replica's state go to whom a grid call would admit: a valid
        token, or loopback. They name the apps and grids served here, which other tenants
        must not learn."""
        try:
            await self._authentication.caller(scope, headers)
        except ServiceError as exc:
            status = exc.code.http_status
            challenge = [("www-authenticate", "Bearer")] if status == 401 else []
            await response.whole(status, TEXT_PLAIN, f"{exc.message}\n".encode(), challenge)
            return False
        return True

    def _ready(self) -> tuple[bool, str]:
        try:
            answer = self._is_ready()
        except Exception:
            log.exception("is_ready() failed")
            return False, "the readiness check failed"
        return answer if isinstance(answer, tuple) else (bool(answer), "")
