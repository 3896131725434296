"""Run one app's replica: engine, gRPC and HTTP servers, signals, a clean stop within seconds.

Ready (`/readyz`, gRPC health) once every grid is restored, until SIGTERM: while the batch
in flight drains, load balancers and Kubernetes already send new callers elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aerogrid.app import App
from aerogrid.engine.committer import Fenced
from aerogrid.engine.guarantee import TransactionsRefused
from aerogrid.engine.kafka import Status
from aerogrid.engine.processor import StopProcessing
from aerogrid.engine.replica import Replica
from aerogrid.engine.replica_group import Role
from aerogrid.errors import BrokerConnectionError, ConfigurationError
from aerogrid.grids import Grid
from aerogrid.server.app_service import AppService, HostedApp
from aerogrid.server.auth import Authenticator, AuthSettings
from aerogrid.server.hub import GridHub
from aerogrid.server.listeners import Listeners, start_listeners
from aerogrid.settings import BrokerSettings
from aerogrid.v1 import catalog_pb2

log = logging.getLogger("aerogrid.runner")

#: After SIGTERM, how long the batch in flight may take to commit; then the clients get
#: CLOSE_TIMEOUT_SECONDS each to stop, so the process exits within 10 s even in an outage.
STOP_GRACE_SECONDS = 4.0
CLOSE_TIMEOUT_SECONDS = 1.5

_APP_STATUS = {
    Status.STARTING: catalog_pb2.APP_STATUS_STARTING,
    Status.RESTORING: catalog_pb2.APP_STATUS_RESTORING,
    Status.RUNNING: catalog_pb2.APP_STATUS_RUNNING,
    Status.STOPPED: catalog_pb2.APP_STATUS_STOPPED,
    Status.FAILED: catalog_pb2.APP_STATUS_FAILED,
}


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 50051
    http_port: int | None = None  # None: port + 1 (0 when port is 0)
    ready_file: Path | None = None
    exactly_once: Literal["auto", "on", "off"] = "auto"
    auth: AuthSettings | None = None
    #: Merge commits published within this many ms into one update for subscribers.
    coalesce_ms: int = 50
    #: Never process: restore, follow the changelogs and serve (a pure serving replica).
    serve_only: bool = False
    #: This process's name among the app's replicas (None: AEROGRID_REPLICA_ID or host-pid).
    replica_id: str | None = None


async def serve_app(app: App, settings: BrokerSettings, options: ServeOptions) -> int:
    """Run `app` until SIGTERM/SIGINT; returns the process exit code."""
    hub = GridHub(coalesce_ms=options.coalesce_ms)
    for grid in app.grids.values():
        hub.add_grid(app.name, grid)
    hosted = HostedApp(app.name, app.tenant)
    service = AppService(hub, [hosted])
    authenticator = Authenticator(options.auth or AuthSettings.from_env())

    def set_position(grid: Grid, epoch: str, seq: int, recent: Sequence[Any]) -> None:
        channel = hub.channel(app.name, grid.name)
        if channel is not None:
            channel.set_position(epoch, seq, recent)

    engine = Replica(
        app,
        settings=settings,
        publish=lambda grid, changes, seq: hub.publish(app.name, grid, changes, seq),
        set_position=set_position,
        exactly_once=options.exactly_once,
        state_lock=hub.state_lock,
        serve_only=options.serve_only,
        replica_id=options.replica_id,
    )
    stop_requested = asyncio.Event()

    def is_ready() -> tuple[bool, str]:
        if stop_requested.is_set():
            return False, "stopping"
        return engine.status is Status.RUNNING, replica_line(engine)

    def describe() -> dict[str, Any]:
        return describe_replica(engine, hub)

    def report(*_: object) -> None:
        hosted.set_status(_APP_STATUS[engine.status], status_message(engine))
        hub.set_degraded(app.name, engine.outage)
        if listeners is not None:
            listeners.health.notify()

    engine.on_status = report
    engine.on_outage = report

    listeners: Listeners | None = None
    http_port = options.http_port
    if http_port is None:
        http_port = options.port + 1 if options.port else 0
    listeners = await start_listeners(
        service,
        authenticator,
        host=options.host,
        port=options.port,
        http_port=http_port,
        is_ready=is_ready,
        describe=describe,
    )
    grpc_port, http_port = listeners.grpc_port, listeners.http_port
    log.info(
        "app %s: gRPC on %s:%d, HTTP (Connect, gRPC-Web, health, metrics) on %s:%d",
        app.name,
        options.host,
        grpc_port,
        options.host,
        http_port,
    )

    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        log.info("stopping app %s: finishing the batch in flight", app.name)
        stop_requested.set()
        listeners.health.notify()
        engine.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    exit_code = 0
    try:
        if await _until_stopped(engine.start(), stop_requested, grace=0):
            for channel in hub.channels(app.name):
                channel.mark_ready()
            report()
            if options.ready_file:
                _write_ready_file(options.ready_file, app, grpc_port, http_port, engine)
            await _until_stopped(engine.run(), stop_requested, grace=STOP_GRACE_SECONDS)
    except Exception as exc:
        log.error("app %s failed: %s", app.name, exc, exc_info=not _is_expected(exc))
        exit_code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        try:
            await engine.close(timeout=CLOSE_TIMEOUT_SECONDS)
        finally:
            await listeners.stop()
    log.info("app %s stopped", app.name)
    return exit_code


async def _until_stopped(
    work: Coroutine[Any, Any, None], stop: asyncio.Event, grace: float
) -> bool:
    """Run `work`; once `stop` is set, give it `grace` seconds, then cancel it.

    True when `work` finished on its own. A stop never waits on a broker for longer
    than the grace: what was not committed is read again on the next start.
    """
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and grace:
            await asyncio.wait((task,), timeout=grace)
            if not task.done():
                log.warning(
                    "the batch in flight was not committed within %.0f s of the stop (is the "
                    "broker reachable?); it is read again on the next start",
                    grace,
                )
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return False
        task.result()
        return True
    finally:
        stopper.cancel()


def status_message(replica: Replica) -> str:
    """The app's status line for WatchApps and the TUI: the one thing to know now."""
    engine = replica.engine
    if engine.status is Status.FAILED:
        return engine.status_message
    if engine.outage:
        return f"degraded: {engine.outage}; serving the last committed state"
    if engine.status_message:
        return engine.status_message
    if engine.downgrade_reason:
        return f"checkpointed, not exactly-once: {engine.downgrade_reason}"
    return ""


