"""The `aerogrid` command of the runtime: `run` and `watch`.

Other installed components (the devkit) add their commands through the
`aerogrid.commands` entry-point group, so the runtime alone stays small.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import sys
from decimal import Decimal
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import click

from aerogrid.errors import AeroGridError, AppLoadError


def _plugin_entries() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group="aerogrid.commands")}


class _PluginGroup(click.Group):
    """Adds the installed packages' commands (the devkit's), each loaded only when used.

    `aerogrid run` in a production image must not pay for importing the devkit's TUI,
    and a broken plugin must not break `aerogrid run`.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugin_entries()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        entry = _plugin_entries().get(cmd_name)
        if entry is None:
            return None
        try:
            loaded = entry.load()
        except Exception as exc:
            click.echo(f"warning: cannot load aerogrid command {cmd_name!r}: {exc}", err=True)
            return None
        if not isinstance(loaded, click.Command):
            click.echo(f"warning: aerogrid command {cmd_name!r} is not a click command", err=True)
            return None
        self.add_command(loaded, name=cmd_name)
        return loaded


@click.group(
    cls=_PluginGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    invoke_without_command=True,
)
@click.version_option(package_name="aerogrid")
@click.pass_context
def main(ctx: click.Context) -> None:
    """AeroGrid: live Kafka data in Excel.

    With no command: the devkit's TUI when the devkit is installed, else this help.
    """
    if ctx.invoked_subcommand is not None:
        return
    tui = main.get_command(ctx, "tui")
    if tui is None:
        click.echo(ctx.get_help())
        return
    ctx.invoke(tui)


@main.command()
@click.argument("app_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--broker", help="Kafka bootstrap (host:port[,...] or kafka://...); default AEROGRID_BROKER."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve grids on.")
@click.option("--port", default=50051, show_default=True, help="gRPC port (0: any free port).")
@click.option(
    "--http-port",
    type=int,
    help="HTTP port for Connect, gRPC-Web, health and metrics [default: PORT+1].",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the bound ports here as JSON once serving.",
)
@click.option(
    "--exactly-once",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Use Kafka transactions (auto: when the broker has them).",
)
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Static bearer tokens (JSON or TOML).",
)
@click.option(
    "--coalesce-ms",
    default=50,
    show_default=True,
    help="Merge commits published within this many ms into one update for subscribers.",
)
@click.option(
    "--serve-only",
    is_flag=True,
    help="Never process: restore, follow the changelogs and serve (a pure serving replica).",
)
@click.option(
    "--replica-id",
    help="This process's name among the app's replicas [default: AEROGRID_REPLICA_ID or HOST-PID].",
)
@click.option("--log-level", default="INFO", show_default=True)
def run(
    app_file: Path,
    broker: str | None,
    host: str,
    port: int,
    http_port: int | None,
    ready_file: Path | None,
    exactly_once: str,
    tokens_file: Path | None,
    coalesce_ms: int,
    serve_only: bool,
    replica_id: str | None,
    log_level: str,
) -> None:
    """Run an app: restore its grids, consume its topics, serve its grids live.

    Several processes of one app (same name, same brokers) are its replicas: one is the
    active and processes, every one serves its grids, and a standby takes over when the
    active stops or dies.
    """
    from dataclasses import replace

    from aerogrid.runner.loader import load_app
    from aerogrid.runner.serve import ServeOptions, serve_app
    from aerogrid.server.auth import AuthSettings
    from aerogrid.settings import BrokerSettings

    _configure_logging(log_level)
    if broker:
        os.environ["AEROGRID_BROKER"] = broker
    try:
        app = load_app(app_file)
        settings = BrokerSettings.from_env(broker) if broker else app.broker
    except AppLoadError as exc:
        click.echo(f"error: cannot load app: {exc}", err=True)
        sys.exit(2)
    except AeroGridError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    auth = AuthSettings.from_env()
    if tokens_file:
        auth = replace(auth, tokens_file=tokens_file)
    options = ServeOptions(
        host=host,
        port=port,
        http_port=http_port,
        ready_file=ready_file,
        exactly_once=exactly_once,  # type: ignore[arg-type]
        auth=auth,
        coalesce_ms=coalesce_ms,
        serve_only=serve_only,
        replica_id=replica_id,
    )
    sys.exit(asyncio.run(serve_app(app, settings, options)))


@main.command()
@click.argument("app")
@click.argument("grid")
@click.option(
    "--endpoint",
    "--target",
    "endpoints",
    multiple=True,
    metavar="HOST:PORT[,...]",
    help="Endpoint; several (comma-separated or the option repeated) are the app's replicas, "
    "spread over and failed over between [default: localhost:50051].",
)
@click.option("--token", envvar="AEROGRID_TOKEN", help="Bearer token [env AEROGRID_TOKEN].")
@click.option("--tenant", help="Through a cluster's endpoint: the app's tenant.")
@click.option("--once", is_flag=True, help="Print the grid once and exit.")
@click.option("--json", "as_json", is_flag=True, help="JSON output: {row_key: {column: value}}.")
@click.option(
    "--timeout", default=30.0, show_default=True, help="Seconds to wait for the grid (with --once)."
)
@click.option(
    "--verbose", "-v", is_flag=True, help="Say on stderr which endpoint serves, and each failover."
)
def watch(
    app: str,
    grid: str,
    endpoints: tuple[str, ...],
    token: str | None,
    tenant: str | None,
    once: bool,
    as_json: bool,
    timeout: float,
    verbose: bool,
) -> None:
    """Print a grid live (or once)."""
    from aerogrid.client import GridClient, GridClientError

    targets = list(endpoints) or ["localhost:50051"]
    if verbose:
        _configure_logging("INFO")

    async def main_loop() -> None:
        async with GridClient(targets, token=token, tenant=tenant) as client:
            if once:
                rows = await client.snapshot(app, grid, timeout=timeout)
                _print_grid(rows, as_json)
                return
            state: dict[str, dict[str, Any]] = {}
            stale: str | None = None
            serving: str | None = None
            async for update in client.subscribe(app, grid):
                if verbose and client.endpoint != serving:
                    serving = client.endpoint
                    resumes = ", ".join(f"{n} from {k}s" for k, n in client.resumes.items())
                    click.echo(
                        f"-- on {serving} (failovers {client.failovers}; resumes: "
                        f"{resumes or 'none'})",
                        err=True,
                    )
                if update.stale_reason != stale:
                    # Said on stderr with --json, so stdout stays one grid per line.
                    stale = update.stale_reason
                    click.echo(
                        "-- fresh again"
                        if stale is None
                        else f"-- stale: {stale} (showing the last values)",
                        err=as_json,
                    )
                if update.heartbeat:
                    continue
                state = update.apply_to(state)
                if not as_json:
                    click.echo(f"-- seq {update.seq} ({len(state)} rows)")
                _print_grid(state, as_json)

    try:
        asyncio.run(main_loop())
    except GridClientError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except TimeoutError:
        click.echo(
            f"error: no snapshot of {app}/{grid} from {', '.join(targets)} within {timeout}s",
            err=True,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _print_grid(rows: dict[str, dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, default=_json_default, sort_keys=True))
        return
    columns: list[str] = []
    for row in rows.values():
        columns.extend(c for c in row if c not in columns)
    header = ["key", *columns]
    table = [[str(k), *(str(rows[k].get(c, "")) for c in columns)] for k in sorted(rows)]
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
