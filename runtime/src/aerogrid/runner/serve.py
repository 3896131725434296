"""Run one app: engine, gRPC and HTTP servers, signals, a clean stop within seconds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aerogrid.app import App
from aerogrid.engine.kafka import KafkaEngine, Status
from aerogrid.engine.processor import StopProcessing
from aerogrid.errors import BrokerConnectionError
from aerogrid.server.auth import Authenticator, AuthSettings
from aerogrid.server.endpoint import HostedApp, RuntimeEndpoint
from aerogrid.server.hub import GridHub
from aerogrid.server.listeners import start_listeners
from aerogrid.settings import BrokerSettings
from aerogrid.v1 import catalog_pb2

log = logging.getLogger("aerogrid.runner")

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
    endpoint = RuntimeEndpoint(hub, [hosted])
    authenticator = Authenticator(options.auth or AuthSettings.from_env())
    engine = KafkaEngine(
        app,
        settings=settings,
        publish=lambda grid, changes: hub.publish(app.name, grid, changes),
        exactly_once=options.exactly_once,
        state_lock=hub.state_lock,
    )
    engine.on_status = lambda status: hosted.set_status(_APP_STATUS[status], engine.status_message)

    http_port = options.http_port
    if http_port is None:
        http_port = options.port + 1 if options.port else 0
    listeners = await start_listeners(
        endpoint,
        authenticator,
        host=options.host,
        port=options.port,
        http_port=http_port,
        is_ready=lambda: engine.status is Status.RUNNING,
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
    stop_requested = asyncio.Event()

    def on_signal() -> None:
        log.info("stopping app %s: finishing the batch in flight", app.name)
        stop_requested.set()
        engine.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    exit_code = 0
    try:
        start = asyncio.create_task(engine.start())
        stopper = asyncio.create_task(stop_requested.wait())
        await asyncio.wait((start, stopper), return_when=asyncio.FIRST_COMPLETED)
        if not start.done():
            start.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await start
        else:
            stopper.cancel()
            start.result()
            for channel in hub.channels(app.name):
                channel.mark_ready()
            if options.ready_file:
                _write_ready_file(options.ready_file, app, grpc_port, http_port, engine)
            await engine.run()
    except Exception as exc:
        log.error("app %s failed: %s", app.name, exc, exc_info=not _is_expected(exc))
        exit_code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await engine.close()
        await listeners.stop()
    log.info("app %s stopped", app.name)
    return exit_code


def _is_expected(exc: Exception) -> bool:
    """Failures whose message says it all (no traceback needed in the log)."""
    return isinstance(exc, StopProcessing | BrokerConnectionError)


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
