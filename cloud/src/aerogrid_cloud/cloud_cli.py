"""`aerogrid promote`, `apps`, `stop`, `start`, `delete`: the cloud half of the command.

Registered as `aerogrid.commands` entry points, so the runtime's `aerogrid` gains them
when aerogrid-cloud is installed. Every cluster call runs under the user's kubeconfig
(`--kubeconfig`, $KUBECONFIG, ~/.kube/config; `--context`), so RBAC decides what a
developer may do. A failure is one line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import yaml

from aerogrid.errors import ConfigurationError
from aerogrid_cloud.kube import Kube, KubeError, connect
from aerogrid_cloud.model import MAX_REPLICAS, AppState, Phase, namespace_for
from aerogrid_cloud.promote import (
    PromoteError,
    PromoteTimeout,
    build_app,
    delete_app,
    list_apps,
    read_app_folder,
    set_replicas,
    set_stopped,
)
from aerogrid_cloud.promote import (
    promote as promote_app,
)
from aerogrid_cloud.targets import find_workspace, load_targets

__all__ = ["apps", "delete", "promote", "scale", "start", "stop"]

_F = TypeVar("_F", bound=Callable[..., Any])
_T = TypeVar("_T")
LOCAL_ENDPOINT = "localhost:50051"


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@contextmanager
def _errors() -> Iterator[None]:
    """Every expected failure as one line and exit 1 (a traceback is for bugs only)."""
    try:
        yield
    except (KubeError, PromoteError) as exc:
        _fail(str(exc))


# -- shared options --------------------------------------------------------------------------


def _cluster_options(func: _F) -> _F:
    """--tenant, --context, --kubeconfig, --target: which cluster and tenant."""
    for option in reversed(
        (
            click.option("--tenant", help="The tenant the app belongs to (its namespace)."),
            click.option("--context", help="The kubeconfig context [default: the current one]."),
            click.option(
                "--kubeconfig",
                type=click.Path(dir_okay=False, path_type=Path),
                envvar="KUBECONFIG",
                help="The kubeconfig [default: $KUBECONFIG, else ~/.kube/config].",
            ),
            click.option(
                "--target",
                help="A [cloud.targets.NAME] of aerogrid.toml: its tenant and context.",
            ),
        )
    ):
        func = option(func)
    return func


def _resolve_target(
    target: str | None, tenant: str | None, context: str | None, near: Path
) -> tuple[str | None, str | None, str | None]:
    """(tenant, context, endpoint): explicit options win over the workspace's target."""
    if target is None:
        return tenant, context, None
    root = find_workspace(near.resolve())
    if root is None:
        _fail(f"--target {target}: no aerogrid.toml in {near.resolve()} or above")
    try:
        targets = load_targets(root)
    except ConfigurationError as exc:
        _fail(str(exc))
    found = targets.get(target)
    if found is None:
        known = ", ".join(sorted(targets)) or "none"
        _fail(f"no [cloud.targets.{target}] in {root / 'aerogrid.toml'} (targets: {known})")
    return tenant or found.tenant, context or found.context, found.endpoint


def _need_tenant(tenant: str | None) -> str:
    if tenant is None:
        _fail("which tenant? pass --tenant T (or --target NAME from aerogrid.toml)")
    return tenant


def _connect(kubeconfig: Path | None, context: str | None) -> Kube:
    try:
        return connect(kubeconfig, context)
    except KubeError as exc:
        _fail(str(exc))


def _with_cluster(kube: Kube, work: Callable[[Kube], Awaitable[_T]]) -> _T:
    """Run `work` on its own event loop, the client closed after; failures as one line."""

    async def session() -> _T:
        async with kube:
            return await work(kube)

    with _errors():
        return asyncio.run(session())
    raise AssertionError("unreachable")  # _errors exits on every failure


# -- output -------------------------------------------------------------------------------------


class _LiteralDumper(yaml.SafeDumper):
    """YAML that shows an app's files as they are written (block scalars), not as escapes."""


def _str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_LiteralDumper.add_representer(str, _str_presenter)


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_LiteralDumper, sort_keys=False, allow_unicode=True)


