"""Every Kubernetes and Istio object the platform makes, as plain dicts (no cluster access).

Three families, each a pure function of a spec and the `PlatformSettings`:

* a tenant's objects (`tenant_objects`): its namespace (Pod Security `restricted`,
  sidecar injection), quota, limits, a default-deny NetworkPolicy, and the Istio
  RequestAuthentication + AuthorizationPolicy pair that admits only its groups' members;
* an app's objects (`app_objects`, `build_for`/`build_objects`): the code's ConfigMap,
  a ServiceAccount, the Deployment, the Service and the VirtualService, and when
  requirements.txt lists packages a kaniko Job that bakes them into an image;
* the platform's own objects (`platform_objects`): CRDs, operator, catalog, Gateway and
  mesh-wide mTLS.

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid_cloud import crds
from aerogrid_cloud.kube import ResourceType
from aerogrid_cloud.model import (
    API_VERSION,
    APP_KIND,
    APP_LABEL,
    APP_PLURAL,
    GROUP,
    MANAGED_BY,
    TENANT_KIND,
    TENANT_LABEL,
    TENANT_PLURAL,
    VERSION,
    AppSpec,
    TenantSpec,
    check_name,
    namespace_for,
)
from aerogrid_cloud.settings import PlatformSettings

__all__ = [
    "BUILT_IMAGES",
    "FIELD_MANAGER",
    "GRPC_PORT",
    "HTTP_PORT",
    "Build",
    "Owner",
    "RenderError",
    "app_image",
    "app_labels",
    "app_objects",
    "build_for",
    "build_objects",
    "built_images_configmap",
    "files_configmap_name",
    "files_digest",
    "platform_objects",
    "resource_type",
    "tenant_labels",
    "tenant_objects",
    "tenant_of",
]

#: The field manager every object the platform applies is owned by.
FIELD_MANAGER: Final = "aerogrid-operator"
#: `aerogrid run`'s ports in the pod (gRPC; Connect, gRPC-Web, health and metrics).
GRPC_PORT: Final = 50051
HTTP_PORT: Final = 50052
#: The runtime image's unprivileged user (pods run as it, whatever the image says).
APP_UID: Final = 10001
#: The build namespace's record of the images built so far (tag → image).
BUILT_IMAGES: Final = "aerogrid-built-images"
#: Set by the operator on a Deployment's pods: a new value rolls them (ConfigMap volumes
#: update in place, but the runtime reads the code only when it starts).
FILES_HASH_ANNOTATION: Final = "aerogrid.io/files-hash"
BUILD_LABEL: Final = "aerogrid.io/build"
IMAGE_ANNOTATION: Final = "aerogrid.io/image"

COMPONENT: Final = "app.kubernetes.io/component"
PART_OF: Final = {"app.kubernetes.io/part-of": "aerogrid"}
_PSA: Final = "pod-security.kubernetes.io"
#: Platform-set environment an App's `env` may not override (it would weaken auth).
RESERVED_ENV: Final = frozenset(
    {
        "AEROGRID_TENANT",
        "AEROGRID_REQUIRE_AUTH",
        "AEROGRID_OIDC_ISSUER",
        "AEROGRID_OIDC_AUDIENCE",
        "AEROGRID_OIDC_JWKS_URL",
        "AEROGRID_OIDC_JWKS_FILE",
        "AEROGRID_OIDC_GROUPS_CLAIM",
        "AEROGRID_GROUP_TENANTS",
        "AEROGRID_AUTH_TOKENS_FILE",
    }
)
_OPERATOR: Final = "aerogrid-operator"
_CATALOG: Final = "aerogrid-catalog"
_OPERATOR_HEALTH_PORT: Final = 8080
_SETTINGS_CONFIGMAP: Final = "aerogrid-platform-settings"
_SETTINGS_DIR: Final = "/etc/aerogrid"
_CATALOG_SERVICE_PATH: Final = "/aerogrid.v1.CatalogService/"


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


# -- helpers -----------------------------------------------------------------------------


def _labels(component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**MANAGED_BY, **PART_OF, COMPONENT: component, **(extra or {})}


def _meta(
    name: str,
    labels: Mapping[str, str],
    namespace: str | None = None,
    owner: Owner | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def _obj(api_version: str, kind: str, metadata: dict[str, Any], **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, **body}


def _restricted_container() -> dict[str, Any]:
    """What Pod Security `restricted` asks of a container, and a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _restricted_pod(uid: int = APP_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _namespace(
    name: str,
    *,
    enforce: str,
    labels: Mapping[str, str],
    injection: bool,
    owner: Owner | None = None,
    audit: str = "restricted",
) -> dict[str, Any]:
    psa = {
        f"{_PSA}/enforce": enforce,
        f"{_PSA}/enforce-version": "latest",
        f"{_PSA}/audit": audit,
        f"{_PSA}/audit-version": "latest",
        f"{_PSA}/warn": enforce,
        f"{_PSA}/warn-version": "latest",
    }
    istio = {"istio-injection": "enabled" if injection else "disabled"}
    return _obj("v1", "Namespace", _meta(name, {**labels, **psa, **istio}, owner=owner))


def _http_get(path: str, port: str | int, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def files_digest(files: Mapping[str, str]) -> str:
    """One hash of an app's files (rolls its pods; stands for the files in kopf's diffbase)."""
    return _digest(dict(files))


def tenant_of(namespace: str) -> str | None:
    """The tenant whose namespace this is (`namespace_for`'s inverse), if it is one."""
    prefix = namespace_for("")
    if not namespace.startswith(prefix) or len(namespace) == len(prefix):
        return None
    return namespace[len(prefix) :]


# -- tenants -----------------------------------------------------------------------------


def tenant_labels(tenant: str) -> dict[str, str]:
    return _labels("tenant", {TENANT_LABEL: tenant})


def tenant_objects(
    name: str, spec: TenantSpec, settings: PlatformSettings, owner: Owner | None = None
) -> list[dict[str, Any]]:
    """A tenant's namespace and what keeps it apart: quota, limits, network, identity."""
    check_name("Tenant", name)
    namespace = namespace_for(name)
    if len(namespace) > 63:
        raise RenderError(f"tenant name {name!r} is too long: namespace {namespace} > 63")
    if namespace in (settings.system_namespace, settings.build_namespace):
        raise RenderError(f"tenant name {name!r} is reserved: {namespace} is the platform's")
    labels = tenant_labels(name)
    quotas = spec.quotas
    objects = [
        _namespace(
            namespace,
            enforce="restricted",
            labels=labels,
            injection=settings.istio_injection,
            owner=owner,
        ),
        _obj(
            "v1",
            "ResourceQuota",
            _meta("aerogrid-tenant", labels, namespace, owner),
            spec={
                "hard": {
                    f"count/{APP_PLURAL}.{GROUP}": str(quotas.apps),
                    "pods": str(quotas.pods),
                    "requests.cpu": quotas.cpu,
                    "requests.memory": quotas.memory,
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                }
            },
        ),
        _obj(
            "v1",
            "LimitRange",
            _meta("aerogrid-tenant", labels, namespace, owner),
            spec={
                "limits": [
                    {
                        "type": "Container",
                        "default": {"cpu": "1", "memory": "1Gi"},
                        "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
                        "max": {
                            "cpu": settings.container_max_cpu,
                            "memory": settings.container_max_memory,
                        },
                    }
                ]
            },
        ),
        _tenant_network_policy(namespace, labels, settings, owner),
        _request_authentication("aerogrid-jwt", namespace, labels, settings, owner),
        _obj(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            _meta("aerogrid-tenant-members", labels, namespace, owner),
            spec=_members_only(settings, spec.groups),
        ),
        # The tenant's people may promote, stop, start and delete its apps (and only them).
        _obj(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            _meta(DEVELOPER_ROLE, labels, namespace, owner),
            roleRef={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": DEVELOPER_ROLE,
            },
            subjects=[
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                for group in spec.groups
            ],
        ),
    ]
    return objects


def _tenant_network_policy(
    namespace: str, labels: Mapping[str, str], settings: PlatformSettings, owner: Owner | None
) -> dict[str, Any]:
    """Default deny: in only from the ingress gateway's pods, out only to DNS and Kafka.

    Sidecars also need istiod (xDS, port 15012) or the mesh cannot configure them, and apps
    that check tokens themselves need the identity provider (when `idp_cidrs` says where).
    """
    gateway_peer = {
        "namespaceSelector": {
            "matchLabels": {"kubernetes.io/metadata.name": settings.gateway_namespace}
        },
        "podSelector": {"matchLabels": dict(settings.gateway_selector)},
    }
    egress: list[dict[str, Any]] = [
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
    ]
    kafka: dict[str, Any] = {
        "ports": [{"protocol": "TCP", "port": p} for p in settings.kafka_ports]
    }
    if settings.kafka_cidrs:
        kafka["to"] = [{"ipBlock": {"cidr": cidr}} for cidr in settings.kafka_cidrs]
    egress.append(kafka)
    if settings.istio_injection:
        egress.append(
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {
                                "kubernetes.io/metadata.name": settings.istiod_namespace
                            }
                        },
                        "podSelector": {"matchLabels": {"app": "istiod"}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 15012}],
            }
        )
    if settings.idp_cidrs:
        egress.append(
            {
                "to": [{"ipBlock": {"cidr": cidr}} for cidr in settings.idp_cidrs],
                "ports": [{"protocol": "TCP", "port": 443}],
            }
        )
    return _obj(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        _meta("aerogrid-default-deny", labels, namespace, owner),
        spec={
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [gateway_peer],
                    "ports": [
                        {"protocol": "TCP", "port": GRPC_PORT},
                        {"protocol": "TCP", "port": HTTP_PORT},
                    ],
                }
            ],
            "egress": egress,
        },
    )


