"""The grid and catalog services of one runtime process, over its hub.

Transport-agnostic (see service.py): gRPC and Connect both call these methods with an
authenticated caller. Every lookup checks the caller's tenants first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from aerogrid import metrics
from aerogrid.server.connections import STALL_SECONDS
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.hub import GridChannel, GridHub, SubscriptionCursor
from aerogrid.server.identity import Caller
from aerogrid.server.service import PacedStream
from aerogrid.v1 import catalog_pb2, grid_pb2


@dataclass
class HostedApp:
    """An app this process serves: its name, tenant and live status."""

    name: str
    tenant: str
    status: catalog_pb2.AppStatus.ValueType = catalog_pb2.APP_STATUS_STARTING
    message: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def next_change(self) -> asyncio.Event:
        """An event set at the app's next status change."""
        return self._changed

    def set_status(self, status: catalog_pb2.AppStatus.ValueType, message: str = "") -> None:
        self.status = status
        self.message = message
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


class AppService:
    """Serves the grids and catalog of the apps hosted in this process."""

    def __init__(self, hub: GridHub, apps: list[HostedApp]) -> None:
        self.hub = hub
        self.apps = {app.name: app for app in apps}

    # -- lookups -------------------------------------------------------------------

    def _app(self, name: str, caller: Caller) -> HostedApp:
        """The app, if the caller may see it; another tenant's app is as unknown as none."""
        app = self.apps.get(name)
        if app is not None and not caller.may_see(app.tenant):
            metrics.AUTH_FAILURES.labels("cross_tenant").inc()
            app = None
        if app is None:
            raise ServiceError(Code.NOT_FOUND, f"no app named {name!r} here")
        return app

    def _channel(self, app: str, grid: str, caller: Caller) -> GridChannel:
        self._app(app, caller)
        channel = self.hub.channel(app, grid)
        if channel is None:
            raise ServiceError(Code.NOT_FOUND, f"app {app!r} has no grid named {grid!r}")
        return channel

    @staticmethod
    def _grid_info(channel: GridChannel) -> grid_pb2.GridInfo:
        return grid_pb2.GridInfo(
            app=channel.app,
            name=channel.grid.name,
            columns=[grid_pb2.Column(name=c) for c in channel.grid.columns],
            rows=len(channel.grid),
            ready=channel.ready,
            seq=channel.seq,
        )

    def _app_info(self, app: HostedApp) -> catalog_pb2.AppInfo:
        return catalog_pb2.AppInfo(
            name=app.name,
            tenant=app.tenant,
            status=app.status,
            grids=[self._grid_info(c) for c in self.hub.channels(app.name)],
            message=app.message,
        )

    # -- GridService -----------------------------------------------------------------

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, caller: Caller
    ) -> grid_pb2.ListGridsResponse:
        names = [request.app] if request.app else list(self.apps)
        infos: list[grid_pb2.GridInfo] = []
        for name in names:
            if not request.app and not caller.may_see(self.apps[name].tenant):
                continue
            self._app(name, caller)
            infos.extend(self._grid_info(c) for c in self.hub.channels(name))
        return grid_pb2.ListGridsResponse(grids=infos)

    def subscribe(self, request: grid_pb2.SubscribeRequest, caller: Caller) -> PacedStream:
        """Authorize, open a cursor on the grid, send what it yields.

        Errors (an unknown grid or column) surface on the first message, as for any
        stream; the stream says when its client fell behind (see `Paced`).
        """
        cursor: SubscriptionCursor | None = None

        async def send() -> AsyncGenerator[bytes, None]:
            nonlocal cursor
            channel = self._channel(request.app, request.grid, caller)
            cursor = self.hub.open_cursor(channel, request)
            async with contextlib.aclosing(cursor.messages()) as messages:
                async for message in messages:
                    yield message

        def fell_behind() -> bool:
            return cursor is not None and cursor.fell_behind()

        return PacedStream(send(), fell_behind, STALL_SECONDS)

    # -- CatalogService ----------------------------------------------------------------

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, caller: Caller
    ) -> catalog_pb2.ListAppsResponse:
        return catalog_pb2.ListAppsResponse(
            apps=[self._app_info(a) for a in self.apps.values() if caller.may_see(a.tenant)]
        )

    async def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        visible = [a for a in self.apps.values() if caller.may_see(a.tenant)]
        waits = {a.name: a.next_change for a in visible}
        yield catalog_pb2.WatchAppsResponse(
            apps=[self._app_info(a) for a in visible], initial=True
        ).SerializeToString()
        while True:
            if not waits:
                await asyncio.Event().wait()
            pending = {asyncio.ensure_future(e.wait()): name for name, e in waits.items()}
            try:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for future in pending:
                    future.cancel()
            changed = [self.apps[pending[f]] for f in done]
            for app in changed:
                waits[app.name] = app.next_change
            yield catalog_pb2.WatchAppsResponse(
                apps=[self._app_info(a) for a in changed]
            ).SerializeToString()
