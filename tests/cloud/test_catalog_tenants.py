"""The catalog's group → tenants index, fed as its Tenant watch feeds it (no cluster needed;
tests/cloud/test_catalog.py follows real Tenants on an API server)."""

from __future__ import annotations

from typing import Any

from aerogrid_cloud.catalog_tenants import TenantGroups


def tenant(name: str, *groups: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"displayName": name, "groups": list(groups)}}


def test_a_group_maps_to_every_tenant_listing_it() -> None:
    index = TenantGroups()
    index.reset([tenant("trading", "desk", "shared"), tenant("risk", "shared")])
    assert index.tenants_of("desk") == {"trading"}
    assert index.tenants_of("shared") == {"trading", "risk"}
    assert index.tenants_of("trading") == frozenset()  # names are the Authenticator's rule
    assert index.tenants_of("nobody") == frozenset()


def test_changes_deletions_and_relists_replace_what_was_known() -> None:
    index = TenantGroups()
    index.reset([tenant("trading", "desk"), tenant("risk", "shared")])
    index.upsert(tenant("trading", "other"))  # the group left the tenant
    assert index.tenants_of("desk") == frozenset()
    assert index.tenants_of("other") == {"trading"}
    index.delete(tenant("risk"))
    assert index.tenants_of("shared") == frozenset()
    # A relist after a broken watch: a Tenant deleted meanwhile is forgotten.
    index.upsert(tenant("sales", "s"))
    index.reset([tenant("trading", "desk")])
    assert index.tenants_of("s") == frozenset()
    assert index.tenants_of("desk") == {"trading"}


def test_malformed_tenants_grant_nothing() -> None:
    index = TenantGroups()
    index.reset(
        [
            {"metadata": {}, "spec": {"groups": ["g"]}},  # no name
            {"metadata": {"name": "t"}, "spec": {"groups": "g"}},  # not a list
            {"metadata": {"name": "u"}, "spec": {"groups": ["", 7, "ok"]}},
            {"metadata": {"name": "v"}},  # no spec
        ]
    )
    assert index.tenants_of("g") == frozenset()
    assert index.tenants_of("") == frozenset()
    assert index.tenants_of("ok") == {"u"}
