"""`LocalGateway`: a whole workspace as one `ServiceAPI`.

The devkit runs each app in its own process on ephemeral ports, but clients (Excel,
the TUI, scripts) know one address. The gateway is what serves there:

* the catalog comes from the supervisor (each app's status) and from each app's own
  catalog (its *declared* name, tenant, grids and status message), followed over gRPC
  (WatchApps) while the process serves and cached, so a stopped or crashed app still
  lists its grids and a running one says when it is degraded. The
  declared name (`aerogrid.App("orders")`) is what clients subscribe with; it can
  differ from the app's key in the workspace.
* `ListGrids` and `Subscribe` are routed by that name to the app's process, and the
  `Subscribe` stream is passed through as the bytes the app encoded: one delta is
  never decoded or re-encoded here.
* an app with `replicas` > 1 runs several processes (`supervisor`): each running one
  has its own channel (`members.Member`), and each new call goes to the ready replica
  with the fewest subscriptions (`members.Spreader`).
* when a process goes away (a reload on save, a crash, a SIGKILL, a stop), its streams
  end with UNAVAILABLE at once; GridClient, `aerogrid watch`, the add-in and the TUI
  retry on that and resume from their last (epoch, seq), which the gateway routes like
  any new call: to another ready replica of the app, whose (epoch, seq) mean the same
  grid state, so the client gets only the deltas it missed.
  Why fail the stream rather than re-subscribe inside the gateway: the gateway passes
  the app's bytes through and never decodes a delta, so it does not know the client's
  last seq; re-subscribing exactly would mean decoding every message (the cost the
  pass-through avoids) and re-sending a schema the client already has. The clients'
  resume already exists, is tested against every transport, and is exact.
* `app_readiness` says which apps are served now (any replica ready), for the
  endpoint's gRPC health (a service name equal to an app's name), told of each change
  by `on_change`.

Callers are authenticated by the transports in front (the runtime's rules); the
gateway filters by tenant like the runtime does and reaches the apps as an anonymous
loopback caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Final

from grpc import aio

from aerogrid import metrics
from aerogrid.backoff import Backoff
from aerogrid.net import LOOPBACK_HOST
from aerogrid.server.connections import RELAY_STALL_SECONDS
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import Caller
from aerogrid.server.service import PacedStream
from aerogrid.v1 import catalog_pb2, catalog_pb2_grpc, grid_pb2, grid_pb2_grpc
from aerogrid_devkit.app_process import ReplicaProcess
from aerogrid_devkit.local_server.members import Member, Spreader
from aerogrid_devkit.supervisor import AppProcess, Supervisor

__all__ = ["LocalGateway"]

log = logging.getLogger(__name__)

_STATUS: Final[dict[str, catalog_pb2.AppStatus.ValueType]] = {
    "starting": catalog_pb2.APP_STATUS_STARTING,
    "reloading": catalog_pb2.APP_STATUS_STARTING,
    "running": catalog_pb2.APP_STATUS_RUNNING,
    "crashed": catalog_pb2.APP_STATUS_FAILED,
    "stopped": catalog_pb2.APP_STATUS_STOPPED,
}

_SUBSCRIBE: Final = (
    "/" + grid_pb2.DESCRIPTOR.services_by_name["GridService"].full_name + "/Subscribe"
)

#: Like GridClient: a snapshot chunk of a wide grid can exceed gRPC's 4 MB default.
_CHANNEL_OPTIONS: Final = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]

#: How long to wait for an app's catalog when it starts (and for a call to route on it).
CATALOG_TIMEOUT: Final = 5.0
#: `ListApps` refreshes the grid counts of running apps, but never waits longer than this.
REFRESH_TIMEOUT: Final = 1.0

#: Upstream codes passed on as they are: the app's answer to the caller's request. Any
#: other code means the hop to the app failed: the caller gets UNAVAILABLE, to call again.
_PASSED_ON: Final = frozenset(
    {
        Code.INVALID_ARGUMENT,
        Code.NOT_FOUND,
        Code.PERMISSION_DENIED,
        Code.UNAUTHENTICATED,
        Code.RESOURCE_EXHAUSTED,
        Code.INTERNAL,
    }
)


def _identity(data: bytes) -> bytes:
    return data


def _shape(info: catalog_pb2.AppInfo) -> bytes:
    """What a catalog watcher is told about: an AppInfo without its ever-moving row counts."""
    copy = catalog_pb2.AppInfo()
    copy.CopyFrom(info)
    for grid in copy.grids:
        grid.rows = 0
        grid.seq = 0
    return copy.SerializeToString(deterministic=True)


def _merged(
    known: list[catalog_pb2.AppInfo], response: catalog_pb2.WatchAppsResponse
) -> list[catalog_pb2.AppInfo]:
    """An app's catalog after one WatchApps response (the first one holds it whole)."""
    if response.initial:
        return list(response.apps)
    changed = {info.name: info for info in response.apps}
    kept = [changed.pop(info.name, info) for info in known if info.name not in response.removed]
    return kept + list(changed.values())


