"""An App's objects: its code, identity, Deployment, Service and Istio route.

The code ships as a ConfigMap mounted at /app; the Deployment runs `spec.replicas`
processes of `aerogrid run` on it with the platform's auth settings (which an App's `env`
may not override), rolls when the files' hash changes, and routes by host or by the
x-aerogrid headers; `replicas` says how the replicas roll, are disrupted and balanced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.server.grpc_standard import LIVENESS
from aerogrid_cloud.model import (
    APP_LABEL,
    TENANT_LABEL,
    AppSpec,
    check_name,
    namespace_for,
    tenant_of,
)
from aerogrid_cloud.render.build import build_for
from aerogrid_cloud.render.common import (
    GRPC_PORT,
    HTTP_PORT,
    Owner,
    RenderError,
    api_object,
    component_labels,
    grpc_probe,
    object_meta,
    restricted_container,
    restricted_pod,
    stable_hash,
)
from aerogrid_cloud.render.replicas import (
    REPLICA_ID_ENV,
    TERMINATION_GRACE_SECONDS,
    destination_rule,
    pod_disruption_budget,
    replica_id_env,
    rolling_update,
)
from aerogrid_cloud.settings import PlatformSettings

__all__ = [
    "FILES_HASH_ANNOTATION",
    "RESERVED_ENV",
    "app_image",
    "app_labels",
    "app_objects",
    "files_configmap_name",
    "files_digest",
]

#: Set by the operator on a Deployment's pods: a new value rolls them (ConfigMap volumes
#: update in place, but the runtime reads the code only when it starts).
FILES_HASH_ANNOTATION: Final = "aerogrid.io/files-hash"
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
        REPLICA_ID_ENV,
    }
)


def files_digest(files: Mapping[str, str]) -> str:
    """One hash of an app's files (rolls its pods; stands for the files in kopf's diffbase)."""
    return stable_hash(dict(files))


def app_labels(app: str, tenant: str) -> dict[str, str]:
    return component_labels(
        "app", {"app.kubernetes.io/name": app, APP_LABEL: app, TENANT_LABEL: tenant}
    )


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
    """ServiceAccount, code ConfigMap, Deployment, disruption budget, Service, VirtualService
    and DestinationRule of an App.

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
        api_object(
            "v1",
            "ServiceAccount",
            object_meta(name, labels, namespace, owner),
            automountServiceAccountToken=False,
        ),
        api_object(
            "v1",
            "ConfigMap",
            object_meta(files_configmap_name(name), labels, namespace, owner),
            data=dict(spec.files),
        ),
        _deployment(name, namespace, tenant, spec, settings, labels, owner, image, tenant_groups),
        pod_disruption_budget(name, namespace, labels, _selector(name, tenant), owner),
        api_object(
            "v1",
            "Service",
            object_meta(name, labels, namespace, owner),
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
        destination_rule(name, namespace, labels, owner),
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
    env.append(replica_id_env())
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
        "securityContext": restricted_container(),
        # gRPC health (grpc.health.v1), as meshes and load balancers check it too.
        # Restoring grids can take a while: LIVENESS serves from the start, the server ("")
        # only once every grid is restored (traffic waits for it, the pod is not
        # restarted) and no longer once it drains. HTTP /healthz and /readyz say the same.
        "startupProbe": grpc_probe(LIVENESS, 2, 30),
        "livenessProbe": grpc_probe(LIVENESS, 10, 3),
        "readinessProbe": grpc_probe("", 5, 2),
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
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "enableServiceLinks": False,
        "securityContext": restricted_pod(),
        "containers": [container],
        "volumes": [
            {"name": "app", "configMap": {"name": files_configmap_name(name)}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
        ],
    }
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    return api_object(
        "apps/v1",
        "Deployment",
        object_meta(name, labels, namespace, owner),
        spec={
            "replicas": 0 if spec.stopped else spec.replicas,
            "revisionHistoryLimit": 3,
            # Replicas of one app cooperate (one active, the others standbys), so old and
            # new pods may overlap: roll one at a time, never below the wanted count.
            "strategy": rolling_update(),
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

    return api_object(
        "networking.istio.io/v1",
        "VirtualService",
        object_meta(name, labels, namespace, owner),
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
