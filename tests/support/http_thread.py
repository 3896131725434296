"""A small HTTP server of the test bed in a thread of the test process.

The test bed's package index, its identity provider's JWKS and the registry's OIDC issuer
each serve a few fixed answers; the standard library's ThreadingHTTPServer is enough, and
this is the one place its thread is started and stopped (shutdown, close, join).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from support.lifecycle import Started

__all__ = ["HttpThread", "QuietLog"]


class HttpThread(Started):
    """`handler` served on `host` (a free port), from `start()` (or `with`) to `stop()`."""

    def __init__(self, host: str, handler: Any, name: str = "test-http") -> None:
        self.host = host
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()


class QuietLog(BaseHTTPRequestHandler):
    """Mixed into a handler: no access-log lines in the test output."""

    def log_message(self, format: str, *args: Any) -> None:
        pass
