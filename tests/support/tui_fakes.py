"""Fakes of what the TUI runs over (`aerogrid_devkit.tui.session`): apps frozen in place.

The supervisor records control calls instead of running anything; the broker answers
from a flag. Snapshots and pilot tests that need no real process use them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from aerogrid.settings import BrokerSettings
from aerogrid_devkit.brokers import BrokerStatus
from aerogrid_devkit.supervisor import AppProcess


class FakeSupervisor:
    """The supervisor's surface with apps frozen in place; control calls are recorded."""

    def __init__(self, apps: list[AppProcess]) -> None:
        self.apps = {app.name: app for app in apps}
        self.on_change: list[Callable[[AppProcess], None]] = []
        self.calls: list[tuple[str, str]] = []

    async def stop_app(self, name: str, timeout: float = 10.0) -> None:
        self.calls.append(("stop", name))

    def start_app(self, name: str) -> None:
        self.calls.append(("start", name))

    def restart_app(self, name: str) -> None:
        self.calls.append(("restart", name))


class FakeLoop:
    def __init__(self, apps: list[AppProcess]) -> None:
        self.supervisor = FakeSupervisor(apps)
        self.address = "127.0.0.1:50051"
        self.broker_uri = "127.0.0.1:9092"
        self.log_sinks: list[Callable[[str, str], None]] = []
        self.messages: deque[str] = deque(["local endpoint on http://localhost:50051"])

    def say(self, line: str) -> None:
        self.messages.append(line)
        for sink in self.log_sinks:
            sink("aerogrid", line)


class FakeBroker:
    mode = "embedded"
    uri = "127.0.0.1:9092"

    def __init__(self, running: bool = True) -> None:
        self.running = running

    def status(self) -> BrokerStatus:
        if self.running:
            return BrokerStatus(
                self.mode, True, self.uri, "embedded broker up on 127.0.0.1:9092 (in memory)"
            )
        return BrokerStatus(self.mode, False, None, "no embedded broker running")

    def up(self) -> BrokerStatus:
        self.running = True
        return self.status()

    def down(self) -> BrokerStatus:
        self.running = False
        return self.status()

    def settings(self) -> BrokerSettings:
        return BrokerSettings.parse(self.uri)
