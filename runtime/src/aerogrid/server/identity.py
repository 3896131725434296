"""Who is calling: the result of authentication, used by every service to filter by tenant."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Caller:
    """An authenticated caller.

    `tenants` is None for a caller that may see every tenant (an anonymous caller on
    loopback when the server allows it); otherwise the set of tenants it belongs to.

    `live_tenants`, when set, asks that set again: a caller whose tenants come from a map
    that changes while a call lasts (a JWT's groups on the cluster catalog, looked up in
    the Tenants) gets one, so a long call (a WatchApps stream) can follow the map.
    """

    subject: str
    tenants: frozenset[str] | None
    live_tenants: Callable[[], frozenset[str]] | None = field(
        default=None, compare=False, repr=False
    )

    def may_see(self, tenant: str) -> bool:
        return self.tenants is None or tenant in self.tenants

    def current(self) -> Caller:
        """This caller with its tenants as they are now (itself when they cannot change)."""
        if self.live_tenants is None:
            return self
        return replace(self, tenants=self.live_tenants())


LOCAL_CALLER = Caller(subject="local", tenants=None)