def _last_output(app: AppProcess, limit: int = 200) -> str:
    """The app's last line of output (a crash's exception, usually), shortened."""
    for line in reversed(app.logs):
        text = line.strip()
        if text and not text.startswith("[aerogrid dev]"):
            return text if len(text) <= limit else text[: limit - 3] + "..."
    return ""


def _status_message(app: AppProcess) -> str:
    """Why an app is not running, for AppInfo.message and UNAVAILABLE errors."""
    if app.status == "crashed":
        code = "" if app.exit_code is None else f" with code {app.exit_code}"
        last = _last_output(app)
        return f"exited{code}; restarting" + (f" (last output: {last})" if last else "")
    if app.status == "reloading":
        return "restarting with its saved files"
    if app.status == "stopped":
        return "stopped"
    if app.status == "starting":
        return "starting"
    return ""


@dataclass(eq=False)
class _Upstream:
    """One supervised app: its replicas' channels and its last known catalog."""

    process: AppProcess
    #: Each replica, by replica id.
    members: dict[str, Member] = field(default_factory=dict)
    #: The app's own catalog entries (declared name, tenant, grids), kept across restarts.
    catalog: list[catalog_pb2.AppInfo] = field(default_factory=list)

    def member(self, replica: ReplicaProcess) -> Member:
        found = self.members.get(replica.id)
        if found is None or found.replica is not replica:
            found = self.members[replica.id] = Member(replica)
        return found

    def serving(self) -> list[Member]:
        return [m for m in self.members.values() if m.serving]

    def source(self) -> Member | None:
        """The replica whose catalog is the app's: the first serving one that told it."""
        return next((m for m in self.serving() if m.catalog), None)

    def current_catalog(self) -> list[catalog_pb2.AppInfo]:
        source = self.source()
        if source is not None and source.catalog:
            self.catalog = source.catalog
        return self.catalog