def replica_line(replica: Replica) -> str:
    """`/readyz`'s detail: the role (and lag), then the status message if there is one."""
    line = replica.role.value
    if replica.role in (Role.STANDBY, Role.SERVE_ONLY):
        line += f", lag {sum(replica.lag().values())}"
    message = status_message(replica)
    return f"{line}; {message}" if message else line


def describe_replica(replica: Replica, hub: GridHub) -> dict[str, Any]:
    """`GET /replica`: this process's role among the app's replicas, and each grid's place."""
    lags = replica.lag()
    grids: dict[str, Any] = {}
    for channel in hub.channels(replica.app.name):
        name = channel.grid.name
        grids[name] = {"epoch": channel.epoch, "seq": channel.seq, "lag": lags.get(name, 0)}
    return {
        "app": replica.app.name,
        "replica": replica.replica_id,
        "pid": os.getpid(),
        "role": replica.role.value,
        "active": replica.active_replica,
        "failovers": replica.failovers,
        "grids": grids,
    }


def _is_expected(exc: Exception) -> bool:
    """Failures whose message says it all (no traceback needed in the log)."""
    return isinstance(
        exc,
        StopProcessing
        | BrokerConnectionError
        | TransactionsRefused
        | Fenced
        | ConfigurationError,  # a registry refusing the app's credentials, too
    )


def _write_ready_file(
    path: Path, app: App, grpc_port: int, http_port: int, engine: Replica
) -> None:
    """Announce the bound ports for supervisors and tests (written atomically)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "app": app.name,
                "grpc_port": grpc_port,
                "http_port": http_port,
                "guarantee": engine.engine.guarantee.value if engine.engine.guarantee else None,
                "replica": engine.replica_id,
                "grids": list(app.grids),
            }
        )
    )
    tmp.replace(path)
