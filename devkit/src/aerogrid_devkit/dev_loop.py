"""The dev loop (`DevLoop`): a workspace's apps, supervised, behind the one local server.

`aerogrid dev`, `aerogrid demo` and the TUI all run this; the broker is brought up
before (it outlives the loop, so topics survive a restart of `aerogrid dev`).
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from aerogrid.net import LOOPBACK_HOST
from aerogrid_devkit import envs
from aerogrid_devkit.local_server import LocalServer
from aerogrid_devkit.supervisor import LogSink, Supervisor

#: The name the loop's own messages are logged under (next to the apps' names).
LOOP_LOG = "aerogrid"


class DevLoop:
    """Runs apps on a broker and serves them on one loopback address."""

    def __init__(
        self,
        apps: dict[str, Path],
        broker_uri: str,
        *,
        endpoint_host: str = LOOPBACK_HOST,
        endpoint_port: int = 50051,
        python_for: Callable[[Path], str] = envs.python_for,
        backoff_start: float = 0.5,
        app_env: dict[str, str] | None = None,
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        self.broker_uri = broker_uri
        #: Log sinks called with (app or LOOP_LOG, line), on the event loop.
        self.log_sinks: list[LogSink] = []
        #: The loop's own messages (endpoint up, broker changes) for the TUI's log view.
        self.messages: deque[str] = deque(maxlen=1000)
        self.supervisor = Supervisor(
            apps,
            broker_uri,
            on_log=self._fan_out,
            python_for=python_for,
            backoff_start=backoff_start,
            env=app_env,
            replicas=replicas,
        )
        self.local_server = LocalServer(self.supervisor, host=endpoint_host, port=endpoint_port)

    @property
    def address(self) -> str:
        """host:port of the local endpoint (native gRPC and the browser protocol)."""
        return self.local_server.address

    async def start(self) -> None:
        # The endpoint first: a taken port is a clear error before any app starts.
        await self.local_server.start()
        self.say(f"local endpoint on {self.local_server.url} (gRPC, Connect, gRPC-Web)")
        self.say(self.local_server.addin_status())
        await self.supervisor.start()

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self.local_server.stop()

    def say(self, line: str) -> None:
        """A message of the loop itself (not of an app)."""
        self.messages.append(line)
        self._fan_out(LOOP_LOG, line)

    def _fan_out(self, app: str, line: str) -> None:
        for sink in self.log_sinks:
            sink(app, line)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def bundled_python(folder: Path) -> str:
    """The devkit's own interpreter, for apps known to need nothing else (the demo)."""
    return sys.executable
