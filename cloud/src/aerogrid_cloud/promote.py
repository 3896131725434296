"""Promote: an app's folder becomes an `App` resource in its tenant's namespace.

`build_app` reads the folder without running any of it (the app's name comes from
`aerogrid.App("name")` found with `ast`), so `--dry-run` needs no cluster and no broker.
`promote` applies the App with server-side apply under the user's own kubeconfig (RBAC
decides, not us) and, when asked, follows `.status` with a watch until the operator says
Running or Failed. `set_stopped`, `delete_app` and `list_apps` are the rest of the life cycle.

What ships: the folder's top-level regular files, as UTF-8 text. Left out, and reported:
hidden files (`.env` holds secrets more often than not), byte-code, editor leftovers and
tests (`test_*.py`, `*_test.py`, `conftest.py`: they run on the desktop, not in the
cluster). A subfolder is left out too, unless it holds Python code the app may import:
that is an error, because the app would break in the cluster and not on the desktop.
"""

from __future__ import annotations

import ast
import asyncio
import fnmatch
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from aerogrid.backoff import Backoff
from aerogrid_cloud.kube import (
    APPS,
    PROMOTE_MANAGER,
    SCALE_MANAGER,
    STATE_MANAGER,
    Gone,
    Kube,
    NotFound,
    Unreachable,
)
from aerogrid_cloud.model import (
    API_VERSION,
    APP_KIND,
    APP_LABEL,
    TENANT_LABEL,
    AppSpec,
    AppState,
    BrokerRef,
    EnvVar,
    SecretRef,
    check_name,
    namespace_for,
    resource,
    tenant_of,
)

__all__ = [
    "AppFolder",
    "Declared",
    "PromoteError",
    "PromoteTimeout",
    "build_app",
    "declared_app",
    "delete_app",
    "get_app",
    "list_apps",
    "promote",
    "read_app_folder",
    "runtime_version",
    "set_replicas",
    "set_stopped",
    "wait_for_app",
]

APP_FILE: Final = "app.py"
#: Files that stay on the desktop (matched against the file's name).
SKIPPED_FILES: Final = (
    ".*",
    "*.pyc",
    "*.pyo",
    "*~",
    "*.swp",
    "*.bak",
    "test_*.py",
    "*_test.py",
    "conftest.py",
)
#: Folders that are never the app's code: caches, virtualenvs, tests.
SKIPPED_DIRS: Final = (
    ".*",
    "__pycache__",
    "venv",
    "env",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "test",
    "tests",
)


class PromoteError(Exception):
    """Promote cannot go on; `str()` is one line for the user."""


class PromoteTimeout(PromoteError):
    """The App did not settle in time; `state` is the last one seen."""

    def __init__(self, message: str, state: AppState) -> None:
        super().__init__(message)
        self.state = state


# -- reading the folder -------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """What app.py declares about itself: `aerogrid.App(name, tenant=...)`."""

    name: str
    tenant: str | None = None


@dataclass(frozen=True)
class AppFolder:
    """An app's folder as promote sees it: the declared app, the files that ship, the rest."""

    path: Path
    declared: Declared
    files: dict[str, str]
    skipped: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.declared.name


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _holds_python(folder: Path) -> bool:
    """Whether a folder has Python code (outside caches and virtualenvs) at any depth."""
    for path in folder.rglob("*.py"):
        parts = path.relative_to(folder).parts[:-1]
        if not any(_matches(part, SKIPPED_DIRS) for part in parts):
            return True
    return False


