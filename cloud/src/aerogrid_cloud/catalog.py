"""The in-cluster catalog: the cluster's Apps as the runtime's CatalogService, per tenant.

Excel is configured with one cloud endpoint; behind it, this service answers ListApps and
WatchApps from the App resources the operator reconciles, showing each caller only the
apps of its tenants (the runtime's `Authenticator`: static tokens, or OIDC JWTs whose
groups are in a Tenant's `spec.groups` as it is now, or name a tenant). An open WatchApps
stream follows the Tenants too: a group added to or removed from a Tenant shows or removes
that tenant's apps on it, as any other change does. An App's tenant is its namespace's
(`namespace_for` backwards), never a label a developer could write. Grids are not served
here: each app serves its own, reached through the gateway, so ListGrids and Subscribe
answer NOT_FOUND saying where.

The Apps and the Tenants are each read by one list+watch (`catalog_watch`), tasks on the
serving event loop, and kept in memory; a watch that expires (410 Gone) or breaks is
replaced by a fresh list, so the cache never drifts.

    python -m aerogrid_cloud.catalog --port 50051 --http-port 8080
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import click

from aerogrid import metrics
from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import Caller
from aerogrid.server.listeners import Listeners, start_listeners
from aerogrid.v1 import catalog_pb2, grid_pb2
from aerogrid_cloud.catalog_tenants import TenantGroups
from aerogrid_cloud.catalog_watch import ResourceWatcher
from aerogrid_cloud.kube import APPS, TENANTS, Kube, KubeError, connect, in_cluster
from aerogrid_cloud.model import AppState, Phase

__all__ = [
    "CatalogServer",
    "ClusterCatalog",
    "app_info",
    "catalog_auth_settings",
    "main",
    "start_server",
]

log = logging.getLogger("aerogrid.catalog")

_STATUS: Final[Mapping[str, catalog_pb2.AppStatus.ValueType]] = {
    Phase.PENDING: catalog_pb2.APP_STATUS_STARTING,
    Phase.BUILDING: catalog_pb2.APP_STATUS_STARTING,
    Phase.DEPLOYING: catalog_pb2.APP_STATUS_STARTING,
    Phase.RUNNING: catalog_pb2.APP_STATUS_RUNNING,
    Phase.STOPPED: catalog_pb2.APP_STATUS_STOPPED,
    Phase.FAILED: catalog_pb2.APP_STATUS_FAILED,
}
#: A key of the cache: (tenant, app name). Two tenants may both have an app "orders".
_Key = tuple[str, str]


def app_info(state: AppState) -> catalog_pb2.AppInfo:
    """What a client is told about an App: its status from the operator's phase."""
    return catalog_pb2.AppInfo(
        name=state.name,
        tenant=state.tenant,
        status=_STATUS.get(state.phase, catalog_pb2.APP_STATUS_UNSPECIFIED),
        endpoint=state.endpoint,
        message=state.message,
    )


# -- the service ----------------------------------------------------------------------------


