"""The platform's resources, `aerogrid.io/v1alpha1` App and Tenant, as typed models.

The CRDs' OpenAPI schemas, the operator, the catalog and the promote client all read and
write these shapes; the models are the one place they are spelled out. Field names are
the resources' own (camelCase), so `model_dump(by_alias=True)` is a valid spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

GROUP = "aerogrid.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
APP_KIND, APP_PLURAL = "App", "apps"
TENANT_KIND, TENANT_PLURAL = "Tenant", "tenants"

#: Every object the platform makes carries these labels (and the app/tenant ones below).
MANAGED_BY = {"app.kubernetes.io/managed-by": "aerogrid"}
APP_LABEL = "aerogrid.io/app"
TENANT_LABEL = "aerogrid.io/tenant"

#: An App's files live in a ConfigMap, which the API server caps at 1 MiB in all; keep
#: room for the object's metadata.
MAX_FILES_BYTES = 900 * 1024
#: The most replicas any App may ask for: the schema's bound (a tenant's quota,
#: `Quotas.max_replicas_per_app`, is at most this and usually lower).
MAX_REPLICAS: Final = 20
#: A tenant's replicas per app when its Tenant does not say.
DEFAULT_REPLICAS_PER_APP: Final = 3
#: A Kubernetes DNS label (names of apps, tenants, namespaces).
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: File names inside an app: no folders, nothing hidden, what a ConfigMap key accepts.
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][-._A-Za-z0-9]{0,252}$")


def namespace_for(tenant: str) -> str:
    """The namespace the operator makes for a tenant (its apps live there)."""
    return f"aerogrid-{tenant}"


def tenant_of(namespace: str) -> str | None:
    """The tenant whose namespace this is (`namespace_for` backwards), or None."""
    prefix = namespace_for("")
    if not namespace.startswith(prefix):
        return None
    try:
        return check_name("tenant", namespace[len(prefix) :])
    except ValueError:
        return None


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


# -- App ---------------------------------------------------------------------------------


class EnvVar(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: str = ""


class SecretRef(_Model):
    """A Secret in the app's namespace whose keys become environment variables."""

    name: Annotated[str, Field(min_length=1, max_length=253)]


class BrokerRef(_Model):
    """How the app reaches Kafka: a bootstrap, or a Secret with everything.

    The Secret holds what `aerogrid run` reads from its environment (AEROGRID_BROKER as a
    URI with TLS/SASL, AEROGRID_SASL_USERNAME, AEROGRID_SASL_PASSWORD, CA files as
    keys). With a Secret the bootstrap is not used: a container's own env would override
    the Secret's AEROGRID_BROKER, so the Secret must name the broker itself.
    """

    bootstrap: str | None = None
    secret_ref: Annotated[SecretRef | None, Field(alias="secretRef")] = None


class ResourceRequirements(_Model):
    """Kubernetes' requests and limits (quantities as strings: "250m", "512Mi")."""

    requests: dict[str, str] = Field(default_factory=lambda: {"cpu": "100m", "memory": "256Mi"})
    limits: dict[str, str] = Field(default_factory=lambda: {"cpu": "1", "memory": "1Gi"})


