"""What a TUI session runs over: the dev loop and the broker, as the shapes it uses.

The screens depend on these shapes, not on `DevLoop` and the broker classes themselves,
so the real loop and small fakes (for deterministic snapshots) both fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from aerogrid.settings import BrokerSettings
from aerogrid_devkit.dev_loop import LOOP_LOG
from aerogrid_devkit.supervisor import AppProcess

__all__ = [
    "LOOP_LOG",
    "BrokerLike",
    "BrokerStatusLike",
    "LoopLike",
    "SupervisorLike",
]


class SupervisorLike(Protocol):
    """`aerogrid_devkit.supervisor.Supervisor`, as far as the TUI uses it."""

    @property
    def apps(self) -> Mapping[str, AppProcess]: ...

    @property
    def on_change(self) -> list[Callable[[AppProcess], None]]: ...

    async def stop_app(self, name: str, timeout: float = 10.0) -> None: ...

    def start_app(self, name: str) -> None: ...

    def restart_app(self, name: str) -> None: ...


class LoopLike(Protocol):
    """`aerogrid_devkit.dev_loop.DevLoop`, as far as the TUI uses it."""

    @property
    def supervisor(self) -> SupervisorLike: ...

    @property
    def address(self) -> str: ...

    @property
    def broker_uri(self) -> str: ...

    @property
    def log_sinks(self) -> list[Callable[[str, str], None]]: ...

    @property
    def messages(self) -> Iterable[str]: ...

    def say(self, line: str) -> None:
        """Log a line of the loop itself (shown in the logs under `LOOP_LOG`)."""


class BrokerStatusLike(Protocol):
    """`aerogrid_devkit.brokers.BrokerStatus`: what a health check found."""

    @property
    def mode(self) -> str: ...

    @property
    def running(self) -> bool: ...

    @property
    def bootstrap(self) -> str | None: ...

    @property
    def detail(self) -> str: ...


class BrokerLike(Protocol):
    """`aerogrid_devkit.brokers.LocalBroker`: a broker the TUI can check and control.

    Every method is blocking (it may start processes or open sockets): call it from a
    thread worker.
    """

    @property
    def mode(self) -> str: ...

    @property
    def uri(self) -> str: ...

    def up(self) -> BrokerStatusLike: ...

    def down(self) -> BrokerStatusLike: ...

    def status(self) -> BrokerStatusLike: ...

    def settings(self) -> BrokerSettings: ...
