"""What every reconcile pass shares: the cluster it writes to, and how it writes status.

Status is written whole, through the status subresource, only when it changed (the
timestamps of conditions whose status stayed are kept, so an unchanged pass writes nothing).
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from aerogrid_cloud.kube import TENANTS, Kube, ResourceType
from aerogrid_cloud.model import Condition
from aerogrid_cloud.render import FIELD_MANAGER, resource_type
from aerogrid_cloud.settings import PlatformSettings

__all__ = ["TENANTS", "Cluster", "Transient", "condition", "validation_message"]


class Transient(Exception):
    """A pass that should be retried soon (the API server away, a write conflict)."""


@dataclass(frozen=True)
class Cluster:
    """The operator's one client and the platform's settings, as every pass needs them."""

    kube: Kube
    platform: PlatformSettings
    _passes: dict[tuple[str, str | None, str], asyncio.Lock] = field(
        default_factory=dict, compare=False, repr=False
    )

    @asynccontextmanager
    async def one_pass(self, kind: str, name: str, namespace: str | None) -> AsyncIterator[None]:
        """One reconcile pass of an object at a time.

        kopf serialises an object's change handlers, but not its resync timer, nor the
        passes other objects' events start (a quota counted, a rollout progressed, a
        Tenant's update bringing its Apps along); without this, two passes could write
        the same status from different reads.
        """
        key = (kind, namespace, name)
        lock = self._passes.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and self._passes.get(key) is lock:
                del self._passes[key]

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator (forced: what it renders wins)."""
        return await self.kube.apply(
            resource_type(obj), obj, field_manager=FIELD_MANAGER, force=True
        )

    async def write_status(
        self,
        rtype: ResourceType,
        name: str,
        namespace: str | None,
        old: Any,
        new: dict[str, Any],
    ) -> None:
        if isinstance(old, Mapping) and _same(old, new):
            return
        await self.kube.merge_patch(
            rtype,
            name,
            {"status": new},
            namespace=namespace,
            status=True,
            action="update status of",
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    previous: Iterable[Mapping[str, Any]],
) -> Condition:
    """A condition whose lastTransitionTime moves only when its status does."""
    status = "Unknown" if ok is None else str(ok)
    since = _now()
    for old in previous:
        if old.get("type") == type_ and old.get("status") == status:
            since = str(old.get("lastTransitionTime") or since)
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def _same(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Equal statuses, whatever the timestamps say (they are kept when unchanged anyway)."""

    def strip(status: Mapping[str, Any]) -> Any:
        status = copy.deepcopy(dict(status))
        for item in status.get("conditions") or []:
            item.pop("lastTransitionTime", None)
        return status

    return bool(strip(old) == strip(new))


def validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'spec'}: {error['msg']}"
        for error in exc.errors()
    )
