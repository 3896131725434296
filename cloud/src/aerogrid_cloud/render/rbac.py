"""What each identity may do in the API: the tenant developer role, operator and catalog.

`aerogrid platform install` grants these; each list holds only the verbs its holder uses,
so a test can compare them with what the operator and the CLI actually call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from aerogrid_cloud.model import APP_PLURAL, GROUP, TENANT_PLURAL
from aerogrid_cloud.render.common import api_object, object_meta

__all__ = [
    "CATALOG_RULES",
    "DEVELOPER_ROLE",
    "DEVELOPER_RULES",
    "OPERATOR_BUILD_RULES",
    "OPERATOR_RULES",
    "account_rbac",
]


def _rule(groups: Sequence[str], resources: Sequence[str], verbs: Sequence[str]) -> dict[str, Any]:
    return {"apiGroups": list(groups), "resources": list(resources), "verbs": list(verbs)}


#: What a tenant's developers may do in its namespace: what `aerogrid promote`, `apps`,
#: `stop`, `start` and `delete` need (server-side apply that creates asks for create).
DEVELOPER_ROLE: Final = "aerogrid-developer"
DEVELOPER_RULES: Final = [
    _rule([GROUP], [APP_PLURAL], ["get", "list", "watch", "create", "patch", "delete"]),
]
#: Every API the operator touches, and only the verbs it uses (it never deletes: owner
#: references and the garbage collector do; it never reads Secrets, nor Pods outside the
#: build namespace).
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
    _rule(["policy"], ["poddisruptionbudgets"], ["get", "create", "patch"]),
    _rule(["networking.k8s.io"], ["networkpolicies"], ["get", "create", "patch"]),
    _rule(
        ["security.istio.io"],
        ["requestauthentications", "authorizationpolicies"],
        ["get", "create", "patch"],
    ),
    _rule(
        ["networking.istio.io"], ["virtualservices", "destinationrules"], ["get", "create", "patch"]
    ),
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
#: In the build namespace only: the build Jobs (their ConfigMaps are in the rules above),
#: and their pods, whose termination message says why a build failed.
OPERATOR_BUILD_RULES: Final = [
    _rule(["batch"], ["jobs"], ["get", "create", "patch"]),
    _rule([""], ["pods"], ["list"]),
]
CATALOG_RULES: Final = [_rule([GROUP], [APP_PLURAL, TENANT_PLURAL], ["get", "list", "watch"])]


def account_rbac(
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
        api_object(
            "rbac.authorization.k8s.io/v1",
            kind,
            object_meta(name, labels, role_namespace),
            rules=rules,
        ),
        api_object(
            "rbac.authorization.k8s.io/v1",
            f"{kind}Binding",
            object_meta(name, labels, role_namespace),
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            subjects=[subject],
        ),
    ]
