"""The commands that run the dev loop: `dev`, `demo` and `tui` (also the bare `aerogrid`)."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import NoReturn

import click

from aerogrid.errors import ConfigurationError
from aerogrid_devkit import brokers
from aerogrid_devkit.demo import DemoOptions, run_demo
from aerogrid_devkit.dev_loop import DevLoop
from aerogrid_devkit.local_server import PortInUseError
from aerogrid_devkit.schema_registry import RegistryError
from aerogrid_devkit.schema_registry import cli as registry_cli
from aerogrid_devkit.workspace import MANIFEST, Workspace


@click.command()
@click.option("--headless", is_flag=True, help="Print the grid as it changes instead of the TUI.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds and print the final grid.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="With --duration: the final grids as JSON, last line."
)
@click.option("--rate", type=float, default=50.0, show_default=True, help="Orders per second.")
@click.option(
    "--port",
    type=int,
    default=50051,
    show_default=True,
    help="The local endpoint's port (a free one when taken; 0: any).",
)
@click.option("--seed", type=int, help="Seed the order feed (the same orders every run).")
def demo(
    headless: bool,
    duration: float | None,
    as_json: bool,
    rate: float,
    port: int,
    seed: int | None,
) -> None:
    """The orders app on the embedded broker, fed with orders, its grid live.

    No Docker and no Java: a private embedded broker, the design's orders app, the
    local endpoint (Excel can connect while it runs) and a feed of café orders, a few of
    them malformed on purpose (they land in the dead-letter topic). The TUI shows
    `product_sum` live; `q` quits. At the end the grid is checked against the orders
    sent, and a mismatch exits with 1.
    """
    if as_json and duration is None:
        raise click.UsageError("--json prints the final grids: give --duration too")
    options = DemoOptions(
        headless=headless,
        duration=duration,
        as_json=as_json,
        rate=rate,
        endpoint_port=port,
        seed=seed,
    )
    sys.exit(run_demo(options))


_WORKSPACE = click.argument(
    "workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    required=False,
)
_MODE = click.option(
    "--mode",
    type=click.Choice(brokers.MODES),
    help="The broker [default: the workspace's [broker] mode].",
)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _broker_for(ws: Workspace, mode: str | None) -> brokers.LocalBroker:
    """The workspace's broker, brought up (it outlives the loop: topics survive a restart)."""
    try:
        broker, why = brokers.open_broker(
            mode or ws.broker_mode,
            ws,
            source="--mode" if mode else MANIFEST,
            on_progress=lambda line: click.echo(f"  {line}"),
        )
        click.echo(f"broker: {why}")
        status = broker.up()
    except brokers.BrokerError as exc:
        _fail(str(exc))
    click.echo(f"broker: {status.detail}")
    return broker


def _app_env(ws: Workspace, broker: brokers.LocalBroker) -> dict[str, str]:
    """The apps' environment: the broker's, and the schema registry's (a local one started)."""
    config = ws.schema_registry
    if registry_cli.wants_local(config, flag=False):
        try:
            click.echo(registry_cli.registry_up(ws.root, config))
        except RegistryError as exc:
            _fail(str(exc))
    return {**broker.app_env(), **registry_cli.app_env(ws.root, config)}


@click.command()
@_WORKSPACE
@_MODE
def dev(workspace: Path, mode: str | None) -> None:
    """Run every app of WORKSPACE, with the local endpoint, logs to the terminal.

    Brings the workspace's broker up (and leaves it running, with its data, when you
    stop); opens the local endpoint (every app's grids on one loopback address, for
    Excel and `aerogrid watch`); restarts apps that crash; reloads an app when its files
    are saved. Ctrl-C stops the apps.
    """
    try:
        ws = Workspace.load(workspace)
    except ConfigurationError as exc:
        _fail(str(exc))
    if not ws.apps:
        _fail(f"{workspace} has no apps yet (add one with: aerogrid new NAME)")
    broker = _broker_for(ws, mode)
    app_env = _app_env(ws, broker)
    width = max(len(name) for name in ws.apps)

    def show(app: str, line: str) -> None:
        click.echo(f"{app:<{width}} | {line}")

    async def run() -> None:
        loop = DevLoop(
            ws.apps,
            broker.uri,
            endpoint_port=ws.endpoint_port,
            app_env=app_env,
            replicas=ws.replicas,
        )
        loop.log_sinks.append(show)
        stop = asyncio.Event()
        event_loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            event_loop.add_signal_handler(sig, stop.set)
        try:
            await loop.start()
        except PortInUseError as exc:
            await loop.stop()
            _fail(str(exc))
        click.echo(f"aerogrid dev: {len(ws.apps)} app(s) on {broker.uri}; Ctrl-C stops them")
        for line in replica_lines(ws):
            click.echo(f"aerogrid dev: {line}")
        await stop.wait()
        click.echo("aerogrid dev: stopping the apps")
        await loop.stop()

    asyncio.run(run())


def replica_lines(ws: Workspace) -> list[str]:
    """A line per app that runs several processes, naming them (their roles are logged)."""
    lines = []
    for name in ws.apps:
        count = ws.replicas.get(name, 1)
        if count > 1:
            ids = ", ".join(f"{name}-{k}" for k in range(1, count + 1))
            lines.append(f"{name} runs {count} replicas: {ids} (one active, the others standby)")
    return lines


@click.command()
@_WORKSPACE
@_MODE
def tui(workspace: Path, mode: str | None) -> None:
    """The TUI: WORKSPACE's apps, their live grids and logs, topics and the broker.

    Without an aerogrid.toml in WORKSPACE it still opens, on the local broker, with
    topics and the broker (make an app with `aerogrid new NAME`, or try `aerogrid demo`).
    """
    from aerogrid_devkit.tui.app import AeroGridApp

    try:
        ws = (
            Workspace.load(workspace)
            if (workspace / MANIFEST).is_file()
            else Workspace(root=workspace, broker_mode="auto")
        )
    except ConfigurationError as exc:
        _fail(str(exc))
    broker = _broker_for(ws, mode)
    app_env = _app_env(ws, broker)

    async def run() -> None:
        loop = DevLoop(
            ws.apps,
            broker.uri,
            endpoint_port=ws.endpoint_port,
            app_env=app_env,
            replicas=ws.replicas,
        )
        try:
            await loop.start()
        except PortInUseError as exc:
            await loop.stop()
            _fail(str(exc))
        try:
            await AeroGridApp(loop, broker=broker, cloud_targets=ws.cloud_targets).run_async()
        finally:
            await loop.stop()

    asyncio.run(run())
