"""Who may call a tenant's apps (and the catalog): Istio's token check and member rule.

A RequestAuthentication checks the identity provider's JWTs; the AuthorizationPolicy
beside it admits only requests that carry one (of the tenant's groups, for a tenant).
Tenants and the platform's catalog use the same pair, so the rule is written once here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aerogrid_cloud.render.common import Owner, api_object, object_meta
from aerogrid_cloud.settings import PlatformSettings

__all__ = ["members_only", "request_authentication"]


def request_authentication(
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
    return api_object(
        "security.istio.io/v1",
        "RequestAuthentication",
        object_meta(name, labels, namespace, owner),
        spec=spec,
    )


def members_only(
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