class ClusterCatalog:
    """A `ServiceAPI` whose catalog is the cluster's Apps, filtered by the caller's tenants.

    `start()` begins following the cluster (from the running event loop); `close()` stops
    it and ends every WatchApps stream with UNAVAILABLE.
    """

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str | None = None,
        watch_seconds: int = 60,
    ) -> None:
        self._apps: dict[_Key, catalog_pb2.AppInfo] = {}
        self._changed = asyncio.Event()
        #: Set once the first lists of both Apps and Tenants are in.
        self._loaded = asyncio.Event()
        self._listed: set[str] = set()
        self._closed = False
        self._unknown_namespaces: set[str] = set()
        #: Called (synchronously) on every change: a list, an App's, a Tenant's, the close.
        self.on_change: Callable[[], None] | None = None
        self.watcher = ResourceWatcher(
            kube,
            APPS,
            on_reset=self._reset,
            on_upsert=self._upsert,
            on_delete=self._delete,
            namespace=namespace,
            watch_seconds=watch_seconds,
        )
        #: Which tenants each IdP group belongs to, as the Tenants say now.
        self.tenant_groups = TenantGroups()
        self.tenant_watcher = ResourceWatcher(
            kube,
            TENANTS,
            on_reset=self._reset_tenants,
            on_upsert=self._upsert_tenant,
            on_delete=self._delete_tenant,
            watch_seconds=watch_seconds,
        )

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        self.watcher.start()
        self.tenant_watcher.start()

    async def wait_synced(self, timeout: float) -> bool:
        """Whether the first lists are in the cache within `timeout` seconds."""
        try:
            await asyncio.wait_for(self._loaded.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def last_error(self) -> str:
        """Why the Apps or the Tenants cannot be followed now ("" when both can)."""
        return self.watcher.last_error or self.tenant_watcher.last_error

    def tenants_of_group(self, group: str) -> frozenset[str]:
        """The tenants listing IdP group `group` in their spec.groups (for the Authenticator)."""
        return self.tenant_groups.tenants_of(group)

    async def close(self) -> None:
        self._closed = True
        await self.watcher.stop()
        await self.tenant_watcher.stop()
        self._notify()

    def is_ready(self) -> bool:
        """Once the Apps and Tenants are listed; it stays ready while the API server is away.

        A control-plane upgrade takes the API server away for minutes on managed clusters,
        and the apps keep running meanwhile: the last known lists serve Excel better than
        no catalog at all. The watchers relist as soon as the API server is back.
        """
        return not self._closed and self._loaded.is_set()

    def _mark_listed(self, what: str) -> None:
        self._listed.add(what)
        if self._listed >= {"apps", "tenants"}:
            self._loaded.set()

    # -- the cache -------------------------------------------------------------------------

    def _key(self, state: AppState) -> _Key | None:
        if not state.tenant:
            if state.namespace not in self._unknown_namespaces:
                self._unknown_namespaces.add(state.namespace)
                log.warning(
                    "catalog: ignoring Apps in namespace %s: it is no tenant's", state.namespace
                )
            return None
        return (state.tenant, state.name)

    def _reset(self, objects: list[dict[str, Any]]) -> None:
        apps = {}
        for state in map(AppState.from_object, objects):
            key = self._key(state)
            if key is not None:
                apps[key] = app_info(state)
        self._apps = apps
        self._mark_listed("apps")
        self._notify()

    def _reset_tenants(self, objects: list[dict[str, Any]]) -> None:
        self.tenant_groups.reset(objects)
        self._mark_listed("tenants")
        self._notify()  # readiness, and what open streams' callers may see, may have changed

    def _upsert_tenant(self, obj: dict[str, Any]) -> None:
        self.tenant_groups.upsert(obj)
        self._notify()  # its groups may have changed: open streams look again

    def _delete_tenant(self, obj: dict[str, Any]) -> None:
        self.tenant_groups.delete(obj)
        self._notify()

    def _upsert(self, obj: dict[str, Any]) -> None:
        state = AppState.from_object(obj)
        key = self._key(state)
        if key is not None:
            self._apps[key] = app_info(state)
            self._notify()

    def _delete(self, obj: dict[str, Any]) -> None:
        key = self._key(AppState.from_object(obj))
        if key is not None and self._apps.pop(key, None) is not None:
            self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self.on_change is not None:
            self.on_change()

    def _visible(self, caller: Caller) -> dict[_Key, catalog_pb2.AppInfo]:
        """The apps `caller` may see now: its tenants as the Tenants say at this moment."""
        now = caller.current()
        return {key: info for key, info in sorted(self._apps.items()) if now.may_see(key[0])}

    # -- CatalogService ------------------------------------------------------------------

    async def list_apps(
        self, request: catalog_pb2.ListAppsRequest, caller: Caller
    ) -> catalog_pb2.ListAppsResponse:
        self._check_serving()
        return catalog_pb2.ListAppsResponse(apps=list(self._visible(caller).values()))

    async def watch_apps(
        self, request: catalog_pb2.WatchAppsRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        """The visible apps, then what changed: updated AppInfos and removed names.

        What is visible is asked again at each change, the Tenants' included: apps of a
        tenant the caller joins come as new ones, those of a tenant it leaves as removed.
        A caller of several tenants may see two apps of one name; a name is reported
        removed only when no visible app has it any more (clients key apps by name).
        """
        self._check_serving()
        changed = self._changed
        current = self._visible(caller)
        sent = {key: info.SerializeToString(deterministic=True) for key, info in current.items()}
        yield catalog_pb2.WatchAppsResponse(
            apps=list(current.values()), initial=True
        ).SerializeToString()
        while not self._closed:
            await changed.wait()
            changed = self._changed
            current = self._visible(caller)
            shapes = {k: info.SerializeToString(deterministic=True) for k, info in current.items()}
            names = {name for _, name in current}
            gone = {key for key in sent if key not in current}
            updated = [
                info
                for key, info in current.items()
                if sent.get(key) != shapes[key]
                or any(g[1] == key[1] for g in gone)  # the other app of a shared name stays
            ]
            removed = sorted({name for _, name in gone if name not in names})
            sent = shapes
            if updated or removed:
                yield catalog_pb2.WatchAppsResponse(
                    apps=updated, removed=removed
                ).SerializeToString()
        raise ServiceError(Code.UNAVAILABLE, "the catalog is stopping: call again")

    def _check_serving(self) -> None:
        if self._closed:
            raise ServiceError(Code.UNAVAILABLE, "the catalog is stopping: call again")
        if not self._loaded.is_set():
            raise ServiceError(
                Code.UNAVAILABLE,
                "the catalog has not read the cluster's apps and tenants yet: call again shortly",
            )

    # -- GridService: not here ----------------------------------------------------------

    def _where(self, app: str, caller: Caller) -> str:
        """Where app `app`'s grids are, for the caller; NOT_FOUND alike for unknown and hidden."""
        matches = [(key, info) for key, info in self._visible(caller).items() if key[1] == app]
        if not matches:
            if app and any(name == app for _, name in self._apps):
                metrics.AUTH_FAILURES.labels("cross_tenant").inc()
            known = sorted({name for _, name in self._visible(caller)})
            return (
                f"no app named {app!r} among your tenants' apps "
                f"(apps: {', '.join(known) or 'none'})"
            )
        (tenant, _), info = matches[0]
        at = f"at {info.endpoint}, or " if info.endpoint else ""
        return (
            f"this is the cluster's catalog; app {app!r} serves its own grids: call it {at}"
            f"through this endpoint with the headers {APP_HEADER}: {app} and "
            f"{TENANT_HEADER}: {tenant}"
        )

    async def list_grids(
        self, request: grid_pb2.ListGridsRequest, caller: Caller
    ) -> grid_pb2.ListGridsResponse:
        self._check_serving()
        if not request.app:
            raise ServiceError(
                Code.NOT_FOUND,
                "this is the cluster's catalog: it lists apps (ListApps); each app serves "
                f"its own grids, reached with the headers {APP_HEADER} and {TENANT_HEADER}",
            )
        raise ServiceError(Code.NOT_FOUND, self._where(request.app, caller))

    async def subscribe(
        self, request: grid_pb2.SubscribeRequest, caller: Caller
    ) -> AsyncGenerator[bytes, None]:
        self._check_serving()
        raise ServiceError(Code.NOT_FOUND, self._where(request.app, caller))
        yield b""  # pragma: no cover - makes this an async generator, as the protocol says


# -- serving ----------------------------------------------------------------------------------


@dataclass
class CatalogServer:
    """A running catalog: its gRPC server and its HTTP (Connect, gRPC-Web, probes) server."""

    catalog: ClusterCatalog
    listeners: Listeners

    @property
    def grpc_port(self) -> int:
        return self.listeners.grpc_port

    @property
    def http_port(self) -> int:
        return self.listeners.http_port

    async def stop(self) -> None:
        await self.catalog.close()
        await self.listeners.stop()


async def start_server(
    catalog: ClusterCatalog,
    authenticator: Authenticator,
    *,
    host: str = "0.0.0.0",
    port: int = 50051,
    http_port: int = 8080,
    peer_is_loopback: Callable[[str], bool] = is_loopback,
) -> CatalogServer:
    """Serve `catalog` over native gRPC on `port` and Connect/gRPC-Web on `http_port`.

    `/healthz` answers while the process runs; `/readyz` once the Apps are listed and the
    API server was heard from lately, and so does gRPC health ("" and the services; its
    "liveness" serves throughout). Port 0 picks a free port (see the returned ports).
    """
    await catalog.start()
    try:
        listeners = await start_listeners(
            catalog,
            authenticator,
            host=host,
            port=port,
            http_port=http_port,
            is_ready=catalog.is_ready,
            is_loopback=peer_is_loopback,
        )
    except OSError:
        await catalog.close()
        raise
    catalog.on_change = listeners.health.notify
    listeners.health.notify()  # in case the Apps were listed while the listeners started
    return CatalogServer(catalog, listeners)


def catalog_auth_settings(environ: Mapping[str, str] | None = None) -> AuthSettings:
    """The runtime's AEROGRID_* auth settings, with anonymous loopback off by default.

    In a pod behind an Istio sidecar every peer is loopback (the proxy), so the runtime's
    "no token needed on loopback" would let anyone in: the catalog needs
    AEROGRID_REQUIRE_AUTH=0 said out loud to allow that (a desktop test, say).
    """
    env = os.environ if environ is None else environ
    settings = AuthSettings.from_env(env)
    if not env.get("AEROGRID_REQUIRE_AUTH", "").strip():
        settings = replace(settings, allow_anonymous_loopback=False)
    return settings


def _kube(kubeconfig: Path | None, context: str | None) -> Kube:
    """In a pod: its service account; elsewhere: a kubeconfig."""
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    return connect(kubeconfig, context)


async def _serve(
    kube: Kube, settings: AuthSettings, host: str, port: int, http_port: int, namespace: str | None
) -> int:
    catalog = ClusterCatalog(kube, namespace=namespace)
    authenticator = Authenticator(settings, tenants_of_group=catalog.tenants_of_group)
    server = await start_server(catalog, authenticator, host=host, port=port, http_port=http_port)
    log.info(
        "catalog: gRPC on %s:%d, HTTP (Connect, gRPC-Web, health) on %s:%d, following %s",
        host,
        server.grpc_port,
        host,
        server.http_port,
        f"namespace {namespace}" if namespace else "every namespace",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not await catalog.wait_synced(30):
            log.warning(
                "catalog: no App and Tenant lists after 30s (%s); still trying",
                catalog.last_error,
            )
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.stop()
        await kube.close()
    log.info("catalog stopped")
    return 0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to serve on.")
@click.option("--port", default=50051, show_default=True, help="gRPC port.")
@click.option(
    "--http-port", default=8080, show_default=True, help="Connect, gRPC-Web, /healthz, /readyz."
)
@click.option(
    "--namespace", help="Follow the Apps of one namespace only [default: every namespace]."
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Outside a pod: the kubeconfig [default: $KUBECONFIG, ~/.kube/config].",
)
@click.option("--context", help="Outside a pod: the kubeconfig context.")
@click.option("--log-level", default="INFO", show_default=True)
def main(
    host: str,
    port: int,
    http_port: int,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    log_level: str,
) -> None:
    """The in-cluster catalog: the cluster's Apps for Excel and other clients, per tenant.

    Callers authenticate as with `aerogrid run` (AEROGRID_OIDC_ISSUER, _AUDIENCE,
    _JWKS_URL or _JWKS_FILE, AEROGRID_GROUP_TENANTS, AEROGRID_AUTH_TOKENS_FILE), and a
    JWT's groups also count for every Tenant listing them in spec.groups; anonymous
    callers are refused, loopback ones too unless AEROGRID_REQUIRE_AUTH=0.
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = catalog_auth_settings()
        kube = _kube(kubeconfig, context)
    except (ValueError, KubeError) as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    try:
        code = asyncio.run(_serve(kube, settings, host, port, http_port, namespace))
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
