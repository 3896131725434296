"""The kopf operator: Tenants and Apps in, namespaces, builds and Deployments out.

Reconcile is level-based: every pass renders the wanted objects from the resource as it
is now and applies them with server-side apply (field manager `aerogrid-operator`,
forced), so a pass is idempotent, a restart resumes where it left off (kopf's resume
handlers, then a timer every `resync_seconds`), and anything edited or deleted by hand
comes back. Status is written whole, through the status subresource, only when changed.

kopf keeps its last-handled state in an annotation; an App's spec holds its files, which
can exceed the 256 KiB annotation limit (kopf #1087). `HashedFilesDiffBase` stores the
files as one hash instead, and progress goes to annotations under `aerogrid.io/`, never
into `status` (whose schema is the App's own).

Image builds: a build is needed when requirements.txt lists packages; it is skipped when
the build namespace's `aerogrid-built-images` ConfigMap records its tag (the operator
records a tag when its kaniko Job succeeds: no registry is asked). A Job of the same tag
already running is waited for, not duplicated.

Run it with ``python -m aerogrid_cloud.operator`` (in the cluster: the service account;
elsewhere: --kubeconfig/--context) and ``--liveness URL`` for kopf's health endpoint.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
import kopf
from pydantic import ValidationError

from aerogrid_cloud.kube import (
    APPS,
    Conflict,
    Forbidden,
    Invalid,
    Kube,
    KubeError,
    NotFound,
    Resources,
    ResourceType,
    Unreachable,
    connect,
    in_cluster,
)
from aerogrid_cloud.model import (
    APP_LABEL,
    APP_PLURAL,
    GROUP,
    MANAGED_BY,
    TENANT_LABEL,
    TENANT_PLURAL,
    VERSION,
    AppSpec,
    AppStatus,
    Condition,
    Phase,
    TenantSpec,
    TenantStatus,
    check_name,
    namespace_for,
)
from aerogrid_cloud.render import (
    BUILT_IMAGES,
    FIELD_MANAGER,
    Build,
    Owner,
    app_objects,
    build_for,
    build_objects,
    files_digest,
    resource_type,
    tenant_objects,
    tenant_of,
)
from aerogrid_cloud.settings import PlatformSettings, SettingsError

__all__ = [
    "STORAGE_PREFIX",
    "TENANTS",
    "HashedFilesDiffBase",
    "Reconciler",
    "deployment_phase",
    "kopf_settings",
    "main",
    "make_registry",
    "run",
]

log = logging.getLogger(__name__)

TENANTS: Final = ResourceType(GROUP, VERSION, TENANT_PLURAL, "Tenant", namespaced=False)
_CONFIGMAPS: Final = ResourceType("", "v1", "configmaps", "ConfigMap")
_JOBS: Final = ResourceType("batch", "v1", "jobs", "Job")
#: kopf's annotations (progress, diff base) live under this prefix.
STORAGE_PREFIX: Final = "aerogrid.io"
_MERGE: Final = "application/merge-patch+json"
#: Seconds before kopf retries a pass that met a transient error (API server away, conflict).
_RETRY_DELAY: Final = 5.0


# -- kopf's storage ----------------------------------------------------------------------


class HashedFilesDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled state with `spec.files` replaced by one hash of the files.

    The annotation stays small whatever the files weigh, and a changed file still changes
    the hash, so kopf still sees the update.
    """

    def build(
        self,
        *,
        body: kopf.Body,
        extra_fields: Iterable[kopf.FieldSpec] | None = None,
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        spec = essence.get("spec")
        if isinstance(spec, dict) and isinstance(spec.get("files"), Mapping):
            spec["files"] = "sha256:" + files_digest(spec["files"])
        return essence


def _selector_text(labels: Mapping[str, str | None]) -> str:
    """A label selector: `key=value`, or just `key` for "has this label"."""
    return ",".join(key if value is None else f"{key}={value}" for key, value in labels.items())


def kopf_settings(
    *, scanning: bool = False, selector: Mapping[str, str] | None = None
) -> kopf.OperatorSettings:
    """kopf configured for the platform: small annotations, no status writes, no peering.

    `scanning` lets kopf follow namespaces (needed for namespace patterns; the deployed
    operator serves the whole cluster and has no RBAC to list namespaces or CRDs).
    Watches are filtered by the API server: only the Deployments and quotas the
    operator made, and (with `selector`) only the Tenants and Apps with those labels.
    """
    settings = kopf.OperatorSettings()
    watched = settings.watching.label_selectors
    watched["apps", "v1", "deployments"] = _selector_text({**MANAGED_BY, APP_LABEL: None})
    watched["", "v1", "resourcequotas"] = _selector_text({**MANAGED_BY, TENANT_LABEL: None})
    if selector:
        for plural in (APP_PLURAL, TENANT_PLURAL):
            watched[GROUP, VERSION, plural] = _selector_text(selector)
    settings.persistence.diffbase_storage = HashedFilesDiffBase(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    settings.persistence.finalizer = f"{STORAGE_PREFIX}/operator"
    settings.scanning.disabled = not scanning
    settings.posting.reporting_component = FIELD_MANAGER
    # A watch that went quiet is restarted rather than trusted (kopf #1276): the server ends
    # each watch after this long and kopf's inactivity timeout catches dead connections.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    return settings


# -- status ------------------------------------------------------------------------------


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    previous: Iterable[Mapping[str, Any]],
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status does."""
    status = "Unknown" if ok is None else str(ok)
    since = _now()
    for old in previous:
        if old.get("type") == type_ and old.get("status") == status:
            since = str(old.get("lastTransitionTime") or since)
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal statuses, whatever the timestamps say (they are kept when unchanged anyway)."""

    def strip(status: Mapping[str, Any]) -> Any:
        status = copy.deepcopy(dict(status))
        for condition in status.get("conditions") or []:
            condition.pop("lastTransitionTime", None)
        return status

    return bool(strip(old) == strip(new))


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
class _ImageState:
    ready: bool
    failed: bool = False
    message: str = ""


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


class Transient(Exception):
    """A pass that should be retried soon (the API server away, a write conflict)."""


# -- the reconciler ------------------------------------------------------------------------


@dataclass
class Reconciler:
    """Turns Tenants and Apps into objects; one instance per operator, thread-safe."""

    kube: Kube
    platform: PlatformSettings
    _locks: dict[tuple[str, str, str], threading.Lock] = field(default_factory=dict)
    _locks_guard: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def _lock(self, kind: str, namespace: str, name: str) -> Iterator[None]:
        """One pass at a time per object (a timer and an update may fire together)."""
        with self._locks_guard:
            lock = self._locks.setdefault((kind, namespace, name), threading.Lock())
        with lock:
            yield

    def _apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return Resources(self.kube, resource_type(obj)).apply(
            obj, field_manager=FIELD_MANAGER, force=True
        )

    def _write_status(
        self, rtype: ResourceType, name: str, namespace: str | None, old: Any, new: dict[str, Any]
    ) -> None:
        if isinstance(old, Mapping) and _same(old, new):
            return
        self.kube.request(
            "PATCH",
            rtype.path(namespace, name) + "/status",
            body={"status": new},
            content_type=_MERGE,
            action="update status of",
            resource=rtype,
            namespace=namespace,
        )

    # -- tenants --

    def tenant(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a Tenant's objects and write its status; returns the status."""
        name = str(obj["metadata"]["name"])
        with self._lock("Tenant", "", name):
            # Read it again under the lock: a timer's copy may predate the last update.
            try:
                obj = Resources(self.kube, TENANTS).get(name)
            except NotFound:
                return {}
            status = self._tenant_status(obj)
            with suppress(NotFound):  # deleted meanwhile
                self._write_status(TENANTS, name, None, obj.get("status"), status)
            return status

    def _tenant_status(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        name, generation = str(meta["name"]), meta.get("generation")
        previous = (obj.get("status") or {}).get("conditions") or []

        def status(phase: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
            ready = _condition("Ready", ok, reason, message, generation, previous)
            return TenantStatus(
                phase=phase,
                namespace=namespace_for(name) if ok else "",
                conditions=[ready],
                observed_generation=generation,
                message=message,
            ).model_dump(by_alias=True, mode="json")

        try:
            spec = TenantSpec.model_validate(obj.get("spec") or {})
            objects = tenant_objects(name, spec, self.platform, Owner.of(obj))
        except ValidationError as exc:
            return status("Failed", False, "InvalidSpec", _validation_message(exc))
        except ValueError as exc:
            return status("Failed", False, "RenderFailed", str(exc))
        try:
            applied = [self._apply(item) for item in objects]
        except (Invalid, Forbidden) as exc:
            return status("Failed", False, "Rejected", str(exc))
        except (Unreachable, Conflict) as exc:
            raise Transient(str(exc)) from exc
        uncounted = _uncounted(applied)
        if uncounted:
            # The API server refuses every App while the quota has no usage for it.
            return status(
                "Pending",
                False,
                "QuotaPending",
                f"the quota controller has not counted {', '.join(uncounted)} yet: "
                "apps cannot be created until it does",
            )
        return status("Ready", True, "Applied")

    def apps_of_tenant(self, tenant: str) -> list[dict[str, Any]]:
        try:
            return Resources(self.kube, APPS).list(namespace_for(tenant)).items
        except NotFound:
            return []

    # -- apps --

    def app(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Apply an App's objects (building its image first if needed); returns its status."""
        meta = obj["metadata"]
        name, namespace = str(meta["name"]), str(meta["namespace"])
        with self._lock("App", namespace, name):
            try:
                obj = Resources(self.kube, APPS).get(name, namespace)
            except NotFound:
                return {}
            outcome = self._app_outcome(obj)
            status = self._app_status(obj, outcome)
            with suppress(NotFound):
                self._write_status(APPS, name, namespace, obj.get("status"), status)
            return status

    def _app_status(self, obj: Mapping[str, Any], outcome: _Outcome) -> dict[str, Any]:
        generation = obj["metadata"].get("generation")
        previous = (obj.get("status") or {}).get("conditions") or []
        ready = outcome.phase in (Phase.RUNNING, Phase.STOPPED)
        conditions = [
            _condition("ImageReady", *outcome.image_ready, generation, previous),
            _condition("Available", *outcome.available, generation, previous),
            _condition("Ready", ready, outcome.reason, outcome.message, generation, previous),
        ]
        return AppStatus(
            phase=outcome.phase,
            conditions=conditions,
            observed_generation=generation,
            endpoint=outcome.endpoint,
            image=outcome.image,
            message=outcome.message,
        ).model_dump(by_alias=True, mode="json")

    def _app_outcome(self, obj: Mapping[str, Any]) -> _Outcome:
        meta = obj["metadata"]
        name, namespace = str(meta["name"]), str(meta["namespace"])
        try:
            check_name("App", name)
            spec = AppSpec.model_validate(obj.get("spec") or {})
        except ValidationError as exc:
            return _Outcome(Phase.FAILED, "InvalidSpec", _validation_message(exc))
        except ValueError as exc:
            return _Outcome(Phase.FAILED, "InvalidSpec", str(exc))
        tenant = tenant_of(namespace)
        if tenant is None:
            return _Outcome(
                Phase.FAILED,
                "NotInTenantNamespace",
                f"namespace {namespace} belongs to no tenant: "
                f"apps live in {namespace_for('<tenant>')}",
            )
        try:
            tenant_obj = Resources(self.kube, TENANTS).get(tenant)
        except NotFound:
            return _Outcome(Phase.FAILED, "TenantMissing", f"tenant {tenant} does not exist")
        except (Unreachable, KubeError) as exc:
            raise Transient(str(exc)) from exc
        groups = list((tenant_obj.get("spec") or {}).get("groups") or [])
        endpoint = f"{self.platform.app_host(name, tenant)}:{self.platform.endpoint_port}"
        build = build_for(spec, self.platform)
        image = self.platform.runtime_image_for(spec.runtime_version)
        image_ready: tuple[bool | None, str, str] = (True, "RuntimeImage", image)
        if build is not None:
            image = build.image
            image_ready = (True, "Built", image)
            if spec.stopped and not self._recorded(build):
                image_ready = (None, "NotBuilt", f"{image} is built when the app starts")
            if not spec.stopped:
                state = self._ensure_image(build)
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
                self.platform,
                owner=Owner.of(obj),
                image=image,
                tenant_groups=groups,
            )
        except ValueError as exc:
            return _Outcome(Phase.FAILED, "RenderFailed", str(exc), image=image)
        try:
            applied = [self._apply(item) for item in objects]
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
        )

    # -- builds --

    def _recorded(self, build: Build) -> bool:
        """Whether the build namespace's record says this image was built."""
        try:
            record = Resources(self.kube, _CONFIGMAPS).get(
                BUILT_IMAGES, self.platform.build_namespace
            )
        except NotFound:
            return False
        return bool((record.get("data") or {}).get(build.tag) == build.image)

    def _ensure_image(self, build: Build) -> _ImageState:
        """Whether the build's image exists; starts its kaniko Job when nobody has."""
        ns = self.platform.build_namespace
        if self._recorded(build):
            return _ImageState(ready=True, message=f"{build.image} was built before")
        jobs = Resources(self.kube, _JOBS)
        where = f"job {ns}/{build.job_name}"
        try:
            job = jobs.get(build.job_name, ns)
        except NotFound:
            context, job_obj = build_objects(build, self.platform)
            self._apply(context)
            job = self._apply(job_obj)
            # Now that the Job exists, it owns its context: both go when its TTL ends.
            owned, _ = build_objects(build, self.platform, job_uid=job["metadata"]["uid"])
            self._apply(owned)
            return _ImageState(ready=False, message=f"building {build.image} ({where})")
        status = job.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        if _true(conditions.get("Complete")) or int(status.get("succeeded") or 0) > 0:
            self._record(build)
            return _ImageState(ready=True, message=f"built {build.image}")
        failed = conditions.get("Failed")
        if _true(failed):
            assert failed is not None
            reason = f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": ")
            return _ImageState(
                ready=False,
                failed=True,
                message=f"building {build.image} failed ({where}) {reason}",
            )
        return _ImageState(ready=False, message=f"building {build.image} ({where})")

    def _record(self, build: Build) -> None:
        """Add a built tag to the record (a merge patch: other tags stay)."""
        ns = self.platform.build_namespace
        rtype = _CONFIGMAPS
        body = {"data": {build.tag: build.image}}
        try:
            self.kube.request(
                "PATCH",
                rtype.path(ns, BUILT_IMAGES),
                body=body,
                content_type=_MERGE,
                action="record a build in",
                resource=rtype,
                namespace=ns,
            )
        except NotFound:
            self.kube.request(
                "POST",
                rtype.path(ns),
                body={
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": BUILT_IMAGES, "namespace": ns, "labels": dict(MANAGED_BY)},
                    **body,
                },
                action="create",
                resource=rtype,
                namespace=ns,
            )


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


def _true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'spec'}: {error['msg']}"
        for error in exc.errors()
    )


# -- kopf handlers -------------------------------------------------------------------------


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


def _retrying(fn_name: str, exc: Transient | KubeError) -> kopf.TemporaryError:
    return kopf.TemporaryError(f"{fn_name}: {exc}", delay=_RETRY_DELAY)


def make_registry(
    reconciler: Reconciler,
    *,
    selector: Mapping[str, str] | None = None,
    login: kopf.ConnectionInfo | None = None,
) -> kopf.OperatorRegistry:
    """kopf's handlers for Tenants, Apps and the Deployments the operator made.

    `selector` limits the operator to Tenants and Apps with these labels (tests share one
    API server); `login` gives kopf its credentials (default: the pod's service account).
    """
    registry = kopf.OperatorRegistry()
    labels = dict(selector) if selector else None
    resync = reconciler.platform.resync_seconds

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo | None:
        if login is not None:
            return login
        return kopf.login_with_service_account(**_)

    def on_tenant(body: kopf.Body, reason: str = "", **_: Any) -> None:
        obj = _plain(body)
        try:
            reconciler.tenant(obj)
            if reason in ("create", "update"):
                # Apps carry their tenant's groups: bring them along now, not at resync.
                for app in reconciler.apps_of_tenant(str(obj["metadata"]["name"])):
                    if _selected(app, labels):
                        reconciler.app(app)
        except (Transient, KubeError) as exc:
            raise _retrying("tenant", exc) from exc

    def on_app(body: kopf.Body, **_: Any) -> None:
        try:
            reconciler.app(_plain(body))
        except (Transient, KubeError) as exc:
            raise _retrying("app", exc) from exc

    for decorate in (kopf.on.create, kopf.on.update, kopf.on.resume):
        decorate(GROUP, VERSION, TENANT_PLURAL, registry=registry, labels=labels, id="tenant")(
            on_tenant
        )
        decorate(GROUP, VERSION, APP_PLURAL, registry=registry, labels=labels, id="app")(on_app)
    kopf.timer(
        GROUP,
        VERSION,
        TENANT_PLURAL,
        registry=registry,
        labels=labels,
        id="tenant-resync",
        interval=resync,
        initial_delay=resync,
    )(on_tenant)
    kopf.timer(
        GROUP,
        VERSION,
        APP_PLURAL,
        registry=registry,
        labels=labels,
        id="app-resync",
        interval=resync,
        initial_delay=resync,
    )(on_app)

    @kopf.on.event(
        "",
        "v1",
        "resourcequotas",
        registry=registry,
        labels={**MANAGED_BY, TENANT_LABEL: kopf.PRESENT},
    )
    def _quota(body: kopf.Body, **_: Any) -> None:
        """A tenant's quota got its usage: the tenant may now be Ready."""
        tenant = ((body.get("metadata") or {}).get("labels") or {}).get(TENANT_LABEL)
        if not tenant:
            return
        try:
            obj = Resources(reconciler.kube, TENANTS).get(str(tenant))
        except NotFound:
            return  # the tenant is gone, its namespace with it
        except KubeError as exc:
            log.warning("cannot read Tenant %s: %s", tenant, exc)
            return
        try:
            if _selected(obj, labels) and (obj.get("status") or {}).get("phase") != "Ready":
                reconciler.tenant(obj)
        except (Transient, KubeError) as exc:
            log.warning("Tenant %s: %s (the next resync retries)", tenant, exc)

    @kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        labels={**MANAGED_BY, APP_LABEL: kopf.PRESENT},
    )
    def _deployment(body: kopf.Body, **_: Any) -> None:
        """A Deployment's rollout moved: refresh its App's phase (Deploying → Running)."""
        meta = body.get("metadata") or {}
        name = (meta.get("labels") or {}).get(APP_LABEL)
        namespace = meta.get("namespace")
        if not name or not namespace:
            return
        try:
            app = Resources(reconciler.kube, APPS).get(str(name), str(namespace))
        except NotFound:
            return  # the App is gone; the garbage collector takes the rest
        except KubeError as exc:
            log.warning("cannot read App %s/%s: %s", namespace, name, exc)
            return
        if not _selected(app, labels):
            return
        try:
            reconciler.app(app)
        except (Transient, KubeError) as exc:
            log.warning("App %s/%s: %s (the next resync retries)", namespace, name, exc)

    return registry