def _check_requirements(text: str) -> None:
    """Packages come from the platform's package index only: pip options (another index,
    find-links, trusted hosts, included files) and direct URLs are refused; anything else
    is pip's to judge, and a build that fails says pip's own line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-"):
            raise ValueError(
                f"requirements.txt line {number}: pip options ({line.split()[0]}) are not "
                "allowed: packages come from the platform's package index"
            )
        if "://" in line:
            raise ValueError(
                f"requirements.txt line {number}: a direct URL is not allowed: packages "
                "come from the platform's package index"
            )


class AppSpec(_Model):
    #: The app's folder: app.py, requirements.txt and any other file, by name.
    files: dict[str, str]
    runtime_version: Annotated[str, Field(alias="runtimeVersion", min_length=1)]
    #: Processes of the app: one active, the rest standbys that serve the grids too
    #: (0 stops it, like `stopped`). At most the tenant's `maxReplicasPerApp`, which the
    #: operator checks (the schema knows only the platform's ceiling).
    replicas: Annotated[int, Field(ge=0, le=MAX_REPLICAS)] = 1
    stopped: bool = False
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    env: list[EnvVar] = Field(default_factory=list)
    secret_refs: Annotated[list[SecretRef], Field(alias="secretRefs")] = Field(default_factory=list)
    broker: BrokerRef = Field(default_factory=BrokerRef)

    @field_validator("files")
    @classmethod
    def _check_files(cls, files: dict[str, str]) -> dict[str, str]:
        if "app.py" not in files:
            raise ValueError("files must hold app.py")
        for name in files:
            if not _FILE_NAME.match(name):
                raise ValueError(f"file name {name!r}: no folders, no leading dot")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in files.items())
        if size > MAX_FILES_BYTES:
            raise ValueError(
                f"files are {size} bytes: at most {MAX_FILES_BYTES} fit in a ConfigMap"
            )
        _check_requirements(files.get("requirements.txt", ""))
        return files

    @property
    def requirements(self) -> list[str]:
        """The packages requirements.txt lists (comments and blank lines dropped)."""
        text = self.files.get("requirements.txt", "")
        lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
        return [line for line in lines if line]


class Phase(StrEnum):
    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    RUNNING = "Running"
    STOPPED = "Stopped"
    FAILED = "Failed"


class Condition(_Model):
    type: str
    status: str  # "True" | "False" | "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: Annotated[str | None, Field(alias="lastTransitionTime")] = None
    observed_generation: Annotated[int | None, Field(alias="observedGeneration")] = None


class AppStatus(_Model):
    phase: Phase = Phase.PENDING
    #: Replicas the Deployment should run now (0 when stopped) and how many are ready.
    replicas: int = 0
    ready_replicas: Annotated[int, Field(alias="readyReplicas")] = 0
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: Annotated[int | None, Field(alias="observedGeneration")] = None
    #: Where clients reach the app's grids (the gateway's host for this app).
    endpoint: str = ""
    #: The image the Deployment runs (the runtime's, or one built with the requirements).
    image: str = ""
    message: str = ""


@dataclass(frozen=True)
class AppState:
    """An App as the cluster has it: what was asked (spec) and what the operator reports.

    Read by the promote client and by the in-cluster catalog, from any App object.
    """

    name: str
    namespace: str
    tenant: str
    phase: str
    message: str = ""
    endpoint: str = ""
    image: str = ""
    stopped: bool = False
    #: Replicas asked for (spec), and the operator's count of wanted and ready ones.
    spec_replicas: int = 1
    replicas: int = 0
    ready_replicas: int = 0
    generation: int = 0
    observed_generation: int | None = None
    created: str = ""
    resource_version: str = ""

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> AppState:
        metadata = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        namespace = str(metadata.get("namespace", ""))
        observed = status.get("observedGeneration")
        return cls(
            name=str(metadata.get("name", "")),
            namespace=namespace,
            tenant=tenant_of(namespace) or "",
            phase=str(status.get("phase") or Phase.PENDING),
            message=str(status.get("message") or ""),
            endpoint=str(status.get("endpoint") or ""),
            image=str(status.get("image") or ""),
            stopped=bool(spec.get("stopped", False)),
            spec_replicas=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(observed) if isinstance(observed, int) else None,
            created=str(metadata.get("creationTimestamp") or ""),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )

    @property
    def current(self) -> bool:
        """Whether the status speaks of the latest spec (not of the code before a promote)."""
        return self.observed_generation is not None and self.observed_generation >= self.generation

    @property
    def settled(self) -> bool:
        """Whether the operator is done with the latest spec: Running, Failed or Stopped."""
        if not self.current:
            return False
        if self.phase == Phase.FAILED:
            return True
        return self.phase == (Phase.STOPPED if self.stopped else Phase.RUNNING)


# -- Tenant ------------------------------------------------------------------------------


class Quotas(_Model):
    """What a tenant's namespace may use in all (a ResourceQuota)."""

    apps: Annotated[int, Field(ge=0)] = 10
    cpu: str = "4"
    memory: str = "8Gi"
    pods: Annotated[int, Field(ge=0)] = 20
    #: Replicas one App may ask for; a rolling update runs one pod more for a while, so
    #: `pods` should leave room for it.
    max_replicas_per_app: Annotated[
        int, Field(alias="maxReplicasPerApp", ge=1, le=MAX_REPLICAS)
    ] = DEFAULT_REPLICAS_PER_APP


class TenantSpec(_Model):
    display_name: Annotated[str, Field(alias="displayName", min_length=1)]
    #: Identity-provider groups whose members belong to the tenant (the JWT `groups`).
    groups: Annotated[list[str], Field(min_length=1)]
    quotas: Quotas = Field(default_factory=Quotas)


class TenantStatus(_Model):
    phase: str = "Pending"  # Pending | Ready | Failed
    namespace: str = ""
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: Annotated[int | None, Field(alias="observedGeneration")] = None
    message: str = ""


def check_name(kind: str, name: str) -> str:
    """A resource name that is a DNS label (apps become hosts, tenants namespaces)."""
    if not _DNS_LABEL.match(name):
        raise ValueError(
            f"{kind} name {name!r}: lower-case letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit"
        )
    return name


def resource(kind: str, name: str, spec: BaseModel, namespace: str | None = None) -> dict[str, Any]:
    """A whole App or Tenant object, ready to apply."""
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": metadata,
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }
