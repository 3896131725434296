"""The platform's async `Kube` client driven from synchronous test code.

Fixtures and the threads that stand in for the operator or a kubelet are plain functions;
`BlockingKube` runs the client's coroutines on one private event loop in a thread (the
client belongs to the loop that first uses it), and turns its watch into an iterator that
a `threading.Event` can end.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from aerogrid_cloud.kube import Kube, ObjectList, ResourceType, WatchEvent, connect
from support.lifecycle import Closing

_T = TypeVar("_T")


class BlockingKube(Closing):
    """A `Kube` whose methods block; `close()` (or `with`) ends its loop."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="blocking-kube", daemon=True
        )
        self._thread.start()

    @classmethod
    def connect(
        cls, kubeconfig: str | os.PathLike[str], context: str | None = None
    ) -> BlockingKube:
        return cls(connect(kubeconfig, context))

    @property
    def context(self) -> str:
        return self.kube.context

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine of the client (or one that uses it) on the client's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def apply(
        self,
        rtype: ResourceType,
        obj: Mapping[str, Any],
        *,
        field_manager: str,
        force: bool = True,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        return self.run(
            self.kube.apply(rtype, obj, field_manager=field_manager, force=force, dry_run=dry_run)
        )

    def get(self, rtype: ResourceType, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.run(self.kube.get(rtype, name, namespace))

    def list(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> ObjectList:
        return self.run(self.kube.list(rtype, namespace, labels=labels))

    def create(
        self, rtype: ResourceType, obj: Mapping[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        return self.run(self.kube.create(rtype, obj, dry_run=dry_run))

    def merge_patch(
        self,
        rtype: ResourceType,
        name: str,
        patch: Mapping[str, Any],
        *,
        namespace: str | None = None,
        status: bool = False,
    ) -> dict[str, Any]:
        return self.run(
            self.kube.merge_patch(rtype, name, patch, namespace=namespace, status=status)
        )

    def delete(self, rtype: ResourceType, name: str, namespace: str | None = None) -> None:
        self.run(self.kube.delete(rtype, name, namespace))

    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str,
        timeout_seconds: int = 300,
        stop: threading.Event | None = None,
    ) -> Iterator[WatchEvent]:
        """The watch's events, until it raises or `stop` is set.

        A task on the client's loop follows the watch into a queue; leaving the iterator
        cancels the task, which ends the watch's request.
        """
        received: queue.Queue[WatchEvent | Exception | None] = queue.Queue()

        async def follow() -> None:
            try:
                async for event in self.kube.watch(
                    rtype,
                    namespace,
                    resource_version=resource_version,
                    timeout_seconds=timeout_seconds,
                ):
                    received.put(event)
                received.put(None)
            except Exception as exc:
                received.put(exc)

        task = asyncio.run_coroutine_threadsafe(follow(), self._loop)
        try:
            while True:
                try:
                    item = received.get(timeout=0.1)
                except queue.Empty:
                    if stop is not None and stop.is_set():
                        return
                    continue
                if item is None:
                    return
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            task.cancel()

    def close(self) -> None:
        try:
            self.run(self.kube.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
