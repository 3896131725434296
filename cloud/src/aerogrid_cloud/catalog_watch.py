"""The catalog's way of following one kind of resource: list, then watch, in a task.

The catalog keeps the cluster's Apps and Tenants in memory; each is read by one list and
the watch from that list's version, on the serving event loop (lightkube's async client).
A watch that expires (410 Gone) or breaks is replaced by a fresh list, so the cache
never drifts; the API server being away only delays the next list (with backoff).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aerogrid.backoff import Backoff
from aerogrid_cloud.kube import Gone, Kube, KubeError, ResourceType

__all__ = ["ResourceWatcher"]

log = logging.getLogger("aerogrid.catalog")

#: An object as the API server returned it (a plain dict).
_Object = dict[str, Any]


class ResourceWatcher:
    """List, then watch, the objects of `rtype` in a task; report each change through callbacks.

    `on_reset(objects)` gets every object after each (re)list; `on_upsert(obj)` and
    `on_delete(obj)` the changes in between.
    """

    def __init__(
        self,
        kube: Kube,
        rtype: ResourceType,
        *,
        on_reset: Callable[[list[_Object]], None],
        on_upsert: Callable[[_Object], None],
        on_delete: Callable[[_Object], None],
        namespace: str | None = None,
        watch_seconds: int = 60,
        retry_seconds: float = 2.0,
    ) -> None:
        self.kube = kube
        self.rtype = rtype
        self._on_reset = on_reset
        self._on_upsert = on_upsert
        self._on_delete = on_delete
        self.namespace = namespace
        self.watch_seconds = watch_seconds
        self.retry_seconds = retry_seconds
        #: monotonic time of the last answer from the API server (a list, an event), and
        #: the error since, if any.
        self.last_contact = 0.0
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start following, on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"aerogrid-catalog-watch-{self.rtype.plural}"
        )

    async def stop(self) -> None:
        """End the watch now and wait for its task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        what = self.rtype.qualified
        backoff = Backoff(initial=self.retry_seconds, maximum=30.0)
        while True:
            try:
                await self._list_and_watch()
            except Gone:
                log.info("catalog: the watch of %s expired; listing again", what)
                backoff.reset()
            except KubeError as exc:
                self.last_error = str(exc)
                log.warning("catalog: cannot follow %s: %s", what, exc)
                await asyncio.sleep(backoff.next_delay())
            except Exception:  # a bug must not end one of the catalog's watches silently
                log.exception("catalog: the watch of %s failed", what)
                await asyncio.sleep(backoff.next_delay())

    async def _list_and_watch(self) -> None:
        listed = await self.kube.list(self.rtype, self.namespace)
        self._touch()
        self._on_reset(listed.items)
        async for event in self.kube.watch(
            self.rtype,
            self.namespace,
            resource_version=listed.resource_version,
            timeout_seconds=self.watch_seconds,
        ):
            self._touch()
            if event.type == "DELETED":
                self._on_delete(event.object)
            else:
                self._on_upsert(event.object)

    def _touch(self) -> None:
        self.last_contact = time.monotonic()
        self.last_error = ""
