"""The grid and catalog services of one runtime process, over its hub.

Transport-agnostic (see service.py): gRPC and Connect both call these methods with an
authenticated caller. Every lookup checks the caller's tenants first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from google.protobuf.timestamp_pb2 import Timestamp

from aerogrid import metrics
from aerogrid.server.connections import STALL_SECONDS
from aerogrid.server.encoding import row_message
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.hub import Changes, GridChannel, GridHub, build_delta
from aerogrid.server.identity import Caller
from aerogrid.server.service import PacedStream
from aerogrid.v1 import catalog_pb2, grid_pb2

SNAPSHOT_CHUNK_ROWS = 5000
DEFAULT_HEARTBEAT_SECONDS = 5.0


@dataclass
class HostedApp:
    """An app this process serves: its name, tenant and live status."""

    name: str
    tenant: str
    status: catalog_pb2.AppStatus.ValueType = catalog_pb2.APP_STATUS_STARTING
    message: str = ""
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set_status(self, status: catalog_pb2.AppStatus.ValueType, message: str = "") -> None:
        self.status = status
        self.message = message
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


@dataclass
class _Position:
    """Where a subscription is: its grid's channel and the seq it was last sent up to."""

    channel: GridChannel | None = None
    cursor: int | None = None

    def fell_behind(self) -> bool:
        """Whether the window no longer reaches the seq the client was last sent.

        The client can then only be sent a fresh snapshot: a transport that cannot send
        (the client stopped reading) drops it (`connections.SendWatch`).
        """
        channel, cursor = self.channel, self.cursor
        return channel is not None and cursor is not None and not channel.reaches(cursor)


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
        """The subscription's messages, and whether its client fell behind (see `Paced`)."""
        position = _Position()
        updates = self._updates(request, caller, position)
        return PacedStream(updates, position.fell_behind, STALL_SECONDS)

    async def _updates(
        self, request: grid_pb2.SubscribeRequest, caller: Caller, position: _Position
    ) -> AsyncGenerator[bytes, None]:
        channel = self._channel(request.app, request.grid, caller)
        position.channel = channel
        grid = channel.grid
        if request.columns:
            unknown = [c for c in request.columns if c not in grid.columns]
            if unknown:
                raise ServiceError(
                    Code.INVALID_ARGUMENT,
                    f"grid {request.app}.{request.grid} has no column(s) {', '.join(unknown)} "
                    f"(columns: {', '.join(grid.columns)})",
                )
            columns = list(request.columns)
            indices: list[int] | None = [grid.columns.index(c) for c in columns]
        else:
            columns = list(grid.columns)
            indices = None
        keys = frozenset(request.keys) if request.keys else None
        shared = indices is None and keys is None
        min_interval = request.min_interval_ms / 1000.0
        heartbeat = (
            max(0.1, request.heartbeat_interval_ms / 1000.0)
            if request.heartbeat_interval_ms
            else DEFAULT_HEARTBEAT_SECONDS
        )
        labels = (channel.app, grid.name)
        channel.subscribers += 1
        metrics.SUBSCRIBERS.labels(*labels).inc()
        sent = metrics.UPDATES_SENT.labels(*labels)
        conflated_counter = metrics.ROWS_CONFLATED.labels(*labels)
        #: The staleness this subscriber was last told (the Schema tells it first).
        told = channel.stale
        try:
            yield grid_pb2.SubscribeResponse(
                schema=grid_pb2.Schema(
                    app=channel.app,
                    grid=grid.name,
                    columns=[grid_pb2.Column(name=c) for c in columns],
                    epoch=channel.epoch,
                    stale=_stale(told),
                )
            ).SerializeToString()
            await channel.wait_ready()
            cursor: int
            resumed = (
                request.resume_epoch == channel.epoch
                and channel.entries_after(request.resume_seq) is not None
            )
            if resumed:
                cursor = position.cursor = request.resume_seq
            else:
                cursor, chunks = await self._snapshot(channel, indices, keys)
                position.cursor = cursor
                for chunk in chunks:
                    sent.inc()
                    yield chunk
            last_sent = time.monotonic()
            while True:
                if channel.stale != told:
                    # Degraded, or healthy again: say so now, not at the next heartbeat.
                    told = channel.stale
                    yield _heartbeat(cursor, told)
                if not await channel.wait_after(cursor, heartbeat):
                    yield _heartbeat(cursor, told)
                    continue
                if channel.stale != told:
                    continue
                if min_interval:
                    wait = last_sent + min_interval - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                entries = channel.entries_after(cursor)
                if entries is None:
                    # Fell behind the window: start over from a fresh snapshot.
                    cursor, chunks = await self._snapshot(channel, indices, keys)
                    position.cursor = cursor
                    for chunk in chunks:
                        sent.inc()
                        yield chunk
                    last_sent = time.monotonic()
                    continue
                if not entries:
                    continue
                cursor_before, cursor = cursor, entries[-1].seq
                position.cursor = cursor
                if len(entries) == 1 and shared:
                    message = channel.shared_delta(entries[0])
                elif shared:
                    message, conflated = channel.shared_merge(cursor_before, entries)
                    if conflated:
                        conflated_counter.inc(conflated)
                else:
                    merged: Changes = {}
                    total = 0
                    for entry in entries:
                        merged.update(entry.changes)
                        total += len(entry.changes)
                    conflated = total - len(merged)
                    if conflated:
                        conflated_counter.inc(conflated)
                    message = build_delta(cursor, merged, indices, keys, conflated)
                sent.inc()
                last_sent = time.monotonic()
                yield message
        finally:
            channel.subscribers -= 1
            metrics.SUBSCRIBERS.labels(*labels).dec()

    async def _snapshot(
        self, channel: GridChannel, indices: list[int] | None, keys: frozenset[str] | None
    ) -> tuple[int, list[bytes]]:
        """The grid's seq and snapshot chunks, taken between commits (never mid-cycle).

        A full-column snapshot from the channel's image needs no lock: the image holds
        only published (committed) rows, so it is served at once even while a batch waits
        minutes for a broker to commit it.
        """
        if indices is None and keys is None and channel.has_image:
            return channel.seq, _snapshot(channel, indices, keys)
        async with self.hub.state_lock:
            if indices is None and keys is None:
                await channel.build_image()
            return channel.seq, _snapshot(channel, indices, keys)

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
        waits = {a.name: a._changed for a in visible}
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
                waits[app.name] = app._changed
            yield catalog_pb2.WatchAppsResponse(
                apps=[self._app_info(a) for a in changed]
            ).SerializeToString()


