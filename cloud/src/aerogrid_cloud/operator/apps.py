"""Apps: an App becomes its image (built if needed), Deployment, Service and routes.

Each pass renders the wanted objects from the App as it is now and applies them; the
App's phase then comes from its Deployment's rollout (`deployment_phase`). An App asking
for more replicas than its tenant allows is refused before anything is applied, so its
running replicas stay as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from aerogrid_cloud.kube import (
    APPS,
    Conflict,
    Forbidden,
    Invalid,
    KubeError,
    NotFound,
    Unreachable,
)
from aerogrid_cloud.model import (
    AppSpec,
    AppStatus,
    Phase,
    Quotas,
    check_name,
    namespace_for,
)
from aerogrid_cloud.operator.builds import ensure_image, recorded
from aerogrid_cloud.operator.status import (
    TENANTS,
    Cluster,
    Transient,
    condition,
    validation_message,
)
from aerogrid_cloud.render import Owner, app_objects, build_for, tenant_of

__all__ = ["deployment_phase", "reconcile_app"]


def deployment_phase(deployment: Mapping[str, Any], wanted: int) -> tuple[Phase, str, str]:
    """An app's phase from its Deployment: (phase, reason, message).

    Running needs the Deployment's controller to have seen this generation and every
    wanted replica updated and available; a ReplicaFailure (quota, limits, admission) or
    an exceeded progress deadline is Failed with the controller's own message.
    """
    meta = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    failure = conditions.get("ReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return Phase.FAILED, "ReplicaFailure", str(failure.get("message", ""))
    progressing = conditions.get("Progressing")
    if (
        progressing is not None
        and progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    ):
        return Phase.FAILED, "ProgressDeadlineExceeded", str(progressing.get("message", ""))
    if wanted == 0:
        return Phase.STOPPED, "Stopped", "scaled to zero"
    seen = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    available = int(status.get("availableReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    if seen and updated == wanted and available >= wanted and total == wanted:
        return Phase.RUNNING, "Available", f"{available}/{wanted} replicas available"
    return Phase.DEPLOYING, "Rollout", f"{available}/{wanted} replicas available"


@dataclass
class _Outcome:
    """One pass's verdict on an App, before it is written as status."""

    phase: Phase
    reason: str
    message: str = ""
    image: str = ""
    endpoint: str = ""
    image_ready: tuple[bool | None, str, str] = (None, "Pending", "")
    available: tuple[bool | None, str, str] = (None, "Pending", "")
    #: Replicas the Deployment should run, and how many of its pods are ready.
    replicas: int = 0
    ready_replicas: int = 0


async def reconcile_app(cluster: Cluster, name: str, namespace: str) -> dict[str, Any]:
    """Apply an App's objects (building its image first if needed); returns its status."""
    async with cluster.one_pass("App", name, namespace):
        try:
            # Read it again: a timer's or an event's copy may predate the last update.
            obj = await cluster.kube.get(APPS, name, namespace)
        except NotFound:
            return {}
        outcome = await _outcome(cluster, obj)
        status = _status(obj, outcome)
        with suppress(NotFound):
            await cluster.write_status(APPS, name, namespace, obj.get("status"), status)
        return status


def _status(obj: Mapping[str, Any], outcome: _Outcome) -> dict[str, Any]:
    generation = obj["metadata"].get("generation")
    previous = (obj.get("status") or {}).get("conditions") or []
    ready = outcome.phase in (Phase.RUNNING, Phase.STOPPED)
    conditions = [
        condition("ImageReady", *outcome.image_ready, generation, previous),
        condition("Available", *outcome.available, generation, previous),
        condition("Ready", ready, outcome.reason, outcome.message, generation, previous),
    ]
    return AppStatus(
        phase=outcome.phase,
        conditions=conditions,
        observed_generation=generation,
        endpoint=outcome.endpoint,
        image=outcome.image,
        message=outcome.message,
        replicas=outcome.replicas,
        ready_replicas=outcome.ready_replicas,
    ).model_dump(by_alias=True, mode="json")