class LocalGateway:
    """The catalog of every supervised app, and their grids, behind one endpoint.

    `start()` follows the supervisor (through `supervisor.on_change`); `close()` ends
    every stream and closes the channels to the apps.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        address: str,
        *,
        relay_stall_seconds: float = RELAY_STALL_SECONDS,
    ) -> None:
        self.supervisor = supervisor
        #: host:port of the endpoint serving this gateway (AppInfo.endpoint).
        self.address = address
        #: A subscriber whose send waited this long is dropped (see `subscribe`).
        self.relay_stall_seconds = relay_stall_seconds
        self._upstreams = {key: _Upstream(app) for key, app in supervisor.apps.items()}
        self._spreader = Spreader()
        self._shapes: dict[str, bytes] = {}
        self._changed = asyncio.Event()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Called (synchronously) whenever the catalog changed: an app's status or entries.
        self.on_change: Callable[[], None] | None = None

    # -- following the supervisor ------------------------------------------------------

    def start(self) -> None:
        self.supervisor.on_change.append(self._on_change)
        for app in self.supervisor.apps.values():
            self._on_change(app)

    async def close(self) -> None:
        """Stop following the supervisor; end every stream and watcher; close the channels."""
        if self._on_change in self.supervisor.on_change:
            self.supervisor.on_change.remove(self._on_change)
        self._closed = True
        members = [m for up in self._upstreams.values() for m in up.members.values()]
        fetches = [m.fetch for m in members if m.fetch is not None]
        for member in members:
            self._detach(member)
        self._notify()
        await asyncio.gather(*fetches, *self._closing, return_exceptions=True)

    def _on_change(self, app: AppProcess) -> None:
        """Called by the supervisor on every status, port or counter change (counters: often)."""
        try:
            upstream = self._upstreams.get(app.name)
            if upstream is None:  # an app the supervisor gained after we started
                upstream = self._upstreams[app.name] = _Upstream(app)
            for replica in app.replicas:
                member = upstream.member(replica)
                port = replica.ports.get("grpc") if replica.status == "running" else None
                if port != member.port:
                    # A new process (or none): the old one's streams end now, UNAVAILABLE.
                    self._detach(member)
                    if port is not None and not self._closed:
                        self._attach(upstream, member, port)
            self._notify_if_changed(upstream)
        except Exception:  # never break the supervisor's loop over a catalog update
            log.exception("local endpoint: following %s failed", app.name)

    def _attach(self, upstream: _Upstream, member: Member, port: int) -> None:
        channel = aio.insecure_channel(f"{LOOPBACK_HOST}:{port}", options=_CHANNEL_OPTIONS)
        member.port = port
        member.channel = channel
        member.fetch = asyncio.create_task(
            self._fetch_catalog(upstream, member, channel), name=f"catalog:{member.replica.id}"
        )

    def _detach(self, member: Member) -> None:
        """Forget a replica's current process: cancel its catalog fetch, close its channel."""
        if member.fetch is not None and not member.fetch.done():
            member.fetch.cancel()
        member.fetch = None
        member.catalog = None
        channel, member.channel, member.port = member.channel, None, None
        if channel is not None:
            # Closing cancels the calls on it: their streams end (see `subscribe`).
            task = asyncio.create_task(channel.close(grace=None))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _fetch_catalog(
        self, upstream: _Upstream, member: Member, channel: aio.Channel
    ) -> None:
        """Follow a running app's catalog (retrying briefly while it settles).

        WatchApps, not one ListApps: an app's status message changes while it runs (a
        broker outage makes it degraded, a downgrade to checkpoints is stated there), and
        the local endpoint's catalog must say so too.
        """
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        backoff = Backoff(initial=0.1, maximum=2.0)
        for attempt in range(5):
            followed = False
            try:
                async for response in stub.WatchApps(catalog_pb2.WatchAppsRequest()):
                    if member.channel is not channel:
                        return
                    followed = True
                    member.catalog = _merged(member.catalog or [], response)
                    self._notify_if_changed(upstream)
                return
            except aio.AioRpcError as exc:
                if member.channel is not channel or followed:
                    return  # a process that went away: the supervisor attaches the next one
                log.warning(
                    "local endpoint: cannot read the catalog of %s (attempt %d): %s",
                    member.replica.id,
                    attempt + 1,
                    exc.details() or exc.code().name,
                )
                await asyncio.sleep(backoff.next_delay())
        log.error(
            "local endpoint: %s does not tell its catalog; it is listed under its workspace "
            "name until it restarts",
            member.replica.id,
        )

    def _notify_if_changed(self, upstream: _Upstream) -> None:
        shape = b"\0".join(_shape(info) for info in self._infos_of(upstream))
        if self._shapes.get(upstream.process.name) != shape:
            self._shapes[upstream.process.name] = shape
            self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_change is not None:
            self.on_change()

    # -- the catalog -------------------------------------------------------------------

    def _infos_of(self, upstream: _Upstream) -> list[catalog_pb2.AppInfo]:
        """The AppInfos of one app: its own catalog with the supervisor's status."""
        app = upstream.process
        running = app.status == "running"
        known = upstream.current_catalog() or [catalog_pb2.AppInfo(name=app.name)]
        infos = []
        for entry in known:
            info = catalog_pb2.AppInfo()
            info.CopyFrom(entry)
            info.status = _STATUS.get(app.status, catalog_pb2.APP_STATUS_UNSPECIFIED)
            info.endpoint = ""  # served here, through this endpoint (see catalog.proto)
            if not running:
                info.message = _status_message(app)
                for grid in info.grids:
                    grid.ready = False  # known from the last run, but not served now
            infos.append(info)
        return infos

    def app_readiness(self) -> dict[str, bool]:
        """Each app's declared name: whether a process of it (any replica) is ready."""
        ready: dict[str, bool] = {}
        for upstream in self._upstreams.values():
            running = bool(upstream.serving())
            for info in self._infos_of(upstream):
                ready[info.name] = ready.get(info.name, False) or running
        return ready

    def _visible(self, caller: Caller) -> list[catalog_pb2.AppInfo]:
        return [
            info
            for upstream in self._upstreams.values()
            for info in self._infos_of(upstream)
            if caller.may_see(info.tenant)
        ]

    async def _refresh(self) -> None:
        """Re-read the running apps' catalogs (grid row counts move), best effort.

        The followed WatchApps streams tell status changes, not every row count or seq,
        so a caller about to see them (`list_apps`, a new `watch_apps`) asks first.
        """

        async def one(upstream: _Upstream, member: Member, channel: aio.Channel) -> None:
            stub = catalog_pb2_grpc.CatalogServiceStub(channel)
            with contextlib.suppress(aio.AioRpcError):
                response = await stub.ListApps(
                    catalog_pb2.ListAppsRequest(), timeout=REFRESH_TIMEOUT
                )
                if member.channel is channel and response.apps:
                    member.catalog = list(response.apps)
                    self._notify_if_changed(upstream)

        sources = [(up, up.source()) for up in self._upstreams.values()]
        await asyncio.gather(
            *(
                one(up, member, member.channel)
                for up, member in sources
                if member is not None and member.channel is not None
            )
        )

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, caller: Caller
    ) -> catalog_pb2.ListAppsResponse:
        await self._refresh()
        return catalog_pb2.ListAppsResponse(apps=self._visible(caller))

    async def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        await self._refresh()  # the first message is current, as ListApps' answer is
        changed = self._changed
        infos = self._visible(caller)
        sent = {info.name: _shape(info) for info in infos}
        yield catalog_pb2.WatchAppsResponse(apps=infos, initial=True).SerializeToString()
        while not self._closed:
            await changed.wait()
            changed = self._changed
            current = {info.name: info for info in self._visible(caller)}
            updated = [info for name, info in current.items() if sent.get(name) != _shape(info)]
            removed = [name for name in sent if name not in current]
            if updated or removed:
                sent = {name: _shape(info) for name, info in current.items()}
                yield catalog_pb2.WatchAppsResponse(
                    apps=updated, removed=removed
                ).SerializeToString()
        raise ServiceError(Code.UNAVAILABLE, "the local endpoint is stopping")

    # -- routing -----------------------------------------------------------------------

    def _named(self, name: str) -> list[tuple[_Upstream, catalog_pb2.AppInfo]]:
        return [
            (upstream, info)
            for upstream in self._upstreams.values()
            for info in self._infos_of(upstream)
            if info.name == name
        ]

    def _find(self, name: str, caller: Caller) -> tuple[_Upstream, catalog_pb2.AppInfo] | None:
        """The app declared as `name` that the caller may see (a running one first)."""
        found = [pair for pair in self._named(name) if caller.may_see(pair[1].tenant)]
        found.sort(key=lambda pair: pair[0].process.status != "running")
        return found[0] if found else None

    async def _route(self, name: str, caller: Caller) -> tuple[str, Member, aio.Channel]:
        """The replica to call for app `name` (`Spreader`), or the ServiceError saying why not.

        Another tenant's app gets the very answer an app that does not exist gets, so
        names cannot be probed; the refusal is counted (`cross_tenant`).
        """
        found = self._find(name, caller)
        if found is None:
            # An app that just started may be the one: its catalog is on its way.
            pending = [
                m.fetch
                for up in self._upstreams.values()
                for m in up.members.values()
                if m.fetch is not None and not m.fetch.done()
            ]
            if pending:
                await asyncio.wait(pending, timeout=CATALOG_TIMEOUT)
                found = self._find(name, caller)
        if found is None:
            if self._named(name):
                metrics.AUTH_FAILURES.labels("cross_tenant").inc()
            known = sorted({info.name for info in self._visible(caller)})
            # Apps yet to report their names, on a first try (one crash-looping since it
            # started would turn every typo into a retry forever).
            starting = sorted(
                up.process.name
                for up in self._upstreams.values()
                if not up.current_catalog()
                and (
                    up.process.status in ("reloading", "running")
                    or (up.process.status == "starting" and up.process.restarts == 0)
                )
            )
            if starting:
                raise ServiceError(
                    Code.UNAVAILABLE,
                    f"no app named {name!r} yet; still starting: {', '.join(starting)} "
                    f"(apps: {', '.join(known) or 'none'})",
                )
            raise ServiceError(
                Code.NOT_FOUND,
                f"no app named {name!r} in this workspace; apps: {', '.join(known) or 'none'}",
            )
        upstream, _ = found
        member = self._spreader.pick(upstream.members.values())
        channel = None if member is None else member.channel
        if member is None or channel is None:
            raise ServiceError(
                Code.UNAVAILABLE,
                f"app {name!r} is not running: {_status_message(upstream.process)}",
            )
        return upstream.process.name, member, channel

    def _cancelled_by_us(self, member: Member, channel: aio.Channel) -> bool:
        """Whether a CancelledError out of a call is `_detach` closing its channel.

        grpc.aio ends the calls of a closed channel with CancelledError, not a status;
        a cancellation of the task itself (the caller left) is counted by `cancelling()`.
        """
        task = asyncio.current_task()
        return member.channel is not channel and task is not None and task.cancelling() == 0

    def _gone(self, key: str, member: Member, name: str) -> ServiceError:
        if self._closed:
            return ServiceError(Code.UNAVAILABLE, "the local endpoint is stopping")
        app = self._upstreams[key].process
        if len(app.replicas) > 1:
            left = len(self._upstreams[key].serving())
            return ServiceError(
                Code.UNAVAILABLE,
                f"replica {member.replica.id} of app {name!r} went away "
                f"({member.replica.status}; {left} other(s) ready); call again to resume",
            )
        status = _status_message(app) or app.status
        return ServiceError(
            Code.UNAVAILABLE, f"app {name!r} went away ({status}); call again to resume"
        )

    def _upstream_error(
        self, key: str, member: Member, channel: aio.Channel, name: str, exc: aio.AioRpcError
    ) -> ServiceError:
        """An app's error as the caller should see it."""
        code = exc.code()
        if member.channel is not channel:
            return self._gone(key, member, name)
        passed_on = Code.from_grpc(code)
        if passed_on in _PASSED_ON:
            return ServiceError(passed_on, exc.details() or code.name)
        return ServiceError(
            Code.UNAVAILABLE,
            f"lost app {name!r} ({code.name}: {exc.details() or 'no details'}); "
            "call again to resume",
        )

    # -- GridService -------------------------------------------------------------------

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, caller: Caller
    ) -> grid_pb2.ListGridsResponse:
        if request.app:
            key, member, channel = await self._route(request.app, caller)
            try:
                return await grid_pb2_grpc.GridServiceStub(channel).ListGrids(
                    request, timeout=CATALOG_TIMEOUT
                )
            except aio.AioRpcError as exc:
                raise self._upstream_error(key, member, channel, request.app, exc) from None
            except asyncio.CancelledError:
                if self._cancelled_by_us(member, channel):
                    raise self._gone(key, member, request.app) from None
                raise
        # Every grid of every running app the caller may see; an app that fails to
        # answer is left out rather than failing the whole list.
        tenants = {
            info.name: info.tenant for up in self._upstreams.values() for info in self._infos_of(up)
        }
        # One replica per app: they serve the same grids.
        serving = [up.serving() for up in self._upstreams.values()]
        channels = [members[0].channel for members in serving if members and members[0].channel]
        answers = await asyncio.gather(
            *(
                grid_pb2_grpc.GridServiceStub(ch).ListGrids(
                    grid_pb2.ListGridsRequest(), timeout=REFRESH_TIMEOUT
                )
                for ch in channels
            ),
            return_exceptions=True,
        )
        grids = [
            grid
            for answer in answers
            if isinstance(answer, grid_pb2.ListGridsResponse)
            for grid in answer.grids
            if grid.app in tenants and caller.may_see(tenants[grid.app])
        ]
        return grid_pb2.ListGridsResponse(grids=grids)

    def subscribe(self, request: grid_pb2.SubscribeRequest, caller: Caller) -> PacedStream:
        """The app's stream, passed through; a client that stops reading is dropped.

        The app drops a stalled subscriber once it is behind its window, but the status
        would wait here behind what the client has not read: so this hop drops one whose
        send has waited `relay_stall_seconds`, cancelling the app's stream.
        """
        relayed = self._relay(request, caller)
        return PacedStream(relayed, lambda: True, self.relay_stall_seconds)

    async def _relay(
        self, request: grid_pb2.SubscribeRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        key, member, channel = await self._route(request.app, caller)
        call = channel.unary_stream(
            _SUBSCRIBE, request_serializer=_identity, response_deserializer=_identity
        )(request.SerializeToString())
        member.subscriptions += 1
        try:
            async for message in call:
                yield message
        except aio.AioRpcError as exc:
            raise self._upstream_error(key, member, channel, request.app, exc) from None
        except asyncio.CancelledError:
            if self._cancelled_by_us(member, channel):
                raise self._gone(key, member, request.app) from None
            raise
        finally:
            member.subscriptions -= 1
            call.cancel()
        # A subscription never ends on its own: the app's server is going away.
        raise ServiceError(
            Code.UNAVAILABLE, f"app {request.app!r} ended the stream; call again to resume"
        )
