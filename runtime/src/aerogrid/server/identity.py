"""Who is calling: the result of authentication, used by every service to filter by tenant."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    `tenants` is None for a caller that may see every tenant (an anonymous caller on
    loopback when the server allows it); otherwise the set of tenants it belongs to.
    """

    subject: str
    tenants: frozenset[str] | None

    def may_see(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants


LOCAL_CALLER = Caller(subject="local", tenants=None)