async def _outcome(cluster: Cluster, obj: Mapping[str, Any]) -> _Outcome:
    meta = obj["metadata"]
    name, namespace = str(meta["name"]), str(meta["namespace"])
    platform = cluster.platform
    try:
        check_name("App", name)
        spec = AppSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        return _Outcome(Phase.FAILED, "InvalidSpec", validation_message(exc))
    except ValueError as exc:
        return _Outcome(Phase.FAILED, "InvalidSpec", str(exc))
    tenant = tenant_of(namespace)
    if tenant is None:
        return _Outcome(
            Phase.FAILED,
            "NotInTenantNamespace",
            f"namespace {namespace} belongs to no tenant: apps live in {namespace_for('<tenant>')}",
        )
    try:
        tenant_obj = await cluster.kube.get(TENANTS, tenant)
    except NotFound:
        return _Outcome(Phase.FAILED, "TenantMissing", f"tenant {tenant} does not exist")
    except KubeError as exc:
        raise Transient(str(exc)) from exc
    tenant_spec = tenant_obj.get("spec") or {}
    groups = list(tenant_spec.get("groups") or [])
    over = _over_quota(tenant, tenant_spec, spec)
    if over is not None:
        return over
    endpoint = f"{platform.app_host(name, tenant)}:{platform.endpoint_port}"
    build = build_for(spec, platform)
    image = platform.runtime_image_for(spec.runtime_version)
    image_ready: tuple[bool | None, str, str] = (True, "RuntimeImage", image)
    if build is not None:
        image = build.image
        image_ready = (True, "Built", image)
        if spec.stopped and not await recorded(cluster, build):
            image_ready = (None, "NotBuilt", f"{image} is built when the app starts")
        if not spec.stopped:
            state = await ensure_image(cluster, build)
            if state.failed:
                return _Outcome(
                    Phase.FAILED,
                    "BuildFailed",
                    state.message,
                    image=image,
                    image_ready=(False, "BuildFailed", state.message),
                )
            if not state.ready:
                return _Outcome(
                    Phase.BUILDING,
                    "Building",
                    state.message,
                    image=image,
                    endpoint=endpoint,
                    image_ready=(False, "Building", state.message),
                )
    try:
        objects = app_objects(
            name,
            namespace,
            spec,
            platform,
            owner=Owner.of(obj),
            image=image,
            tenant_groups=groups,
        )
    except ValueError as exc:
        return _Outcome(Phase.FAILED, "RenderFailed", str(exc), image=image)
    try:
        applied = [await cluster.apply(item) for item in objects]
    except (Invalid, Forbidden, NotFound) as exc:
        return _Outcome(Phase.FAILED, "Rejected", str(exc), image=image)
    except (Unreachable, Conflict) as exc:
        raise Transient(str(exc)) from exc
    deployment = next(item for item in applied if item.get("kind") == "Deployment")
    wanted = 0 if spec.stopped else spec.replicas
    phase, reason, message = deployment_phase(deployment, wanted)
    return _Outcome(
        phase,
        reason,
        message,
        image=image,
        endpoint=endpoint,
        image_ready=image_ready,
        available=(phase is Phase.RUNNING, reason, message),
        replicas=wanted,
        ready_replicas=int((deployment.get("status") or {}).get("readyReplicas") or 0),
    )


def _over_quota(tenant: str, tenant_spec: Mapping[str, Any], spec: AppSpec) -> _Outcome | None:
    """A Failed outcome when the App asks for more replicas than its tenant allows.

    Checked whether or not the App is stopped, so starting it later cannot fail on it.
    """
    try:
        quotas = Quotas.model_validate(tenant_spec.get("quotas") or {})
    except ValidationError as exc:
        message = f"tenant {tenant}'s quotas are invalid: {validation_message(exc)}"
        return _Outcome(Phase.FAILED, "TenantInvalid", message)
    allowed = quotas.max_replicas_per_app
    if spec.replicas <= allowed:
        return None
    return _Outcome(
        Phase.FAILED,
        "ReplicasOverQuota",
        f"spec.replicas {spec.replicas} is above tenant {tenant}'s quota of {allowed} "
        "replicas per app (the Tenant's spec.quotas.maxReplicasPerApp); nothing was "
        "changed: the app runs as it did before",
    )
