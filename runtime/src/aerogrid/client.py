"""`GridClient`: read grids from any AeroGrid endpoint over native gRPC.

    async with GridClient("localhost:50051") as client:
        print(await client.snapshot("ordersapp", "product_sum"))
        async for update in client.subscribe("ordersapp", "product_sum"):
            ...

`subscribe` reconnects on its own after a transport failure and resumes from the last
sequence it applied, so an update stream survives a server restart or a network blip;
and after the server dropped it for not reading (RESOURCE_EXHAUSTED mid-stream), from
a fresh snapshot.

Several targets (the replicas of an app) are spread over and failed over between:

    GridClient("shop-0:50051,shop-1:50051")   # or a list, or a name with several addresses

(`aerogrid.client_targets`). Replicas agree on (epoch, seq), so a stream that moves to
another replica resumes with the deltas it missed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

import grpc
from grpc import aio

from aerogrid.backoff import Backoff
from aerogrid.client_results import (
    AppSummary,
    ClientRow,
    GridClientError,
    GridSummary,
    GridUpdate,
    ResumeKind,
    grid_summary,
    rows_of,
    stale_reason,
)
from aerogrid.client_targets import (
    Resolver,
    RetryPacing,
    TargetAddress,
    Targets,
    parse_targets,
    resolve_host,
)
from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.server.errors import Code
from aerogrid.v1 import catalog_pb2, catalog_pb2_grpc, grid_pb2, grid_pb2_grpc

__all__ = [
    "AppSummary",
    "ClientRow",
    "GridClient",
    "GridClientError",
    "GridSummary",
    "GridUpdate",
    "ResumeKind",
]

log = logging.getLogger("aerogrid.client")

_T = TypeVar("_T")


#: Failures a subscription recovers from by reconnecting: the status table's (`Code.retryable`).
_RETRYABLE: Final = frozenset(code.grpc_status for code in Code if code.retryable)

#: How a server ends a subscription whose client stopped reading and fell behind the
#: updates it keeps: once the stream has started (a request too big gets it at once).
#: The subscription resumes, from a fresh snapshot.
_DROPPED: Final = Code.RESOURCE_EXHAUSTED.grpc_status


class GridClient:
    """An async client of the grid and catalog services, at one target or several.

    `target` is "host:port", several of them comma-separated or in a list (replicas of
    one app), or a name with several addresses; each counts as a replica to spread over
    and fail over to. Retries wait `reconnect_delay`, doubling up to `reconnect_max`, each
    delay jittered (`aerogrid.backoff`): clients that lost the same server do not all come
    back at the same instant. With several addresses, the next one is tried at once and
    the backoff applies once all of them failed in a row.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        token: str | None = None,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        reconnect_delay: float = 0.2,
        reconnect_max: float = 5.0,
        tenant: str | None = None,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.targets = parse_targets(target)
        #: The targets as given (several: comma-separated).
        self.target = target if isinstance(target, str) else ",".join(self.targets)
        self.token = token
        #: Through a cluster's gateway, the tenant whose apps grid calls go to (apps are
        #: named per tenant); local and single-app endpoints ignore it.
        self.tenant = tenant
        self.credentials = credentials
        self.reconnect_delay = reconnect_delay
        self.reconnect_max = reconnect_max
        #: Times a stream or call moved to another address after the one it was on failed.
        self.failovers = 0
        #: Subscriptions resumed from (epoch, seq), by how the server answered.
        self.resumes: Counter[ResumeKind] = Counter()
        self._targets = Targets(self.targets, resolver=resolver)
        self._channels: dict[TargetAddress, aio.Channel] | None = None

    @property
    def endpoint(self) -> str | None:
        """The address the client is on (None before its first call)."""
        current = self._targets.current
        return None if current is None else str(current)

    async def __aenter__(self) -> GridClient:
        self._channels = {}
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        channels, self._channels = self._channels, None
        for channel in (channels or {}).values():
            await channel.close(grace=None)

    def _backoff(self) -> Backoff:
        return Backoff(initial=self.reconnect_delay, maximum=self.reconnect_max)

    def _open_channels(self) -> dict[TargetAddress, aio.Channel]:
        if self._channels is None:
            raise RuntimeError("use GridClient as `async with GridClient(...) as client`")
        return self._channels

    def _channel(self, address: TargetAddress) -> aio.Channel:
        """The channel to an address, opened at its first use and kept until `close`."""
        channels = self._open_channels()
        channel = channels.get(address)
        if channel is None:
            options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
            if address.authority is not None:
                options.append(("grpc.default_authority", address.authority))
            if self.credentials is not None:
                channel = aio.secure_channel(address.address, self.credentials, options=options)
            else:
                channel = aio.insecure_channel(address.address, options=options)
            channels[address] = channel
        return channel

    async def _connect(self) -> tuple[TargetAddress, aio.Channel]:
        """The address to call now (names resolved again) and its channel."""
        self._open_channels()
        address = await self._targets.refresh()
        return address, self._channel(address)

    def _move_on(self, failed: TargetAddress) -> bool:
        """After a call on `failed` broke: move to the next address; whether there is one."""
        moved = self._targets.move_on(failed) != failed
        if moved:
            self.failovers += 1
        return moved

    # -- calls ---------------------------------------------------------------------

    def _metadata(self, app: str | None = None) -> tuple[tuple[str, str], ...]:
        """Call metadata: the token, and the app a grid call is for.

        `x-aerogrid-app` and `x-aerogrid-tenant` are how a cluster's gateway routes a grid
        call to the app's Service (it cannot read the request body); single-app and local
        endpoints ignore them.
        """
        metadata: list[tuple[str, str]] = []
        if self.token:
            metadata.append(("authorization", f"Bearer {self.token}"))
        if app:
            metadata.append((APP_HEADER, app))
            if self.tenant:
                metadata.append((TENANT_HEADER, self.tenant))
        return tuple(metadata)

    async def _unary(self, call: Callable[[aio.Channel], Awaitable[_T]]) -> _T:
        """A unary call on the current address, then on each other one in turn while it
        fails with a retryable status (no waiting: `snapshot` is what waits)."""
        tried = 0
        while True:
            address, channel = await self._connect()
            try:
                return await call(channel)
            except aio.AioRpcError as exc:
                tried += 1
                if exc.code() not in _RETRYABLE or tried >= len(self._targets.addresses):
                    raise GridClientError(exc.code(), exc.details() or "") from None
                self._move_on(address)

    async def apps(self) -> list[AppSummary]:
        """The apps this endpoint reaches that the caller may see."""
        response = await self._unary(
            lambda channel: catalog_pb2_grpc.CatalogServiceStub(channel).ListApps(
                catalog_pb2.ListAppsRequest(), metadata=self._metadata()
            )
        )
        return [
            AppSummary(
                name=a.name,
                tenant=a.tenant,
                status=catalog_pb2.AppStatus.Name(a.status).removeprefix("APP_STATUS_").lower(),
                grids=[grid_summary(g) for g in a.grids],
                message=a.message,
            )
            for a in response.apps
        ]

    async def grids(self, app: str = "") -> list[GridSummary]:
        response = await self._unary(
            lambda channel: grid_pb2_grpc.GridServiceStub(channel).ListGrids(
                grid_pb2.ListGridsRequest(app=app), metadata=self._metadata(app)
            )
        )
        return [grid_summary(g) for g in response.grids]

    async def snapshot(
        self, app: str, grid: str, *, timeout: float | None = 30.0
    ) -> dict[str, ClientRow]:
        """The grid as `{row_key: {column: value}}`, once it is restored.

        An endpoint or app that is still starting (UNAVAILABLE and the like) is waited
        for, up to `timeout`; then the last such error is raised, so the cause is kept.
        Mistakes (an unknown app or grid, a bad token) are raised at once.
        """

        async def first() -> dict[str, ClientRow]:
            async for update in self.subscribe(app, grid, reconnect=False):
                if update.snapshot:
                    return update.upserts
            raise GridClientError(grpc.StatusCode.UNAVAILABLE, "stream ended before a snapshot")

        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pacing = RetryPacing(self._backoff())
        while True:
            remaining = None if deadline is None else deadline - loop.time()
            try:
                return await asyncio.wait_for(first(), remaining)
            except GridClientError as exc:
                if exc.code not in _RETRYABLE:
                    raise
                # `subscribe` moved on to the next address already.
                delay = pacing.next_delay(len(self._targets.addresses))
                if deadline is not None:
                    # The last attempt keeps at least `reconnect_delay` before the deadline,
                    # however long the backoff has grown.
                    left = deadline - loop.time() - self.reconnect_delay
                    if left <= 0:
                        raise GridClientError(
                            exc.code, f"{exc.message} (still, after {timeout:g}s)"
                        ) from None
                    delay = min(delay, left)
            await asyncio.sleep(delay)

    async def subscribe(
        self,
        app: str,
        grid: str,
        *,
        keys: Sequence[str] = (),
        columns: Sequence[str] = (),
        min_interval_ms: int = 0,
        heartbeat_interval_ms: int = 0,
        resume_epoch: str = "",
        resume_seq: int = 0,
        reconnect: bool = True,
        heartbeats: bool = False,
    ) -> AsyncIterator[GridUpdate]:
        """Live updates of a grid: a snapshot, then deltas (see GridUpdate).

        A broken stream resumes from the last (epoch, seq) it received, on the next
        address when there are several (counted in `failovers` and `resumes`).
        """
        epoch, seq = resume_epoch, resume_seq
        #: Why the app's data is stale (None: it is not), as of the last message, and as
        #: the last update yielded said (a change is yielded at once).
        stale: str | None = None
        told: str | None = None
        pacing = RetryPacing(self._backoff())
        while True:
            address, channel = await self._connect()
            request = grid_pb2.SubscribeRequest(
                app=app,
                grid=grid,
                keys=list(keys),
                columns=list(columns),
                min_interval_ms=min_interval_ms,
                heartbeat_interval_ms=heartbeat_interval_ms,
                resume_epoch=epoch,
                resume_seq=seq,
            )
            call = grid_pb2_grpc.GridServiceStub(channel).Subscribe(
                request, metadata=self._metadata(request.app)
            )
            resuming = bool(epoch)
            delivered = False
            column_names: list[str] = []
            pending: dict[str, ClientRow] = {}
            try:
                async for response in call:
                    event = response.WhichOneof("event")
                    if event != "schema" and not delivered:
                        delivered = True
                        pacing.succeeded()  # this (re)subscription delivers: retry fast again
                        if resuming:
                            kind: ResumeKind = "snapshot" if event == "snapshot" else "delta"
                            self.resumes[kind] += 1
                            log.info(
                                "grid stream %s/%s resumed on %s from (%s, %d): %s",
                                app,
                                grid,
                                address,
                                request.resume_epoch,
                                request.resume_seq,
                                f"a snapshot (epoch {epoch})" if kind == "snapshot" else "deltas",
                            )
                    if event == "schema":
                        column_names = [c.name for c in response.schema.columns]
                        epoch = response.schema.epoch
                        stale = stale_reason(response.schema)
                    elif event == "snapshot":
                        snap = response.snapshot
                        pending.update(rows_of(snap.rows, column_names))
                        if snap.complete:
                            seq = snap.seq
                            rows, pending = pending, {}
                            told = stale
                            yield GridUpdate(seq, True, rows, [], epoch, stale_reason=stale)
                    elif event == "delta":
                        delta = response.delta
                        seq = delta.seq
                        told = stale
                        yield GridUpdate(
                            seq,
                            False,
                            rows_of(delta.upserts, column_names),
                            list(delta.deletes),
                            epoch,
                            conflated=delta.conflated,
                            stale_reason=stale,
                        )
                    elif event == "heartbeat":
                        # A key-filtered stream moves on without deltas: resume from here.
                        seq = max(seq, response.heartbeat.seq)
                        stale = stale_reason(response.heartbeat)
                        if heartbeats or stale != told:
                            told = stale
                            yield GridUpdate(
                                response.heartbeat.seq,
                                False,
                                {},
                                [],
                                epoch,
                                heartbeat=True,
                                stale_reason=stale,
                            )
                return
            except aio.AioRpcError as exc:
                code = exc.code()
                dropped = code == _DROPPED and bool(column_names)
                # A server that failed (not one that dropped a slow reader) is left for the
                # next address, also by a single attempt: `snapshot` retries there.
                moved = code in _RETRYABLE and self._move_on(address)
                if not reconnect or (code not in _RETRYABLE and not dropped):
                    raise GridClientError(code, exc.details() or "") from None
                log.info(
                    "grid stream %s/%s lost on %s (%s: %s); resuming after seq %d on %s",
                    app,
                    grid,
                    address,
                    code.name,
                    exc.details(),
                    seq,
                    self.endpoint,
                )
            finally:
                call.cancel()
            await asyncio.sleep(pacing.next_delay(len(self._targets.addresses) if moved else 1))