def _selected(obj: Mapping[str, Any], labels: Mapping[str, str] | None) -> bool:
    if not labels:
        return True
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """kopf's credentials from a `Kube` client's configuration (kubeconfig logins)."""
    config = kube.api.configuration
    api_key: dict[str, str] = dict(getattr(config, "api_key", None) or {})
    prefixes: dict[str, str] = dict(getattr(config, "api_key_prefix", None) or {})
    token = api_key.get("BearerToken") or api_key.get("authorization")
    scheme = prefixes.get("BearerToken") or prefixes.get("authorization")
    if token and " " in token and scheme is None:
        scheme, token = token.split(" ", 1)
    return kopf.ConnectionInfo(
        server=str(config.host),
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        scheme=scheme if token else None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


async def run(
    kube: Kube,
    platform: PlatformSettings,
    *,
    login: kopf.ConnectionInfo | None = None,
    selector: Mapping[str, str] | None = None,
    namespaces: Iterable[str] = (),
    liveness: str | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the operator until `stop_flag` is set (the whole cluster unless `namespaces`)."""
    patterns = list(namespaces)
    registry = make_registry(Reconciler(kube, platform), selector=selector, login=login)
    await kopf.operator(
        registry=registry,
        settings=kopf_settings(scanning=bool(patterns), selector=selector),
        standalone=True,
        clusterwide=not patterns,
        namespaces=patterns,
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


@click.command()
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--context", help="A kubeconfig context (default: in-cluster, else current).")
@click.option(
    "--liveness", help="Serve kopf's health at this URL, e.g. http://0.0.0.0:8080/healthz"
)
@click.option("--namespace", "namespaces", multiple=True, help="Only these namespaces (globs).")
@click.option("--log-level", default="INFO", show_default=True)
def main(
    settings_file: Path | None,
    kubeconfig: Path | None,
    context: str | None,
    liveness: str | None,
    namespaces: tuple[str, ...],
    log_level: str,
) -> None:
    """Run the AeroGrid operator."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        platform = PlatformSettings.load(settings_file)
        inside = kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
        kube = in_cluster() if inside else connect(kubeconfig, context)
    except (SettingsError, KubeError) as exc:
        raise click.ClickException(str(exc)) from None
    login = None if inside else connection_info(kube)
    asyncio.run(run(kube, platform, login=login, namespaces=namespaces, liveness=liveness))


if __name__ == "__main__":
    main()
