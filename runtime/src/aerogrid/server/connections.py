"""What a connection may cost: the limits of every port of a grid service, in one place.

Native gRPC, the HTTP port (Connect, gRPC-Web, probes) and the devkit's one port in
front of them apply these, so a silent, slow, half-open or malformed connection holds a
socket, a task or memory for seconds, not forever:

* a new connection shows a complete request head (HTTP/1.x), or the HTTP/2 preface and
  SETTINGS (gRPC), within HEADER_TIMEOUT;
* a call's request message is whole within REQUEST_TIMEOUT, or the call ends with
  DEADLINE_EXCEEDED;
* a connection with no call in progress is closed after IDLE_TIMEOUT (the HTTP port's
  HTTP/1.1 and HTTP/2 connections: after HEADER_TIMEOUT, see `http_server`);
* a subscriber whose send has been waiting STALL_SECONDS (it is not reading) while the
  replay window moved past its position is dropped with RESOURCE_EXHAUSTED (`SendWatch`):
  it could be sent neither the deltas it missed nor a snapshot (a hop relaying another
  server's stream waits RELAY_STALL_SECONDS instead);
* bytes waiting for a peer that takes none of them for SEND_TIMEOUT get its connection
  cut (the devkit's front), and after a flood of connections their memory is given
  back (`FloodRelease`).

A refused request (malformed, incomplete, too slow) costs a counter and at most one log
line per reason every LOG_INTERVAL seconds (`refused`), never a traceback.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from aerogrid import metrics
from aerogrid.server.errors import Code, ServiceError

__all__ = [
    "GRPC_SERVER_OPTIONS",
    "HEADER_TIMEOUT",
    "IDLE_TIMEOUT",
    "RELAY_STALL_SECONDS",
    "REQUEST_TIMEOUT",
    "SEND_TIMEOUT",
    "STALL_SECONDS",
    "FloodRelease",
    "SendWatch",
    "refused",
    "release_memory",
]

log = logging.getLogger("aerogrid.server.connections")

#: Seconds a new connection has to send its request head (or HTTP/2 preface and SETTINGS).
HEADER_TIMEOUT: Final = 10.0
#: Seconds a call has, once its headers arrived, to send its whole request message.
REQUEST_TIMEOUT: Final = 10.0
#: Seconds a gRPC connection may stay open with no call in progress.
IDLE_TIMEOUT: Final = 300.0
#: Seconds a send to a subscriber may wait before, if it fell behind the window, it is dropped.
STALL_SECONDS: Final = 5.0
#: The same for a hop relaying another server's stream (the devkit's gateway): it cannot
#: see that server's window, so a send waiting this long is taken to be behind it.
RELAY_STALL_SECONDS: Final = 30.0
#: Seconds bytes may wait for a peer that takes none of them before its connection is cut.
SEND_TIMEOUT: Final = 60.0
#: At most one log line per reason this often; the next one says how many were not logged.
LOG_INTERVAL: Final = 10.0

#: grpc.aio server options enforcing the above on the gRPC port (the request deadline is
#: the handlers' own: see grpc_server.py).
GRPC_SERVER_OPTIONS: Final[list[tuple[str, int]]] = [
    ("grpc.so_reuseport", 0),
    # Also bounds the wait for the client's HTTP/2 preface and SETTINGS.
    ("grpc.server_handshake_timeout_ms", int(HEADER_TIMEOUT * 1000)),
    ("grpc.max_connection_idle_ms", int(IDLE_TIMEOUT * 1000)),
]

_last_logged: dict[str, float] = {}
_unlogged: dict[str, int] = {}


def refused(transport: str, reason: str, detail: str) -> None:
    """Count a refused request, and log it unless this reason was logged in the last LOG_INTERVAL.

    `reason` is a short, fixed label (it becomes a metric label); `detail` says what was
    wrong with this request and who sent it.
    """
    metrics.REQUESTS_REFUSED.labels(transport, reason).inc()
    key = f"{transport}/{reason}"
    now = time.monotonic()
    last = _last_logged.get(key)
    if last is not None and now - last < LOG_INTERVAL:
        _unlogged[key] = _unlogged.get(key, 0) + 1
        return
    _last_logged[key] = now
    more = _unlogged.pop(key, 0)
    since = f" (and {more} more since the last report)" if more else ""
    log.warning("refused a %s request (%s): %s%s", transport, reason, detail, since)


def release_memory() -> None:
    """Give the memory of many closed connections back to the system (after a flood).

    asyncio's TLS connections end in reference cycles (each holding a 256 KiB buffer)
    that only the cycle collector frees, and glibc keeps freed memory for reuse unless
    trimmed: without both, RSS stays at its peak after a flood of connections.
    """
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


class FloodRelease:
    """Calls `release_memory()` when a flood is over: many connections closed, few still open.

    A port calls `closed()` as each connection ends; the collection costs milliseconds
    once per `every` closed connections, not per connection.
    """

    def __init__(self, every: int = 256) -> None:
        self.every = every
        self._closed = 0

    def closed(self, still_open: int) -> None:
        self._closed += 1
        if self._closed >= self.every and still_open <= self.every // 4:
            self._closed = 0
            release_memory()


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_libc = _glibc()


class SendWatch:
    """Watches the sends of one subscription; drops it when it stopped reading and fell behind.

    The transport wraps each send in `sending()`; once a second the watch checks whether
    a send has waited STALL_SECONDS and `fell_behind()` says the replay window no longer
    reaches the subscription's position. Then `drop()` is called (the transport cancels
    the send and ends the call) and `error` says why. Flow control decides "not reading":
    a send waits only when the peer's window or the socket buffer is full.
    """

    def __init__(
        self,
        fell_behind: Callable[[], bool],
        drop: Callable[[], object],
        *,
        stall_seconds: float = STALL_SECONDS,
        check_every: float = 1.0,
    ) -> None:
        self._fell_behind = fell_behind
        self._drop = drop
        self._stall = stall_seconds
        self._every = check_every
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(check_every, self._check)
        #: Set once the subscription was dropped: the status to end it with.
        self.error: ServiceError | None = None

    @contextmanager
    def sending(self) -> Iterator[None]:
        self._since = self._loop.time()
        try:
            yield
        finally:
            self._since = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        since = self._since
        if since is not None and self._loop.time() - since >= self._stall and self._fell_behind():
            self._timer = None
            self.error = ServiceError(
                Code.RESOURCE_EXHAUSTED,
                f"this subscriber read nothing for {self._stall:g} s and fell behind the "
                "updates the server keeps; subscribe again to resume from a fresh snapshot",
            )
            metrics.SUBSCRIBERS_DROPPED.inc()
            self._drop()
            return
        self._timer = self._loop.call_later(self._every, self._check)
