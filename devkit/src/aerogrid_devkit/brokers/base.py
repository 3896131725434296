"""What every broker mode shares: the interface, its status and error, the Kafka check.

Everything in `brokers` is synchronous (the TUI calls it from a worker thread), so the
check runs the runtime's one probe (`aerogrid.engine.connectivity.probe`) on a short
event loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

from aerogrid.engine.connectivity import Reachability, probe
from aerogrid.net import LOOPBACK_HOST
from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded

__all__ = [
    "CHECK_TIMEOUT",
    "DEFAULT_PORT",
    "HOST",
    "BrokerError",
    "BrokerStatus",
    "LocalBroker",
    "Reachability",
    "check_kafka",
]

#: Where the embedded and docker brokers listen: this machine only.
HOST = LOOPBACK_HOST
DEFAULT_PORT = embedded.DEFAULT_PORT
#: Seconds a reachability check may take per server (status must answer quickly).
CHECK_TIMEOUT = 3.0

_T = TypeVar("_T")


class BrokerError(Exception):
    """A broker could not be started, stopped or reached; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    """What a mode reports: whether Kafka answers, where, and a sentence for humans."""

    mode: str
    running: bool
    bootstrap: str | None
    #: e.g. "embedded broker up on 127.0.0.1:9092 (pid 123, in memory)".
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LocalBroker(Protocol):
    """One broker mode. `up` is idempotent; errors are `BrokerError` with a clear message."""

    @property
    def mode(self) -> str:
        """embedded | docker | external."""

    @property
    def uri(self) -> str:
        """What to pass to `aerogrid run --broker` / AEROGRID_BROKER (never a password)."""

    def up(self) -> BrokerStatus: ...

    def down(self, *, purge: bool = False) -> BrokerStatus:
        """Stop what `up` started; `purge` also deletes its data (docker: the volume)."""

    def status(self) -> BrokerStatus:
        """Includes health: running is True only when Kafka answers."""

    def settings(self) -> BrokerSettings:
        """What apps and tools connect with (TLS and SASL included)."""

    def app_env(self) -> dict[str, str]:
        """Environment for an app process: AEROGRID_BROKER and, for SASL, the credentials."""


def check_kafka(settings: BrokerSettings, timeout: float = CHECK_TIMEOUT) -> Reachability:
    """Connect as the clients do (TLS, SASL, ApiVersions) and ask for metadata, quickly.

    The runtime's probe, run from sync code: its cause says "cannot reach host:port:
    connection refused", or explains a refused TLS or SASL handshake.
    """
    return _run_sync(lambda: probe(settings, timeout))


def _run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to the end from sync code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
