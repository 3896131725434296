"""A grid service in the test's own process: one app, one grid, and the real listeners.

`start_listeners` serves it as `aerogrid run` does (native gRPC and HTTP on free
loopback ports, with the connection limits of `aerogrid.server.connections`); the
grid is changed directly and published as the engine does after a commit. No broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aerogrid
from aerogrid.grids import Grid
from aerogrid.server.app_service import AppService, HostedApp
from aerogrid.server.auth import Authenticator, AuthSettings
from aerogrid.server.hub import GridChannel, GridHub
from aerogrid.server.listeners import Listeners, start_listeners

APP, GRID = "prices", "quotes"


@dataclass
class GridService:
    """The running service: its grid, the grid's channel and the listeners' ports."""

    hub: GridHub
    grid: Grid
    channel: GridChannel
    listeners: Listeners

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.listeners.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.listeners.http_port}"

    def commit(self, rows: dict[str, dict[str, Any]]) -> None:
        """Change rows and publish them, as the engine does after a commit."""
        for key, row in rows.items():
            self.grid[key] = row
        self.hub.publish(APP, self.grid, self.grid.drain_changes())


@contextlib.asynccontextmanager
async def grid_service(
    auth: AuthSettings | None = None, columns: tuple[str, ...] = ("text",)
) -> AsyncIterator[GridService]:
    app = aerogrid.App(APP, broker="localhost:1")
    grid = app.Grid(GRID, columns=list(columns))
    grid.ready = True
    hub = GridHub()
    channel = hub.add_grid(APP, grid)
    endpoint = AppService(hub, [HostedApp(APP, app.tenant)])
    listeners = await start_listeners(
        endpoint,
        Authenticator(auth or AuthSettings()),
        host="127.0.0.1",
        port=0,
        http_port=0,
        is_ready=lambda: True,
    )
    try:
        yield GridService(hub, grid, channel, listeners)
    finally:
        await listeners.stop()


@contextlib.contextmanager
def grid_service_in_thread(auth: AuthSettings | None = None) -> Iterator[GridService]:
    """The same service on an event loop of its own thread, for synchronous clients."""
    loop = asyncio.new_event_loop()
    started: asyncio.Future[GridService] = loop.create_future()
    stop = asyncio.Event()

    async def run() -> None:
        try:
            async with grid_service(auth) as service:
                started.set_result(service)
                await stop.wait()
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(_wait(started), loop).result(30)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


async def _wait(future: asyncio.Future[GridService]) -> GridService:
    return await future