def read_app_folder(app_dir: Path) -> AppFolder:
    """The files an App carries for `app_dir` (or for the folder of an app.py given)."""
    folder = app_dir.parent if app_dir.name == APP_FILE and app_dir.is_file() else app_dir
    if not folder.is_dir():
        raise PromoteError(f"{app_dir} is not a folder (promote takes an app's folder)")
    if not (folder / APP_FILE).is_file():
        raise PromoteError(f"{folder} has no {APP_FILE}: is it an app's folder?")
    files: dict[str, str] = {}
    skipped: list[str] = []
    for path in sorted(folder.iterdir()):
        name = path.name
        if path.is_dir():
            if not _matches(name, SKIPPED_DIRS) and _holds_python(path):
                raise PromoteError(
                    f"{path} holds Python code, but an App carries only the files next to "
                    f"{APP_FILE} (no folders): move the modules it imports next to {APP_FILE}"
                )
            skipped.append(f"{name}/")
            continue
        if not path.is_file() or _matches(name, SKIPPED_FILES):
            skipped.append(name)
            continue
        try:
            files[name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise PromoteError(
                f"{path} is not UTF-8 text: an App carries text files only "
                "(keep binary data in a topic, an image or a volume)"
            ) from None
        except OSError as exc:
            raise PromoteError(f"cannot read {path}: {exc.strerror or exc}") from None
    declared = declared_app(files[APP_FILE], folder / APP_FILE)
    return AppFolder(folder, declared, files, skipped)


def declared_app(source: str, filename: Path | str = APP_FILE) -> Declared:
    """The `aerogrid.App(...)` an app file declares, found without running it.

    Understands `aerogrid.App(...)`, `import aerogrid as ag; ag.App(...)` and
    `from aerogrid import App [as A]; A(...)`; the name must be a string literal (promote
    names the App resource after it, and clients find the app by it).
    """
    try:
        tree = ast.parse(source, filename=str(filename))
    except SyntaxError as exc:
        raise PromoteError(f"{filename}, line {exc.lineno}: syntax error: {exc.msg}") from None
    modules = {"aerogrid"}
    constructors: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.asname for a in node.names if a.name == "aerogrid" and a.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == "aerogrid":
            constructors.update(a.asname or a.name for a in node.names if a.name == "App")
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "App"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in modules
            )
            or (isinstance(node.func, ast.Name) and node.func.id in constructors)
        )
    ]
    if not calls:
        raise PromoteError(f"{filename} declares no app: expected aerogrid.App('name', ...)")
    if len(calls) > 1:
        lines = ", ".join(str(c.lineno) for c in calls)
        raise PromoteError(f"{filename} declares {len(calls)} apps (lines {lines}): one per folder")
    call = calls[0]
    keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
    name_node = call.args[0] if call.args else keywords.get("name")
    where = f"{filename}, line {call.lineno}"
    if not (isinstance(name_node, ast.Constant) and isinstance(name_node.value, str)):
        raise PromoteError(
            f"{where}: the app's name must be a string literal, aerogrid.App('name', ...), "
            "so promote can read it without running your code"
        )
    name = name_node.value
    try:
        check_name("app", name)
    except ValueError as exc:
        raise PromoteError(
            f"{where}: {exc}; the name becomes the App resource's and the app's host name"
        ) from None
    tenant_node = keywords.get("tenant")
    tenant = None
    if isinstance(tenant_node, ast.Constant) and isinstance(tenant_node.value, str):
        tenant = tenant_node.value
    return Declared(name, tenant)


def runtime_version() -> str:
    """The installed `aerogrid` runtime's version: the one the app was built and tested on."""
    try:
        return version("aerogrid")
    except PackageNotFoundError:
        raise PromoteError("the aerogrid runtime is not installed here") from None


def build_app(
    app_dir: Path,
    tenant: str,
    *,
    runtime: str | None = None,
    env: Mapping[str, str] | None = None,
    secret_refs: Iterable[str] = (),
    broker_bootstrap: str | None = None,
    broker_secret: str | None = None,
    folder: AppFolder | None = None,
) -> dict[str, Any]:
    """The App object for the app in `app_dir`, for `tenant`, checked against the model.

    `spec.stopped` and `spec.replicas` are left out on purpose: stop/start and scale own
    them (see kube.STATE_MANAGER, SCALE_MANAGER), so promoting new code into a stopped app
    leaves it stopped, and into a scaled one leaves its replicas (a new App gets 1).
    """
    try:
        check_name("tenant", tenant)
    except ValueError as exc:
        raise PromoteError(str(exc)) from None
    found = folder or read_app_folder(app_dir)
    if found.declared.tenant is not None and found.declared.tenant != tenant:
        raise PromoteError(
            f"{found.path / APP_FILE} declares tenant {found.declared.tenant!r} but you promote "
            f"to tenant {tenant!r}: drop tenant= from aerogrid.App (the cluster sets it)"
        )
    try:
        spec = AppSpec(
            files=found.files,
            runtime_version=runtime or runtime_version(),
            env=[EnvVar(name=k, value=v) for k, v in (env or {}).items()],
            secret_refs=[SecretRef(name=s) for s in secret_refs],
            broker=BrokerRef(
                bootstrap=broker_bootstrap,
                secret_ref=SecretRef(name=broker_secret) if broker_secret else None,
            ),
        )
    except ValidationError as exc:
        raise PromoteError(f"{found.path}: {_validation_message(exc)}") from None
    app = resource(APP_KIND, found.name, spec, namespace=namespace_for(tenant))
    app["metadata"]["labels"] = {APP_LABEL: found.name, TENANT_LABEL: tenant}
    app["spec"].pop("stopped", None)
    app["spec"].pop("replicas", None)
    return app


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


# -- the App in the cluster ---------------------------------------------------------------


PhaseCallback = Callable[[AppState], None]


async def promote(
    kube: Kube,
    app: Mapping[str, Any],
    *,
    wait: bool = False,
    timeout: float = 300.0,
    on_phase: PhaseCallback | None = None,
) -> AppState:
    """Apply `app` (from `build_app`); with `wait`, follow it until it settles.

    Re-promoting the same folder changes nothing (the generation stays, so the status
    already speaks of it); new files bump the generation and the operator rolls them out.
    Raises `PromoteTimeout` when `timeout` passes first, and `KubeError`s as they come.
    """
    namespace = str(app["metadata"]["namespace"])
    try:
        applied = await kube.apply(APPS, app, field_manager=PROMOTE_MANAGER)
    except NotFound as exc:
        tenant = tenant_of(namespace) or namespace
        raise NotFound(
            f"tenant {tenant} is not set up in this cluster ({exc}): "
            f"an admin creates its Tenant resource first"
        ) from None
    state = AppState.from_object(applied)
    if not wait:
        return state
    return await wait_for_app(kube, state, timeout=timeout, on_phase=on_phase)