def _age(created: str, now: dt.datetime | None = None) -> str:
    """kubectl's AGE: 45s, 12m, 3h, 5d."""
    if not created:
        return ""
    try:
        then = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return ""
    seconds = max(0, int(((now or dt.datetime.now(dt.UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _state_json(state: AppState) -> dict[str, Any]:
    return {
        "tenant": state.tenant,
        "namespace": state.namespace,
        "app": state.name,
        "phase": state.phase,
        "stopped": state.stopped,
        "replicas": state.spec_replicas,
        "readyReplicas": state.ready_replicas,
        "image": state.image,
        "endpoint": state.endpoint,
        "message": state.message,
        "created": state.created,
    }


def _phase_line(state: AppState) -> str:
    return f"  {state.phase}" + (f": {state.message}" if state.message else "")


# -- promote ------------------------------------------------------------------------------------


def _env_pairs(values: Sequence[str]) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key:
            _fail(f"--env {value!r}: expected NAME=VALUE")
        pairs[key] = text
    return pairs


@click.command()
@click.argument("app_dir", type=click.Path(path_type=Path))
@_cluster_options
@click.option("--wait", is_flag=True, help="Follow the app's status until Running or Failed.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds --wait waits at most.")
@click.option("--dry-run", is_flag=True, help="Print the App (see -o) and touch no cluster.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json"]),
    help="With --dry-run: the App as YAML or JSON [default: yaml].",
)
@click.option("--env", "env", multiple=True, help="NAME=VALUE for the app's environment.")
@click.option("--secret", "secrets", multiple=True, help="A Secret whose keys become env vars.")
@click.option("--broker", help="The Kafka bootstrap the app uses (host:port[,...]).")
@click.option(
    "--broker-secret", help="A Secret with AEROGRID_BROKER and its credentials (see the docs)."
)
def promote(
    app_dir: Path,
    tenant: str | None,
    context: str | None,
    kubeconfig: Path | None,
    target: str | None,
    wait: bool,
    timeout: float,
    dry_run: bool,
    output: str | None,
    env: tuple[str, ...],
    secrets: tuple[str, ...],
    broker: str | None,
    broker_secret: str | None,
) -> None:
    """Run the app in APP_DIR in the cluster: apply it as an App in its tenant's namespace.

    The App carries the folder's files (app.py, requirements.txt, ...; not hidden files,
    caches or tests) and the installed runtime's version; it is named after the app's
    declared name, aerogrid.App('name'). Applying is server-side apply under your
    kubeconfig: promoting the same folder again changes nothing, new files roll out.
    """
    if output is not None and not dry_run:
        _fail("-o/--output goes with --dry-run (it prints the App instead of applying it)")
    tenant, context, endpoint = _resolve_target(target, tenant, context, app_dir)
    tenant = _need_tenant(tenant)
    with _errors():
        folder = read_app_folder(app_dir)
        app = build_app(
            app_dir,
            tenant,
            env=_env_pairs(env),
            secret_refs=secrets,
            broker_bootstrap=broker,
            broker_secret=broker_secret,
            folder=folder,
        )
    if dry_run:
        click.echo(json.dumps(app, indent=2) if output == "json" else to_yaml(app), nl=False)
        if output == "json":
            click.echo()
        return
    kube = _connect(kubeconfig, context)
    files = ", ".join(sorted(folder.files))
    skipped = f" (left out: {', '.join(folder.skipped)})" if folder.skipped else ""
    click.echo(
        f"promoting {folder.name} to tenant {tenant} ({namespace_for(tenant)}, "
        f"context {kube.context}): {files}{skipped}"
    )

    async def apply(kube: Kube) -> AppState:
        try:
            return await promote_app(
                kube,
                app,
                wait=wait,
                timeout=timeout,
                on_phase=lambda s: click.echo(_phase_line(s)),
            )
        except PromoteTimeout as exc:
            _fail(f"{exc}; it goes on in the cluster: aerogrid apps --cloud --tenant {tenant}")

    state = _with_cluster(kube, apply)
    if not wait:
        click.echo(
            f"applied App {state.name} (generation {state.generation}); follow it with "
            f"aerogrid apps --cloud --tenant {tenant}"
        )
        return
    if state.phase == Phase.FAILED:
        _fail(f"app {state.name} failed: {state.message or 'no reason given'}")
    if state.phase == Phase.STOPPED:
        click.echo(f"app {state.name} is stopped: aerogrid start {state.name} --cloud")
        return
    where = state.endpoint or endpoint
    click.echo(f"app {state.name} is running" + (f" at {where}" if where else ""))


# -- apps ------------------------------------------------------------------------------------------


@click.command()
@click.option("--cloud", is_flag=True, help="The cluster's Apps (else the local endpoint's apps).")
@_cluster_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--endpoint",
    default=LOCAL_ENDPOINT,
    show_default=True,
    help="Without --cloud: the endpoint to ask.",
)
@click.option("--token", envvar="AEROGRID_TOKEN", help="Without --cloud: a bearer token.")
def apps(
    cloud: bool,
    tenant: str | None,
    context: str | None,
    kubeconfig: Path | None,
    target: str | None,
    as_json: bool,
    endpoint: str,
    token: str | None,
) -> None:
    """List apps: the cluster's (--cloud; one tenant's with --tenant), or a local endpoint's."""
    if not cloud:
        if tenant or context or target:
            _fail("--tenant, --context and --target go with --cloud")
        _local_apps(endpoint, token, as_json)
        return
    tenant, context, _ = _resolve_target(target, tenant, context, Path.cwd())
    kube = _connect(kubeconfig, context)

    async def listed(kube: Kube) -> list[AppState]:
        try:
            return await list_apps(kube, tenant)
        except KubeError as exc:
            if tenant is None and str(exc).startswith("forbidden"):
                _fail(f"{exc} (to list one tenant's apps, pass --tenant T)")
            raise

    states = _with_cluster(kube, listed)
    if as_json:
        click.echo(json.dumps([_state_json(s) for s in states], indent=2))
        return
    if not states:
        where = f"tenant {tenant}" if tenant else f"context {kube.context}"
        click.echo(f"no apps in {where}")
        return
    rows = [
        [
            s.tenant or s.namespace,
            s.name,
            s.phase + (" (stopped)" if s.stopped and s.phase != Phase.STOPPED else ""),
            f"{s.ready_replicas}/{0 if s.stopped else s.spec_replicas}",
            s.image,
            s.endpoint,
            _age(s.created),
        ]
        for s in states
    ]
    click.echo(_table(["TENANT", "APP", "PHASE", "READY", "IMAGE", "ENDPOINT", "AGE"], rows))


def _local_apps(endpoint: str, token: str | None, as_json: bool) -> None:
    from aerogrid.client import GridClient, GridClientError

    async def fetch() -> list[Any]:
        async with GridClient(endpoint, token=token) as client:
            return await asyncio.wait_for(client.apps(), 10)

    try:
        found = asyncio.run(fetch())
    except GridClientError as exc:
        if exc.code.name == "UNAVAILABLE":
            _fail(f"no endpoint answers at {endpoint} (start the local loop with aerogrid dev)")
        _fail(f"{endpoint}: {exc}")
    except TimeoutError:
        _fail(f"{endpoint} did not answer within 10s")
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "app": a.name,
                        "tenant": a.tenant,
                        "status": a.status,
                        "grids": [g.name for g in a.grids],
                        "message": a.message,
                    }
                    for a in found
                ],
                indent=2,
            )
        )
        return
    if not found:
        click.echo(f"no apps at {endpoint}")
        return
    rows = [
        [a.name, a.tenant, a.status, ", ".join(g.name for g in a.grids), a.message] for a in found
    ]
    click.echo(_table(["APP", "TENANT", "STATUS", "GRIDS", "MESSAGE"], rows))


