"""Which tenants an identity-provider group belongs to, from the Tenants' `spec.groups`.

A Tenant lists the IdP groups whose members belong to it; the operator binds them to the
developer role and gives each app pod the same map (AEROGRID_GROUP_TENANTS). The catalog
serves every tenant from one pod, so it reads the map from the Tenant resources as they
change instead: the catalog feeds this index from its Tenant watch, and its
`Authenticator` asks it for each caller's groups. A group may belong to several tenants.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["TenantGroups"]

log = logging.getLogger("aerogrid.catalog")


def _groups_of(tenant: dict[str, Any]) -> frozenset[str]:
    """A Tenant object's `spec.groups` (the CRD's schema makes it a list of strings)."""
    groups = (tenant.get("spec") or {}).get("groups") or []
    if not isinstance(groups, list):
        return frozenset()
    return frozenset(g for g in groups if isinstance(g, str) and g)


def _name_of(tenant: dict[str, Any]) -> str:
    return str((tenant.get("metadata") or {}).get("name") or "")


class TenantGroups:
    """The live group → tenants map: `reset`, `upsert` and `delete` follow the Tenants."""

    def __init__(self) -> None:
        #: tenant → its groups, as last seen.
        self._groups: dict[str, frozenset[str]] = {}
        #: group → the tenants listing it (derived from `_groups` on every change).
        self._tenants: dict[str, frozenset[str]] = {}

    def tenants_of(self, group: str) -> frozenset[str]:
        """The tenants whose `spec.groups` list `group` (none: empty)."""
        return self._tenants.get(group, frozenset())

    def reset(self, tenants: list[dict[str, Any]]) -> None:
        """Every Tenant, after a (re)list: forget the ones not in it."""
        self._groups = {name: _groups_of(t) for t in tenants if (name := _name_of(t))}
        self._reindex()

    def upsert(self, tenant: dict[str, Any]) -> None:
        name = _name_of(tenant)
        if name:
            self._groups[name] = _groups_of(tenant)
            self._reindex()

    def delete(self, tenant: dict[str, Any]) -> None:
        if self._groups.pop(_name_of(tenant), None) is not None:
            self._reindex()

    def _reindex(self) -> None:
        index: dict[str, set[str]] = {}
        for tenant, groups in self._groups.items():
            for group in groups:
                index.setdefault(group, set()).add(tenant)
        # Swapped in whole: an authentication in between sees the old map or the new one.
        self._tenants = {group: frozenset(names) for group, names in index.items()}
        log.debug("catalog: %d tenants, %d groups", len(self._groups), len(self._tenants))
