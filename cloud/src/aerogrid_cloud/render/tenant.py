"""A tenant's objects: its namespace and what keeps it apart from every other tenant.

Pod Security `restricted` and sidecar injection on the namespace, a quota and limits, a
default-deny NetworkPolicy, the Istio token check and members-only policy, and the
RoleBinding that lets the tenant's groups manage its apps (and only them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aerogrid_cloud.model import (
    APP_PLURAL,
    GROUP,
    TENANT_LABEL,
    TenantSpec,
    check_name,
    namespace_for,
)
from aerogrid_cloud.render.common import (
    GRPC_PORT,
    HTTP_PORT,
    Owner,
    RenderError,
    api_object,
    component_labels,
    namespace_object,
    object_meta,
)
from aerogrid_cloud.render.identity import members_only, request_authentication
from aerogrid_cloud.render.rbac import DEVELOPER_ROLE
from aerogrid_cloud.settings import PlatformSettings

__all__ = ["tenant_labels", "tenant_objects"]


def tenant_labels(tenant: str) -> dict[str, str]:
    return component_labels("tenant", {TENANT_LABEL: tenant})


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
        namespace_object(
            namespace,
            enforce="restricted",
            labels=labels,
            injection=settings.istio_injection,
            owner=owner,
        ),
        api_object(
            "v1",
            "ResourceQuota",
            object_meta("aerogrid-tenant", labels, namespace, owner),
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
        api_object(
            "v1",
            "LimitRange",
            object_meta("aerogrid-tenant", labels, namespace, owner),
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
        request_authentication("aerogrid-jwt", namespace, labels, settings, owner),
        api_object(
            "security.istio.io/v1",
            "AuthorizationPolicy",
            object_meta("aerogrid-tenant-members", labels, namespace, owner),
            spec=members_only(settings, spec.groups),
        ),
        # The tenant's people may promote, stop, start and delete its apps (and only them).
        api_object(
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            object_meta(DEVELOPER_ROLE, labels, namespace, owner),
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
    return api_object(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        object_meta("aerogrid-default-deny", labels, namespace, owner),
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