def _request_authentication(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    settings: PlatformSettings,
    owner: Owner | None,
    selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    # forwardOriginalToken: Istio strips the header otherwise, and the app checks it again.
    spec: dict[str, Any] = {
        "jwtRules": [
            {
                "issuer": settings.oidc_issuer,
                "jwksUri": settings.oidc_jwks_uri,
                "audiences": [settings.oidc_audience],
                "forwardOriginalToken": True,
            }
        ]
    }
    if selector:
        spec["selector"] = {"matchLabels": dict(selector)}
    return _obj(
        "security.istio.io/v1",
        "RequestAuthentication",
        _meta(name, labels, namespace, owner),
        spec=spec,
    )


def _members_only(
    settings: PlatformSettings,
    groups: Sequence[str] | None,
    selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """ALLOW rules for requests through the gateway with a valid token (of `groups`).

    RequestAuthentication alone lets a request without a token through; an ALLOW policy
    requiring a request principal closes that. Only CORS preflights (OPTIONS, which carry
    no token) pass without one: they reach no data.
    """
    source = {"principals": [settings.gateway_principal]}
    member: dict[str, Any] = {"from": [{"source": {**source, "requestPrincipals": ["*"]}}]}
    if groups is not None:
        member["when"] = [
            {"key": f"request.auth.claims[{settings.oidc_groups_claim}]", "values": list(groups)}
        ]
    preflight = {"from": [{"source": source}], "to": [{"operation": {"methods": ["OPTIONS"]}}]}
    spec: dict[str, Any] = {"action": "ALLOW", "rules": [member, preflight]}
    if selector:
        spec["selector"] = {"matchLabels": dict(selector)}
    return spec


# -- apps --------------------------------------------------------------------------------


def app_labels(app: str, tenant: str) -> dict[str, str]:
    return _labels("app", {"app.kubernetes.io/name": app, APP_LABEL: app, TENANT_LABEL: tenant})


def _selector(app: str, tenant: str) -> dict[str, str]:
    return {APP_LABEL: app, TENANT_LABEL: tenant}


def files_configmap_name(app: str) -> str:
    return f"{app}-files"


def app_image(spec: AppSpec, settings: PlatformSettings) -> str:
    """The image the app runs: the built one when it has requirements, else the runtime's."""
    build = build_for(spec, settings)
    return build.image if build is not None else settings.runtime_image_for(spec.runtime_version)


def app_objects(
    name: str,
    namespace: str,
    spec: AppSpec,
    settings: PlatformSettings,
    *,
    owner: Owner | None = None,
    image: str | None = None,
    tenant_groups: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """ServiceAccount, code ConfigMap, Deployment, Service and VirtualService of an App.

    `image` is the one the Deployment runs (default: `app_image`); `tenant_groups` map the
    tenant's IdP groups to it for the runtime's own token check.
    """
    check_name("App", name)
    tenant = tenant_of(namespace)
    if tenant is None:
        raise RenderError(
            f"namespace {namespace} is not a tenant's: apps live in {namespace_for('<tenant>')}"
        )
    labels = app_labels(name, tenant)
    image = image or app_image(spec, settings)
    return [
        _obj(
            "v1",
            "ServiceAccount",
            _meta(name, labels, namespace, owner),
            automountServiceAccountToken=False,
        ),
        _obj(
            "v1",
            "ConfigMap",
            _meta(files_configmap_name(name), labels, namespace, owner),
            data=dict(spec.files),
        ),
        _deployment(name, namespace, tenant, spec, settings, labels, owner, image, tenant_groups),
        _obj(
            "v1",
            "Service",
            _meta(name, labels, namespace, owner),
            spec={
                "type": "ClusterIP",
                "selector": _selector(name, tenant),
                "ports": [
                    {
                        "name": "grpc",
                        "port": GRPC_PORT,
                        "targetPort": "grpc",
                        "protocol": "TCP",
                        "appProtocol": "grpc",
                    },
                    {
                        "name": "http",
                        "port": HTTP_PORT,
                        "targetPort": "http",
                        "protocol": "TCP",
                        "appProtocol": "http",
                    },
                ],
            },
        ),
        _virtual_service(name, namespace, tenant, settings, labels, owner),
    ]


def _app_env(
    tenant: str, spec: AppSpec, settings: PlatformSettings, tenant_groups: Sequence[str]
) -> list[dict[str, Any]]:
    reserved = sorted(RESERVED_ENV & {var.name for var in spec.env})
    if reserved:
        raise RenderError(f"env sets {', '.join(reserved)}: the platform sets these itself")
    env: list[dict[str, Any]] = []
    if spec.broker.bootstrap and spec.broker.secret_ref is None:
        env.append({"name": "AEROGRID_BROKER", "value": spec.broker.bootstrap})
    env.extend({"name": var.name, "value": var.value} for var in spec.env)
    platform = {
        "AEROGRID_TENANT": tenant,
        # Istio's sidecar hands requests over from 127.0.0.6: loopback, which the runtime
        # would otherwise let in without a token.
        "AEROGRID_REQUIRE_AUTH": "1",
        "AEROGRID_OIDC_ISSUER": settings.oidc_issuer,
        "AEROGRID_OIDC_AUDIENCE": settings.oidc_audience,
        "AEROGRID_OIDC_JWKS_URL": settings.oidc_jwks_uri,
        "AEROGRID_OIDC_GROUPS_CLAIM": settings.oidc_groups_claim,
        "AEROGRID_GROUP_TENANTS": json.dumps({group: tenant for group in tenant_groups}),
        "HOME": "/tmp",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    user = {var["name"] for var in env}
    env.extend({"name": k, "value": v} for k, v in platform.items() if k not in user)
    return env


def _deployment(
    name: str,
    namespace: str,
    tenant: str,
    spec: AppSpec,
    settings: PlatformSettings,
    labels: Mapping[str, str],
    owner: Owner | None,
    image: str,
    tenant_groups: Sequence[str],
) -> dict[str, Any]:
    env_from: list[dict[str, Any]] = [{"secretRef": {"name": ref.name}} for ref in spec.secret_refs]
    if spec.broker.secret_ref is not None:
        env_from.insert(0, {"secretRef": {"name": spec.broker.secret_ref.name}})
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["aerogrid", "run", "/app/app.py"],
        "args": ["--host", "0.0.0.0", "--port", str(GRPC_PORT), "--http-port", str(HTTP_PORT)],
        "workingDir": "/app",
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        "env": _app_env(tenant, spec, settings, tenant_groups),
        "resources": {
            "requests": dict(spec.resources.requests),
            "limits": dict(spec.resources.limits),
        },
        "securityContext": _restricted_container(),
        # Restoring grids can take a while: /healthz answers from the start, /readyz only
        # once every grid is restored (traffic waits for it, the pod is not restarted).
        "startupProbe": _http_get("/healthz", "http", 2, 30),
        "livenessProbe": _http_get("/healthz", "http", 10, 3),
        "readinessProbe": _http_get("/readyz", "http", 5, 2),
        "volumeMounts": [
            {"name": "app", "mountPath": "/app", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if env_from:
        container["envFrom"] = env_from
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _restricted_pod(),
        "containers": [container],
        "volumes": [
            {"name": "app", "configMap": {"name": files_configmap_name(name)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return _obj(
        "apps/v1",
        "Deployment",
        _meta(name, labels, namespace, owner),
        spec={
            "replicas": 0 if spec.stopped else spec.replicas,
            "revisionHistoryLimit": 3,
            # One instance per app name: its transactional id fences an older one, so a
            # rolling update would only fight; replace instead.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": _selector(name, tenant)},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {FILES_HASH_ANNOTATION: files_digest(spec.files)[:32]},
                },
                "spec": pod,
            },
        },
    )


def _virtual_service(
    name: str,
    namespace: str,
    tenant: str,
    settings: PlatformSettings,
    labels: Mapping[str, str],
    owner: Owner | None,
) -> dict[str, Any]:
    """Routes `<app>.<tenant>.<domain>`, or any host with both x-aerogrid headers.

    Native gRPC goes to the `grpc` port; gRPC-Web and Connect (the browser protocols) and
    everything else to `http`, where the runtime speaks them itself.
    """
    host = settings.app_host(name, tenant)
    by_host = {"authority": {"regex": "^" + re.escape(host) + "(:[0-9]+)?$"}}
    by_header = {APP_HEADER: {"exact": name}, TENANT_HEADER: {"exact": tenant}}
    target = f"{name}.{namespace}.svc.cluster.local"

    def route(route_name: str, port: int, content_type: str | None) -> dict[str, Any]:
        extra = {"content-type": {"prefix": content_type}} if content_type else {}
        return {
            "name": route_name,
            "match": [
                {**by_host, "headers": extra} if extra else dict(by_host),
                {"headers": {**by_header, **extra}},
            ],
            "route": [{"destination": {"host": target, "port": {"number": port}}}],
        }

    return _obj(
        "networking.istio.io/v1",
        "VirtualService",
        _meta(name, labels, namespace, owner),
        spec={
            "hosts": [host, "*"],
            "gateways": [settings.gateway_ref],
            "http": [
                route("grpc-web", HTTP_PORT, "application/grpc-web"),
                route("grpc", GRPC_PORT, "application/grpc"),
                route("http", HTTP_PORT, None),
            ],
        },
    )


# -- image builds --------------------------------------------------------------------------


@dataclass(frozen=True)
class Build:
    """An image with an app's requirements on top of the runtime: what to build, where."""

    digest: str
    tag: str
    image: str
    requirements: str
    base_image: str

    @property
    def job_name(self) -> str:
        return f"aerogrid-build-{self.digest[:20]}"


def build_for(spec: AppSpec, settings: PlatformSettings) -> Build | None:
    """The build an App needs, or None when requirements.txt lists no packages.

    The tag is a hash of the requirements (sorted, comments and blanks dropped), the
    runtime image and its version: apps with the same requirements share one image.
    """
    packages = sorted(set(spec.requirements))
    if not packages:
        return None
    base = settings.runtime_image_for(spec.runtime_version)
    digest = _digest({"requirements": packages, "runtimeImage": base})
    version = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.runtime_version)[:80]
    tag = f"{version}-{digest[:20]}"
    return Build(
        digest=digest,
        tag=tag,
        image=f"{settings.build_registry}:{tag}",
        requirements="\n".join(packages) + "\n",
        base_image=base,
    )


def _dockerfile(build: Build) -> str:
    return (
        f"FROM {build.base_image}\n"
        "USER 0\n"
        "COPY requirements.txt /tmp/aerogrid-requirements.txt\n"
        "RUN python -m pip install --no-cache-dir -r /tmp/aerogrid-requirements.txt"
        " && rm /tmp/aerogrid-requirements.txt\n"
        f"USER {APP_UID}\n"
    )


def build_objects(
    build: Build, settings: PlatformSettings, job_uid: str | None = None
) -> list[dict[str, Any]]:
    """The build's context ConfigMap (Dockerfile, requirements.txt) and its kaniko Job.

    With `job_uid` the ConfigMap is owned by the Job, so it goes when the Job's TTL ends.
    """
    ns = settings.build_namespace
    labels = _labels("build", {BUILD_LABEL: build.digest[:20]})
    annotations = {IMAGE_ANNOTATION: build.image}
    owner = Owner("Job", build.job_name, job_uid, "batch/v1") if job_uid else None
    context = _obj(
        "v1",
        "ConfigMap",
        _meta(build.job_name, labels, ns, owner, annotations),
        data={"Dockerfile": _dockerfile(build), "requirements.txt": build.requirements},
        immutable=True,
    )
    args = [
        "--dockerfile=/workspace/Dockerfile",
        "--context=dir:///workspace",
        f"--destination={build.image}",
        f"--label=aerogrid.io/requirements={build.digest}",
        "--snapshot-mode=redo",
        "--ignore-path=/var/run",
    ]
    if settings.build_insecure_registry:
        args += ["--insecure", "--skip-tls-verify"]
    # subPath mounts are plain files: a whole ConfigMap volume is symlinks, which a
    # COPY would put in the image as dangling links.
    mounts: list[dict[str, Any]] = [
        {"name": "context", "mountPath": f"/workspace/{key}", "subPath": key, "readOnly": True}
        for key in ("Dockerfile", "requirements.txt")
    ]
    volumes: list[dict[str, Any]] = [{"name": "context", "configMap": {"name": build.job_name}}]
    if settings.build_push_secret:
        mounts.append({"name": "docker-config", "mountPath": "/kaniko/.docker", "readOnly": True})
        volumes.append(
            {
                "name": "docker-config",
                "secret": {
                    "secretName": settings.build_push_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    job = _obj(
        "batch/v1",
        "Job",
        _meta(build.job_name, labels, ns, None, annotations),
        spec={
            "backoffLimit": 2,
            "activeDeadlineSeconds": settings.build_timeout_seconds,
            "ttlSecondsAfterFinished": settings.build_ttl_seconds,
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # kaniko unpacks images as root (no privilege, no extra capability):
                    # Pod Security baseline, which is why builds have their own namespace.
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [
                        {
                            "name": "kaniko",
                            "image": settings.build_image,
                            "args": args,
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "1Gi"},
                                "limits": {"cpu": "2", "memory": "4Gi"},
                            },
                            "volumeMounts": mounts,
                        }
                    ],
                    "volumes": volumes,
                },
            },
        },
    )
    return [context, job]


def built_images_configmap(settings: PlatformSettings) -> dict[str, Any]:
    """The record of built images (tag → image): a build is skipped when its tag is here.

    Rendered without `data`, so applying it again never drops what the operator recorded
    (the operator adds entries with merge patches under its own field manager).
    """
    return _obj(
        "v1",
        "ConfigMap",
        _meta(BUILT_IMAGES, _labels("build"), settings.build_namespace),
    )


# -- the platform ------------------------------------------------------------------------


def _rule(groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str]) -> dict[str, Any]:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


#: What a tenant's developers may do in its namespace: what `aerogrid promote`, `apps`,
#: `stop`, `start` and `delete` need (server-side apply that creates asks for create).
DEVELOPER_ROLE: Final = "aerogrid-developer"
DEVELOPER_RULES: Final = [
    _rule([GROUP], [APP_PLURAL], ["get", "list", "watch", "create", "patch", "delete"]),
]
#: Every API the operator touches, and only the verbs it uses (it never deletes: owner
#: references and the garbage collector do; it never reads Secrets or Pods).
OPERATOR_RULES: Final = [
    _rule([GROUP], [APP_PLURAL, TENANT_PLURAL], ["get", "list", "watch", "patch"]),
    _rule([GROUP], [f"{APP_PLURAL}/status", f"{TENANT_PLURAL}/status"], ["get", "patch"]),
    # blockOwnerDeletion on an owner reference needs update on the owner's finalizers
    # (where OwnerReferencesPermissionEnforcement admission is on).
    _rule([GROUP], [f"{APP_PLURAL}/finalizers", f"{TENANT_PLURAL}/finalizers"], ["update"]),
    _rule([""], ["namespaces"], ["get", "create", "patch"]),
    # Quotas are watched too: a tenant is Ready once its quota counts everything it limits.
    _rule([""], ["resourcequotas"], ["get", "list", "watch", "create", "patch"]),
    _rule(
        [""],
        ["limitranges", "serviceaccounts", "services", "configmaps"],
        ["get", "create", "patch"],
    ),
    _rule(["apps"], ["deployments"], ["get", "list", "watch", "create", "patch"]),
    _rule(["networking.k8s.io"], ["networkpolicies"], ["get", "create", "patch"]),
    _rule(
        ["security.istio.io"],
        ["requestauthentications", "authorizationpolicies"],
        ["get", "create", "patch"],
    ),
    _rule(["networking.istio.io"], ["virtualservices"], ["get", "create", "patch"]),
    # Each tenant's RoleBinding of its groups to the developer role: binding a role needs
    # `bind` on it (the operator does not hold the role's rights itself).
    _rule(["rbac.authorization.k8s.io"], ["rolebindings"], ["get", "create", "patch"]),
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["clusterroles"],
        "verbs": ["bind"],
        "resourceNames": [DEVELOPER_ROLE],
    },
    # kopf reports what it did as events on the objects.
    _rule(["", "events.k8s.io"], ["events"], ["create", "patch"]),
]
#: In the build namespace only: the kaniko Jobs (their ConfigMaps are in the rules above).
OPERATOR_BUILD_RULES: Final = [_rule(["batch"], ["jobs"], ["get", "create", "patch"])]
CATALOG_RULES: Final = [_rule([GROUP], [APP_PLURAL, TENANT_PLURAL], ["get", "list", "watch"])]


def _rbac(
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    rules: list[dict[str, Any]],
    *,
    role_namespace: str | None = None,
) -> list[dict[str, Any]]:
    """A ClusterRole (or, with `role_namespace`, a Role there) bound to the account."""
    kind = "Role" if role_namespace else "ClusterRole"
    subject = {"kind": "ServiceAccount", "name": name, "namespace": namespace}
    return [
        _obj(
            "rbac.authorization.k8s.io/v1", kind, _meta(name, labels, role_namespace), rules=rules
        ),
        _obj(
            "rbac.authorization.k8s.io/v1",
            f"{kind}Binding",
            _meta(name, labels, role_namespace),
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            subjects=[subject],
        ),
    ]


def _platform_pod(
    account: str,
    container: dict[str, Any],
    *,
    automount: bool,
) -> dict[str, Any]:
    container = {
        **container,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": _restricted_container(),
        "volumeMounts": [
            {"name": "settings", "mountPath": _SETTINGS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
    }
    container["env"] = [
        {"name": "AEROGRID_PLATFORM_SETTINGS", "value": f"{_SETTINGS_DIR}/settings.yaml"},
        {"name": "HOME", "value": "/tmp"},
        *container.get("env", []),
    ]
    return {
        "serviceAccountName": account,
        "automountServiceAccountToken": automount,
        "enableServiceLinks": False,
        "securityContext": _restricted_pod(),
        "containers": [container],
        "volumes": [
            {"name": "settings", "configMap": {"name": _SETTINGS_CONFIGMAP}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }


def _platform_deployment(
    name: str, namespace: str, labels: Mapping[str, str], pod: dict[str, Any]
) -> dict[str, Any]:
    selector = {"app.kubernetes.io/name": name}
    return _obj(
        "apps/v1",
        "Deployment",
        _meta(name, {**labels, **selector}, namespace),
        spec={
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**labels, **selector}}, "spec": pod},
        },
    )


def _operator(settings: PlatformSettings) -> list[dict[str, Any]]:
    ns = settings.system_namespace
    labels = _labels("operator")
    pod = _platform_pod(
        _OPERATOR,
        {
            "name": "operator",
            "image": settings.platform_image,
            "command": ["python", "-m", "aerogrid_cloud.operator"],
            "args": [f"--liveness=http://0.0.0.0:{_OPERATOR_HEALTH_PORT}/healthz"],
            "ports": [{"name": "health", "containerPort": _OPERATOR_HEALTH_PORT}],
            # kopf's liveness endpoint: a watch that went silent (kopf #1276) or a stuck
            # loop gets the pod restarted.
            "livenessProbe": {
                **_http_get("/healthz", "health", 20, 3),
                "initialDelaySeconds": 15,
            },
        },
        automount=True,
    )
    return [
        _obj("v1", "ServiceAccount", _meta(_OPERATOR, labels, ns)),
        *_rbac(_OPERATOR, ns, labels, OPERATOR_RULES),
        *_rbac(
            _OPERATOR, ns, labels, OPERATOR_BUILD_RULES, role_namespace=settings.build_namespace
        ),
        _platform_deployment(_OPERATOR, ns, labels, pod),
    ]


def _catalog(settings: PlatformSettings) -> list[dict[str, Any]]:
    ns = settings.system_namespace
    labels = _labels("catalog")
    selector = {"app.kubernetes.io/name": _CATALOG}
    pod = _platform_pod(
        _CATALOG,
        {
            "name": "catalog",
            "image": settings.platform_image,
            "command": ["python", "-m", "aerogrid_cloud.catalog"],
            "args": ["--port", str(GRPC_PORT), "--http-port", str(HTTP_PORT)],
            "ports": [
                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            ],
            "env": [
                {"name": "AEROGRID_REQUIRE_AUTH", "value": "1"},
                {"name": "AEROGRID_OIDC_ISSUER", "value": settings.oidc_issuer},
                {"name": "AEROGRID_OIDC_AUDIENCE", "value": settings.oidc_audience},
                {"name": "AEROGRID_OIDC_JWKS_URL", "value": settings.oidc_jwks_uri},
                {"name": "AEROGRID_OIDC_GROUPS_CLAIM", "value": settings.oidc_groups_claim},
            ],
            "livenessProbe": _http_get("/healthz", "http", 10, 3),
            "readinessProbe": _http_get("/readyz", "http", 5, 2),
        },
        automount=True,
    )
    service = _obj(
        "v1",
        "Service",
        _meta(_CATALOG, labels, ns),
        spec={
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "appProtocol": "grpc"},
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "appProtocol": "http"},
            ],
        },
    )
    target = f"{_CATALOG}.{ns}.svc.cluster.local"
    # The catalog answers the one endpoint's CatalogService calls that name no app.
    catalog_match = {"uri": {"prefix": _CATALOG_SERVICE_PATH}, "withoutHeaders": {APP_HEADER: {}}}
    routes = [
        {
            "name": "catalog-grpc-web",
            "match": [
                {**catalog_match, "headers": {"content-type": {"prefix": "application/grpc-web"}}}
            ],
            "route": [{"destination": {"host": target, "port": {"number": HTTP_PORT}}}],
        },
        {
            "name": "catalog-grpc",
            "match": [
                {**catalog_match, "headers": {"content-type": {"prefix": "application/grpc"}}}
            ],
            "route": [{"destination": {"host": target, "port": {"number": GRPC_PORT}}}],
        },
        {
            "name": "catalog-http",
            "match": [catalog_match],
            "route": [{"destination": {"host": target, "port": {"number": HTTP_PORT}}}],
        },
    ]
    return [
        _obj(
            "v1", "ServiceAccount", _meta(_CATALOG, labels, ns), automountServiceAccountToken=True
        ),
        *_rbac(_CATALOG, ns, labels, CATALOG_RULES),
        _platform_deployment(_CATALOG, ns, labels, pod),
        service,
        _obj(
            "networking.istio.io/v1",
            "VirtualService",
            _meta(_CATALOG, labels, ns),
            spec={"hosts": ["*"], "gateways": [settings.gateway_ref], "http": routes},
        ),
        _request_authentication(_CATALOG, ns, labels, settings, None, selector),
        _obj(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            _meta(_CATALOG, labels, ns),
            # Any tenant's member may ask; the catalog shows each only its tenants' apps.
            spec=_members_only(settings, None, selector),
        ),
    ]


def _gateway(settings: PlatformSettings) -> dict[str, Any]:
    """One Gateway for native gRPC and the browser protocols (both are HTTP/2 or HTTP/1.1)."""
    if settings.gateway_tls_secret:
        server: dict[str, Any] = {
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "tls": {"mode": "SIMPLE", "credentialName": settings.gateway_tls_secret},
        }
    else:
        server = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}}
    server["hosts"] = ["*/*"]
    return _obj(
        "networking.istio.io/v1",
        "Gateway",
        _meta(settings.gateway_name, _labels("gateway"), settings.gateway_namespace),
        spec={"selector": dict(settings.gateway_selector), "servers": [server]},
    )


def platform_objects(settings: PlatformSettings) -> list[dict[str, Any]]:
    """Everything `platform install` applies, in an order the API server accepts."""
    system = settings.system_namespace
    return [
        *crds.crds(),
        _namespace(
            system,
            enforce="restricted",
            labels=_labels("platform"),
            injection=settings.istio_injection,
        ),
        _namespace(
            settings.build_namespace,
            enforce="baseline",
            labels=_labels("build"),
            injection=False,
        ),
        _obj(
            "v1",
            "ConfigMap",
            _meta(_SETTINGS_CONFIGMAP, _labels("platform"), system),
            data={"settings.yaml": settings.to_yaml()},
        ),
        built_images_configmap(settings),
        _obj(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            _meta(DEVELOPER_ROLE, _labels("platform")),
            rules=DEVELOPER_RULES,
        ),
        *_operator(settings),
        *_catalog(settings),
        _gateway(settings),
        _obj(
            "security.istio.io/v1",
            "PeerAuthentication",
            _meta("default", _labels("mesh"), settings.mesh_root_namespace),
            spec={"mtls": {"mode": "STRICT"}},
        ),
    ]


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
