"""Tenants: a Tenant becomes its namespace, quota, policies and RBAC; its status says Ready.

A tenant is Ready once every object is applied and kube-controller-manager's quota
controller counts what the tenant's ResourceQuota limits (before that, the API server
refuses every App in the namespace).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any, Final

from pydantic import ValidationError

from aerogrid_cloud.kube import APPS, Conflict, Forbidden, Invalid, NotFound, Unreachable
from aerogrid_cloud.model import TenantSpec, TenantStatus, namespace_for
from aerogrid_cloud.operator.status import (
    TENANTS,
    Cluster,
    Transient,
    condition,
    validation_message,
)
from aerogrid_cloud.render import Owner, tenant_objects

__all__ = ["QUOTA_RENEW_SECONDS", "apps_of_tenant", "reconcile_tenant"]

log = logging.getLogger("aerogrid_cloud.operator")

#: How long a tenant's quota may stay uncounted before the operator has it recounted. The quota
#: controller counts a resource it discovered after the quota was made (the App CRD of a fresh
#: install: discovery runs every 30 s) only at its next full resync, 5 minutes by default,
#: while it counts a new quota at once; a real node saw a tenant made right after
#: `platform install` refuse every App for minutes.
QUOTA_RENEW_SECONDS: Final = 40.0


async def reconcile_tenant(cluster: Cluster, name: str) -> dict[str, Any]:
    """Apply a Tenant's objects and write its status; returns the status ({} if gone)."""
    async with cluster.one_pass("Tenant", name, None):
        try:
            # Read it again: a timer's copy may predate the last update.
            obj = await cluster.kube.get(TENANTS, name)
        except NotFound:
            return {}
        status = await _tenant_status(cluster, obj)
        with suppress(NotFound):  # deleted meanwhile
            await cluster.write_status(TENANTS, name, None, obj.get("status"), status)
        return status


async def _tenant_status(cluster: Cluster, obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    name, generation = str(meta["name"]), meta.get("generation")
    previous = (obj.get("status") or {}).get("conditions") or []

    def status(phase: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
        ready = condition("Ready", ok, reason, message, generation, previous)
        return TenantStatus(
            phase=phase,
            namespace=namespace_for(name) if ok else "",
            conditions=[ready],
            observed_generation=generation,
            message=message,
        ).model_dump(by_alias=True, mode="json")

    try:
        spec = TenantSpec.model_validate(obj.get("spec") or {})
        objects = tenant_objects(name, spec, cluster.platform, Owner.of(obj))
    except ValidationError as exc:
        return status("Failed", False, "InvalidSpec", validation_message(exc))
    except ValueError as exc:
        return status("Failed", False, "RenderFailed", str(exc))
    try:
        applied = [await cluster.apply(item) for item in objects]
    except (Invalid, Forbidden) as exc:
        return status("Failed", False, "Rejected", str(exc))
    except (Unreachable, Conflict) as exc:
        raise Transient(str(exc)) from exc
    uncounted = _uncounted(applied)
    if uncounted:
        # The API server refuses every App while the quota has no usage for it.
        message = (
            f"the quota controller has not counted {', '.join(uncounted)} yet: "
            "apps cannot be created until it does"
        )
        try:
            if await _renew_stale_quota(cluster, objects, applied, uncounted):
                message += " (asked to recount the quota)"
        except (Unreachable, Conflict, Invalid, Forbidden) as exc:
            raise Transient(str(exc)) from exc
        return status("Pending", False, "QuotaPending", message)
    return status("Ready", True, "Applied")


async def apps_of_tenant(cluster: Cluster, tenant: str) -> list[dict[str, Any]]:
    try:
        return (await cluster.kube.list(APPS, namespace_for(tenant))).items
    except NotFound:
        return []


def _uncounted(applied: Iterable[Mapping[str, Any]]) -> list[str]:
    """Resources a tenant's ResourceQuota limits but kube-controller-manager has not counted.

    A quota created before the controller has discovered a resource (the App CRD, just
    installed) stays uncounted until its next full resync, minutes later.
    """
    for obj in applied:
        if obj.get("kind") == "ResourceQuota":
            hard = (obj.get("spec") or {}).get("hard") or {}
            used = (obj.get("status") or {}).get("used") or {}
            return sorted(set(hard) - set(used))
    return []


async def _renew_stale_quota(
    cluster: Cluster,
    rendered: Iterable[Mapping[str, Any]],
    applied: Iterable[Mapping[str, Any]],
    uncounted: list[str],
) -> bool:
    """Apply the quota once without what stays uncounted; the next pass puts it back.

    The quota controller recounts a quota whose `spec.hard` changes, with every resource it
    knows by then; it never recounts one that only waits (until its full resync). The
    operator may not delete quotas (least privilege), so it changes `hard` twice instead.
    """
    quotas = [obj for obj in applied if obj.get("kind") == "ResourceQuota"]
    wanted = [obj for obj in rendered if obj.get("kind") == "ResourceQuota"]
    if not quotas or not wanted:
        return False
    meta = quotas[0]["metadata"]
    created = dt.datetime.fromisoformat(str(meta["creationTimestamp"]).replace("Z", "+00:00"))
    age = (dt.datetime.now(dt.UTC) - created).total_seconds()
    if age < QUOTA_RENEW_SECONDS:
        return False
    log.info("quota %s/%s uncounted for %.0f s: recounting", meta["namespace"], meta["name"], age)
    hard = {k: v for k, v in wanted[0]["spec"]["hard"].items() if k not in uncounted}
    await cluster.apply({**wanted[0], "spec": {**wanted[0]["spec"], "hard": hard}})
    return True
