"""The platform's own objects: what `aerogrid platform install` applies once per cluster.

The CRDs, the system and build namespaces, the settings ConfigMap, the operator and the
catalog (each a Deployment with its RBAC; the catalog also a Service and routes on the
shared Gateway), the Gateway itself and mesh-wide strict mTLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aerogrid.routing import APP_HEADER
from aerogrid.server.grpc_standard import LIVENESS
from aerogrid_cloud import crds
from aerogrid_cloud.render.build import built_images_configmap
from aerogrid_cloud.render.common import (
    GRPC_PORT,
    HTTP_PORT,
    api_object,
    component_labels,
    grpc_probe,
    http_probe,
    namespace_object,
    object_meta,
    restricted_container,
    restricted_pod,
)
from aerogrid_cloud.render.identity import members_only, request_authentication
from aerogrid_cloud.render.rbac import (
    CATALOG_RULES,
    DEVELOPER_ROLE,
    DEVELOPER_RULES,
    OPERATOR_BUILD_RULES,
    OPERATOR_RULES,
    account_rbac,
)
from aerogrid_cloud.settings import PlatformSettings

__all__ = ["platform_objects"]

_OPERATOR: Final = "aerogrid-operator"
_CATALOG: Final = "aerogrid-catalog"
_OPERATOR_HEALTH_PORT: Final = 8080
_SETTINGS_CONFIGMAP: Final = "aerogrid-platform-settings"
_SETTINGS_DIR: Final = "/etc/aerogrid"
_CATALOG_SERVICE_PATH: Final = "/aerogrid.v1.CatalogService/"


def _platform_pod(
    account: str,
    container: dict[str, Any],
    *,
    automount: bool,
) -> dict[str, Any]:
    container = {
        **container,
        "imagePullPolicy": "IfNotPresent",
        "securityContext": restricted_container(),
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
        "securityContext": restricted_pod(),
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
    return api_object(
        "apps/v1",
        "Deployment",
        object_meta(name, {**labels, **selector}, namespace),
        spec={
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": {**labels, **selector}}, "spec": pod},
        },
    )


def _operator(settings: PlatformSettings) -> list[dict[str, Any]]:
    ns = settings.system_namespace
    labels = component_labels("operator")
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
                **http_probe("/healthz", "health", 20, 3),
                "initialDelaySeconds": 15,
            },
        },
        automount=True,
    )
    return [
        api_object("v1", "ServiceAccount", object_meta(_OPERATOR, labels, ns)),
        *account_rbac(_OPERATOR, ns, labels, OPERATOR_RULES),
        *account_rbac(
            _OPERATOR, ns, labels, OPERATOR_BUILD_RULES, role_namespace=settings.build_namespace
        ),
        _platform_deployment(_OPERATOR, ns, labels, pod),
    ]


def _catalog(settings: PlatformSettings) -> list[dict[str, Any]]:
    ns = settings.system_namespace
    labels = component_labels("catalog")
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
            # gRPC health: "" serves once the Apps are listed (as /readyz says).
            "livenessProbe": grpc_probe(LIVENESS, 10, 3),
            "readinessProbe": grpc_probe("", 5, 2),
        },
        automount=True,
    )
    service = api_object(
        "v1",
        "Service",
        object_meta(_CATALOG, labels, ns),
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
        api_object(
            "v1",
            "ServiceAccount",
            object_meta(_CATALOG, labels, ns),
            automountServiceAccountToken=True,
        ),
        *account_rbac(_CATALOG, ns, labels, CATALOG_RULES),
        _platform_deployment(_CATALOG, ns, labels, pod),
        service,
        api_object(
            "networking.istio.io/v1",
            "VirtualService",
            object_meta(_CATALOG, labels, ns),
            spec={"hosts": ["*"], "gateways": [settings.gateway_ref], "http": routes},
        ),
        request_authentication(_CATALOG, ns, labels, settings, None, selector),
        api_object(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            object_meta(_CATALOG, labels, ns),
            # Any tenant's member may ask; the catalog shows each only its tenants' apps.
            spec=members_only(settings, None, selector),
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
    return api_object(
        "networking.istio.io/v1",
        "Gateway",
        object_meta(settings.gateway_name, component_labels("gateway"), settings.gateway_namespace),
        spec={"selector": dict(settings.gateway_selector), "servers": [server]},
    )


def platform_objects(settings: PlatformSettings) -> list[dict[str, Any]]:
    """Everything `platform install` applies, in an order the API server accepts."""
    system = settings.system_namespace
    return [
        *crds.crds(),
        namespace_object(
            system,
            enforce="restricted",
            labels=component_labels("platform"),
            injection=settings.istio_injection,
        ),
        namespace_object(
            settings.build_namespace,
            enforce="baseline",
            labels=component_labels("build"),
            injection=False,
        ),
        api_object(
            "v1",
            "ConfigMap",
            object_meta(_SETTINGS_CONFIGMAP, component_labels("platform"), system),
            data={"settings.yaml": settings.to_yaml()},
        ),
        built_images_configmap(settings),
        api_object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            object_meta(DEVELOPER_ROLE, component_labels("platform")),
            rules=DEVELOPER_RULES,
        ),
        *_operator(settings),
        *_catalog(settings),
        _gateway(settings),
        api_object(
            "security.istio.io/v1",
            "PeerAuthentication",
            object_meta("default", component_labels("mesh"), settings.mesh_root_namespace),
            spec={"mtls": {"mode": "STRICT"}},
        ),
    ]
