"""What every rendered object shares: labels, metadata, ownership, security contexts, kinds.

The platform's objects are plain dicts (no cluster access); these helpers give them one
set of labels, one way to name an owner, the Pod Security `restricted` settings every pod
runs with, and where each rendered kind lives in the API (`resource_type`).

Ownership: an App owns what lives in its namespace. A Tenant is cluster-scoped, so it may
own its namespace (cluster-scoped) and the namespaced objects in it; deleting it deletes
the namespace and with it every app. Build Jobs live in the build namespace, shared by
every app with the same requirements: no App can own them (an owner must be in the same
namespace, or the garbage collector deletes the orphan at once), so they expire by TTL and
their ConfigMap is owned by the Job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aerogrid_cloud.kube import ResourceType
from aerogrid_cloud.model import (
    API_VERSION,
    APP_KIND,
    APP_PLURAL,
    GROUP,
    MANAGED_BY,
    TENANT_KIND,
    TENANT_PLURAL,
    VERSION,
)

__all__ = [
    "APP_UID",
    "FIELD_MANAGER",
    "GRPC_PORT",
    "HTTP_PORT",
    "Owner",
    "RenderError",
    "api_object",
    "component_labels",
    "grpc_probe",
    "http_probe",
    "namespace_object",
    "object_meta",
    "resource_type",
    "restricted_container",
    "restricted_pod",
    "stable_hash",
]

#: The field manager every object the platform applies is owned by.
FIELD_MANAGER: Final = "aerogrid-operator"
#: `aerogrid run`'s ports in the pod (gRPC; Connect, gRPC-Web, health and metrics).
GRPC_PORT: Final = 50051
HTTP_PORT: Final = 50052
#: The runtime image's unprivileged user (pods run as it, whatever the image says).
APP_UID: Final = 10001
COMPONENT: Final = "app.kubernetes.io/component"
PART_OF: Final = {"app.kubernetes.io/part-of": "aerogrid"}
_PSA: Final = "pod-security.kubernetes.io"


class RenderError(ValueError):
    """A spec the platform cannot turn into objects; the message says why, for status."""


@dataclass(frozen=True)
class Owner:
    """An App or Tenant, as the ownerReferences of what it owns name it."""

    kind: str
    name: str
    uid: str
    api_version: str = API_VERSION

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Owner:
        meta = obj["metadata"]
        return cls(
            kind=str(obj["kind"]),
            name=str(meta["name"]),
            uid=str(meta["uid"]),
            api_version=str(obj.get("apiVersion", API_VERSION)),
        )

    def reference(self) -> dict[str, Any]:
        # controller: the operator's object; blockOwnerDeletion: a foreground delete of
        # the App waits for these to go first.
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def component_labels(component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels every platform object carries, with its component and `extra`."""
    return {**MANAGED_BY, **PART_OF, COMPONENT: component, **(extra or {})}


def object_meta(
    name: str,
    labels: Mapping[str, str],
    namespace: str | None = None,
    owner: Owner | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An object's metadata: name, namespace, labels, annotations and owner, when given."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def api_object(
    api_version: str, kind: str, metadata: dict[str, Any], **body: Any
) -> dict[str, Any]:
    """A whole Kubernetes object: its type, `metadata` and the `body` fields (spec, data...)."""
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def restricted_container() -> dict[str, Any]:
    """What Pod Security `restricted` asks of a container, and a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod(uid: int = APP_UID) -> dict[str, Any]:
    """The pod-level half of Pod Security `restricted`, as the runtime image's user."""
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def namespace_object(
    name: str,
    *,
    enforce: str,
    labels: Mapping[str, str],
    injection: bool,
    owner: Owner | None = None,
    audit: str = "restricted",
) -> dict[str, Any]:
    """A namespace with Pod Security labels (`enforce` level) and Istio injection on or off."""
    psa = {
        f"{_PSA}/enforce": enforce,
        f"{_PSA}/enforce-version": "latest",
        f"{_PSA}/audit": audit,
        f"{_PSA}/audit-version": "latest",
        f"{_PSA}/warn": enforce,
        f"{_PSA}/warn-version": "latest",
    }
    istio = {"istio-injection": "enabled" if injection else "disabled"}
    return api_object("v1", "Namespace", object_meta(name, {**labels, **psa, **istio}, owner=owner))


def http_probe(path: str, port: str | int, period: int, failures: int) -> dict[str, Any]:
    """A container probe: GET `path` every `period` s, failed after `failures` misses."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def grpc_probe(service: str, period: int, failures: int) -> dict[str, Any]:
    """A container probe by the standard gRPC health protocol on `GRPC_PORT`.

    `service` "" is the whole server (SERVING once restored, NOT_SERVING while it drains);
    `grpc_standard.LIVENESS` serves while the process runs. Kubernetes takes no port name
    here.
    """
    return {
        "grpc": {"port": GRPC_PORT, "service": service},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def stable_hash(value: object) -> str:
    """SHA-256 of `value` as sorted JSON: the same value, the same hash, in any process."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# -- where each kind lives in the API ----------------------------------------------------

_TYPES: Final = {
    (rt.api_version, rt.kind): rt
    for rt in (
        ResourceType("", "v1", "namespaces", "Namespace", namespaced=False),
        ResourceType("", "v1", "configmaps", "ConfigMap"),
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
        ResourceType("", "v1", "services", "Service"),
        ResourceType("", "v1", "resourcequotas", "ResourceQuota"),
        ResourceType("", "v1", "limitranges", "LimitRange"),
        ResourceType("apps", "v1", "deployments", "Deployment"),
        ResourceType("batch", "v1", "jobs", "Job"),
        ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
        ResourceType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
        ResourceType(
            "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
        ),
        ResourceType(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            namespaced=False,
        ),
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
        ),
        ResourceType("networking.istio.io", "v1", "virtualservices", "VirtualService"),
        ResourceType("networking.istio.io", "v1", "destinationrules", "DestinationRule"),
        ResourceType("networking.istio.io", "v1", "gateways", "Gateway"),
        ResourceType("security.istio.io", "v1", "requestauthentications", "RequestAuthentication"),
        ResourceType("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"),
        ResourceType("security.istio.io", "v1", "peerauthentications", "PeerAuthentication"),
        ResourceType(GROUP, VERSION, APP_PLURAL, APP_KIND),
        ResourceType(GROUP, VERSION, TENANT_PLURAL, TENANT_KIND, namespaced=False),
    )
}


def resource_type(obj: Mapping[str, Any]) -> ResourceType:
    """Where a rendered object lives in the API (every kind rendered here is known)."""
    key = (str(obj.get("apiVersion")), str(obj.get("kind")))
    try:
        return _TYPES[key]
    except KeyError:
        raise KeyError(f"no resource type for {key[0]} {key[1]}") from None
