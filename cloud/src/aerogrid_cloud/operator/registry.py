"""kopf's handlers, registered explicitly in one `kopf.OperatorRegistry` per operator.

Tenants and Apps each get create/update/resume handlers and a resync timer; the
ResourceQuotas and Deployments the operator made get event handlers that move their
Tenant or App on (quota counted: Ready; rollout progressed: Running). The handlers are
async: kopf runs each object's changes one at a time, and every pass re-reads its object
and applies what it renders, so a resync that meets a change converges on the same state.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import kopf

from aerogrid_cloud.kube import APPS, KubeError, NotFound
from aerogrid_cloud.model import (
    APP_LABEL,
    APP_PLURAL,
    GROUP,
    MANAGED_BY,
    TENANT_LABEL,
    TENANT_PLURAL,
    VERSION,
)
from aerogrid_cloud.operator.apps import reconcile_app
from aerogrid_cloud.operator.status import TENANTS, Cluster, Transient
from aerogrid_cloud.operator.tenants import apps_of_tenant, reconcile_tenant

__all__ = ["make_registry", "service_account_login"]

log = logging.getLogger("aerogrid_cloud.operator")

#: Seconds before kopf retries a pass that met a transient error (API server away, conflict).
_RETRY_DELAY: Final = 5.0
_CHANGES: Final = (kopf.on.create, kopf.on.update, kopf.on.resume)


def _retrying(what: str, exc: Transient | KubeError) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"{what}: {exc}", delay=_RETRY_DELAY)


def _selected(obj: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    if not labels:
        return True
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _on_changes_and_resync(
    registry: kopf.OperatorRegistry,
    cluster: Cluster,
    plural: str,
    handler_id: str,
    handler: Callable[..., Awaitable[None]],
    labels: dict[str, str] | None,
) -> None:
    """`handler` on each create, update and resume of our resource, and as its resync timer."""
    resource = (GROUP, VERSION, plural)
    for on in _CHANGES:
        on(*resource, registry=registry, labels=labels, id=handler_id)(handler)
    resync = cluster.platform.resync_seconds
    kopf.timer(
        *resource,
        registry=registry,
        labels=labels,
        id=f"{handler_id}-resync",
        interval=resync,
        initial_delay=resync,
    )(handler)


def _register_tenants(
    registry: kopf.OperatorRegistry, cluster: Cluster, labels: dict[str, str] | None
) -> None:
    async def on_tenant(name: str, reason: str = "", **_: Any) -> None:
        try:
            await reconcile_tenant(cluster, name)
            if reason in ("create", "update"):
                # Apps carry their tenant's groups: bring them along now, not at resync.
                for app in await apps_of_tenant(cluster, name):
                    if _selected(app, labels):
                        meta = app["metadata"]
                        await reconcile_app(cluster, meta["name"], meta["namespace"])
        except (Transient, KubeError) as exc:
            raise _retrying("tenant", exc) from exc

    _on_changes_and_resync(registry, cluster, TENANT_PLURAL, "tenant", on_tenant, labels)

    @kopf.on.event(
        "",
        "v1",
        "resourcequotas",
        registry=registry,
        labels={**MANAGED_BY, TENANT_LABEL: kopf.PRESENT},
    )
    async def quota_counted(body: kopf.Body, **_: Any) -> None:
        """A tenant's quota got its usage: the tenant may now be Ready."""
        tenant = ((body.get("metadata") or {}).get("labels") or {}).get(TENANT_LABEL)
        if not tenant:
            return
        try:
            obj = await cluster.kube.get(TENANTS, str(tenant))
        except NotFound:
            return  # the tenant is gone, its namespace with it
        except KubeError as exc:
            log.warning("cannot read Tenant %s: %s", tenant, exc)
            return
        try:
            if _selected(obj, labels) and (obj.get("status") or {}).get("phase") != "Ready":
                await reconcile_tenant(cluster, str(tenant))
        except (Transient, KubeError) as exc:
            log.warning("Tenant %s: %s (the next resync retries)", tenant, exc)


def _register_apps(
    registry: kopf.OperatorRegistry, cluster: Cluster, labels: dict[str, str] | None
) -> None:
    async def on_app(name: str, namespace: str | None, **_: Any) -> None:
        try:
            await reconcile_app(cluster, name, str(namespace))
        except (Transient, KubeError) as exc:
            raise _retrying("app", exc) from exc

    _on_changes_and_resync(registry, cluster, APP_PLURAL, "app", on_app, labels)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        labels={**MANAGED_BY, APP_LABEL: kopf.PRESENT},
    )
    async def rollout_moved(body: kopf.Body, **_: Any) -> None:
        """A Deployment's rollout moved: refresh its App's phase (Deploying → Running)."""
        meta = body.get("metadata") or {}
        name = (meta.get("labels") or {}).get(APP_LABEL)
        namespace = meta.get("namespace")
        if not name or not namespace:
            return
        try:
            app = await cluster.kube.get(APPS, str(name), str(namespace))
        except NotFound:
            return  # the App is gone; the garbage collector takes the rest
        except KubeError as exc:
            log.warning("cannot read App %s/%s: %s", namespace, name, exc)
            return
        if not _selected(app, labels):
            return
        try:
            await reconcile_app(cluster, str(name), str(namespace))
        except (Transient, KubeError) as exc:
            log.warning("App %s/%s: %s (the next resync retries)", namespace, name, exc)


def make_registry(
    cluster: Cluster,
    *,
    selector: Mapping[str, str] | None = None,
    login: kopf.ConnectionInfo | None = None,
) -> kopf.OperatorRegistry:
    """kopf's handlers for Tenants, Apps and the quotas and Deployments the operator made.

    `selector` limits the operator to Tenants and Apps with these labels (tests share one
    API server); `login` gives kopf its credentials (default: the pod's service account).
    """
    registry = kopf.OperatorRegistry()
    labels = dict(selector) if selector else None

    @kopf.on.login(registry=registry)
    def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        if login is not None:
            return login
        return service_account_login(kopf.login_with_service_account(**kwargs), os.environ)

    _register_tenants(registry, cluster, labels)
    _register_apps(registry, cluster, labels)
    return registry


def service_account_login(
    info: kopf.ConnectionInfo | None, environ: Mapping[str, str]
) -> kopf.ConnectionInfo | None:
    """kopf's service-account login, aimed where the kubelet says the API server is.

    kopf names the server ``https://kubernetes.default.svc``, which only cluster DNS resolves;
    client-go and lightkube (the catalog, the operator's own client) use the kubelet's
    KUBERNETES_SERVICE_HOST/PORT, which every pod has. A real node without cluster DNS left
    the operator retrying "Temporary failure in name resolution" forever.
    """
    host = environ.get("KUBERNETES_SERVICE_HOST")
    if info is None or not host:
        return info
    port = environ.get("KUBERNETES_SERVICE_PORT") or "443"
    host = f"[{host}]" if ":" in host else host
    return dataclasses.replace(info, server=f"https://{host}:{port}")
