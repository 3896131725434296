"""Run one app: engine, gRPC and HTTP servers, signals, a clean stop within seconds.

Ready (`/readyz`, gRPC health) once every grid is restored, until SIGTERM: while the batch
in flight drains, load balancers and Kubernetes already send new callers elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aerogrid.app import App
from aerogrid.engine.guarantee import TransactionsRefused
from aerogrid.engine.kafka import KafkaEngine, Status
from aerogrid.engine.processor import StopProcessing
from aerogrid.errors import BrokerConnectionError
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


async def serve_app(app: App, settings: BrokerSettings, options: ServeOptions) -> int:
    """Run `app` until SIGTERM/SIGINT; returns the process exit code."""
    hub = GridHub(coalesce_ms=options.coalesce_ms)
    for grid in app.grids.values():
        hub.add_grid(app.name, grid)
    hosted = HostedApp(app.name, app.tenant)
    service = AppService(hub, [hosted])
    authenticator = Authenticator(options.auth or AuthSettings.from_env())
    engine = KafkaEngine(
        app,
        settings=settings,
        publish=lambda grid, changes: hub.publish(app.name, grid, changes),
        exactly_once=options.exactly_once,
        state_lock=hub.state_lock,
    )

    stop_requested = asyncio.Event()

    def is_ready() -> tuple[bool, str]:
        if stop_requested.is_set():
            return False, "stopping"
        return engine.status is Status.RUNNING, status_message(engine)

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


def status_message(engine: KafkaEngine) -> str:
    """The app's status line for WatchApps and the TUI: the one thing to know now."""
    if engine.status is Status.FAILED:
        return engine.status_message
    if engine.outage:
        return f"degraded: {engine.outage}; serving the last committed state"
    if engine.status_message:
        return engine.status_message
    if engine.downgrade_reason:
        return f"checkpointed, not exactly-once: {engine.downgrade_reason}"
    return ""


def _is_expected(exc: Exception) -> bool:
    """Failures whose message says it all (no traceback needed in the log)."""
    return isinstance(exc, StopProcessing | BrokerConnectionError | TransactionsRefused)


def _write_ready_file(
    path: Path, app: App, grpc_port: int, http_port: int, engine: KafkaEngine
) -> None:
    """Announce the bound ports for supervisors and tests (written atomically)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps(
            {
                "app": app.name,
                "grpc_port": grpc_port,
                "http_port": http_port,
                "guarantee": engine.guarantee.value if engine.guarantee else None,
                "grids": list(app.grids),
            }
        )
    )
    tmp.replace(path)