# -- stop, start, delete ---------------------------------------------------------------------------


def _life_cycle(verb: str, help_text: str) -> click.Command:
    @click.command(name=verb, help=help_text)
    @click.argument("app")
    @click.option("--cloud", is_flag=True, help="The app in the cluster (required).")
    @_cluster_options
    def command(
        app: str,
        cloud: bool,
        tenant: str | None,
        context: str | None,
        kubeconfig: Path | None,
        target: str | None,
    ) -> None:
        if not cloud:
            _fail(
                f"aerogrid {verb} acts on the cluster: add --cloud "
                "(local apps start and stop in aerogrid dev and the TUI)"
            )
        tenant, context, _ = _resolve_target(target, tenant, context, Path.cwd())
        tenant = _need_tenant(tenant)
        kube = _connect(kubeconfig, context)
        if verb == "delete":
            _with_cluster(kube, lambda kube: delete_app(kube, tenant, app))
            click.echo(f"deleted App {app} of tenant {tenant}; its objects go with it")
            return
        state = _with_cluster(kube, lambda kube: set_stopped(kube, tenant, app, verb == "stop"))
        done = "stopping" if verb == "stop" else "starting"
        click.echo(f"{done} App {app} of tenant {tenant} (phase now: {state.phase})")

    return command


stop = _life_cycle("stop", "Stop APP in the cluster: scaled to zero, its code and settings kept.")
start = _life_cycle("start", "Start APP again in the cluster after aerogrid stop.")
delete = _life_cycle(
    "delete", "Delete APP from the cluster, with everything the platform made for it."
)


@click.command()
@click.argument("app")
@click.argument("replicas", type=click.IntRange(0, MAX_REPLICAS))
@click.option("--cloud", is_flag=True, help="The app in the cluster (required).")
@_cluster_options
def scale(
    app: str,
    replicas: int,
    cloud: bool,
    tenant: str | None,
    context: str | None,
    kubeconfig: Path | None,
    target: str | None,
) -> None:
    """Run REPLICAS processes of APP in the cluster: one active, the others standbys.

    At most the tenant's quota (its Tenant's quotas.maxReplicasPerApp, 3 unless the
    admin says otherwise): more is refused in the App's status. Promote keeps the count.
    """
    if not cloud:
        _fail(
            "aerogrid scale acts on the cluster: add --cloud "
            "(local apps take replicas = N in aerogrid.toml)"
        )
    tenant, context, _ = _resolve_target(target, tenant, context, Path.cwd())
    tenant = _need_tenant(tenant)
    kube = _connect(kubeconfig, context)
    state = _with_cluster(kube, lambda kube: set_replicas(kube, tenant, app, replicas))
    click.echo(
        f"scaling App {app} of tenant {tenant} to {replicas} replicas (phase now: {state.phase})"
    )