#: Pauses before following an App again after its watch broke (doubling up to the max).
_RETRY_START_S: Final = 0.5
_RETRY_MAX_S: Final = 5.0
#: Seconds the API server keeps one watch request open (lightkube then asks again).
_WATCH_SECONDS: Final = 60


async def wait_for_app(
    kube: Kube,
    state: AppState,
    *,
    timeout: float = 300.0,
    on_phase: PhaseCallback | None = None,
) -> AppState:
    """Follow an App's status until it settles (see `AppState.settled`), by watching it.

    `on_phase` hears every change of phase or message of the current generation, the
    first one included. A watch that expires (410) is picked up from a fresh get; one the
    API server drops (a restart, a flaky network: `Unreachable`) is retried with backoff
    until the deadline, and the timeout then names the last connection error.
    """
    deadline = time.monotonic() + timeout
    reported: tuple[str, str] | None = None
    last_error: Unreachable | None = None  # what the timeout reports, until a watch works
    backoff = Backoff(initial=_RETRY_START_S, maximum=_RETRY_MAX_S)

    def seen(current: AppState) -> bool:
        nonlocal reported
        if current.current and (current.phase, current.message) != reported:
            reported = (current.phase, current.message)
            if on_phase is not None:
                on_phase(current)
        return current.settled

    while not seen(state):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            phase = state.phase if state.current else "not yet picked up by the operator"
            why = f"; the API server was unreachable: {last_error}" if last_error else ""
            raise PromoteTimeout(
                f"app {state.name} did not settle within {timeout:g}s (last phase: {phase}){why}",
                state,
            )
        try:
            async with asyncio.timeout(remaining):
                async for event in kube.watch(
                    APPS,
                    state.namespace,
                    name=state.name,
                    resource_version=state.resource_version,
                    timeout_seconds=_WATCH_SECONDS,
                ):
                    if event.type == "DELETED":
                        raise PromoteError(f"app {state.name} was deleted while promote waited")
                    last_error = None  # the watch works
                    backoff.reset()
                    state = AppState.from_object(event.object)
                    if seen(state):
                        return state
        except TimeoutError:
            continue  # the deadline: reported at the top
        except Gone:
            pass  # too old a version: pick the App up from a fresh get
        except Unreachable as exc:
            last_error = exc
            await asyncio.sleep(min(backoff.next_delay(), max(0.0, deadline - time.monotonic())))
        try:
            state = await get_app(kube, state.tenant, state.name, namespace=state.namespace)
        except Unreachable as exc:
            last_error = exc
    return state


async def get_app(kube: Kube, tenant: str, name: str, *, namespace: str | None = None) -> AppState:
    """One App's state; `NotFound` says which tenant was looked in."""
    namespace = namespace or namespace_for(tenant)
    try:
        return AppState.from_object(await kube.get(APPS, name, namespace))
    except NotFound:
        raise NotFound(f"no app {name!r} in tenant {tenant} (namespace {namespace})") from None


async def set_stopped(kube: Kube, tenant: str, name: str, stopped: bool) -> AppState:
    """Stop (scale to zero) or start an App: `spec.stopped` by server-side apply."""
    return await _apply_spec_field(kube, tenant, name, {"stopped": stopped}, STATE_MANAGER)


async def set_replicas(kube: Kube, tenant: str, name: str, replicas: int) -> AppState:
    """Scale an App: `spec.replicas` by server-side apply (the operator checks the quota)."""
    return await _apply_spec_field(kube, tenant, name, {"replicas": replicas}, SCALE_MANAGER)


async def _apply_spec_field(
    kube: Kube, tenant: str, name: str, fields: dict[str, Any], manager: str
) -> AppState:
    """Apply `fields` of an App's spec under `manager` alone, so promote's fields stay.

    The App must exist (an apply would otherwise try to create one with no code).
    """
    current = await get_app(kube, tenant, name)
    patch = {
        "apiVersion": API_VERSION,
        "kind": APP_KIND,
        "metadata": {"name": name, "namespace": current.namespace},
        "spec": fields,
    }
    applied = await kube.apply(APPS, patch, field_manager=manager)
    return AppState.from_object(applied)


async def delete_app(kube: Kube, tenant: str, name: str) -> None:
    """Delete an App; its Deployment, Service, routes and code go with it (owner references)."""
    namespace = namespace_for(tenant)
    try:
        await kube.delete(APPS, name, namespace)
    except NotFound:
        raise NotFound(f"no app {name!r} in tenant {tenant} (namespace {namespace})") from None


async def list_apps(kube: Kube, tenant: str | None = None) -> list[AppState]:
    """The Apps of one tenant, or of every tenant the kubeconfig's user may list."""
    namespace = namespace_for(tenant) if tenant is not None else None
    found = await kube.list(APPS, namespace)
    states = [AppState.from_object(item) for item in found.items]
    return sorted(states, key=lambda s: (s.tenant or s.namespace, s.name))