def _snapshot(
    channel: GridChannel, indices: list[int] | None, keys: frozenset[str] | None
) -> list[bytes]:
    """The grid at `channel.seq` in chunks, all built before any is sent (so consistent).

    Full-column subscribers share the channel's snapshot; filtered ones get their own.
    """
    if indices is None and keys is None:
        return channel.shared_snapshot(SNAPSHOT_CHUNK_ROWS)
    seq = channel.seq
    rows = [
        row_message(key, row, indices)
        for key, row in channel.grid.rows().items()
        if keys is None or str(key) in keys
    ]
    chunks = []
    for start in range(0, max(len(rows), 1), SNAPSHOT_CHUNK_ROWS):
        part = rows[start : start + SNAPSHOT_CHUNK_ROWS]
        complete = start + SNAPSHOT_CHUNK_ROWS >= len(rows)
        chunks.append(
            grid_pb2.SubscribeResponse(
                snapshot=grid_pb2.Snapshot(seq=seq, rows=part, complete=complete)
            ).SerializeToString()
        )
    return chunks


def _stale(reason: str | None) -> grid_pb2.Stale | None:
    return None if reason is None else grid_pb2.Stale(reason=reason)


def _heartbeat(seq: int, stale: str | None) -> bytes:
    """A heartbeat at `seq`, carrying `Stale` while the app is degraded."""
    return grid_pb2.SubscribeResponse(
        heartbeat=grid_pb2.Heartbeat(seq=seq, server_time=_now(), stale=_stale(stale))
    ).SerializeToString()


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp
