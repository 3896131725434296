"""What the grid model does with updates before it applies them: it measures their rate,
and while paused it holds them, the latest value of each row only."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from aerogrid_devkit.tui.grid.feed import UpdateLike

__all__ = ["HeldUpdates", "UpdateRate"]

Rows = dict[str, Mapping[str, Any]]


class UpdateRate:
    """Row updates per second over the last second, counted in tenths of a second."""

    def __init__(self) -> None:
        self._buckets: deque[tuple[int, int]] = deque()

    def count(self, updates: int, now: float) -> None:
        if not updates:
            return
        bucket = int(now * 10)
        buckets = self._buckets
        if buckets and buckets[-1][0] == bucket:
            buckets[-1] = (bucket, buckets[-1][1] + updates)
        else:
            buckets.append((bucket, updates))
            self._trim(bucket)

    def per_second(self, now: float) -> float:
        self._trim(int(now * 10))
        return float(sum(n for _, n in self._buckets))

    def _trim(self, bucket: int) -> None:
        oldest = bucket - 9  # ten tenths of a second, this one included
        buckets = self._buckets
        while buckets and buckets[0][0] < oldest:
            buckets.popleft()


class HeldUpdates:
    """Updates that arrived while paused, conflated: a snapshot, then one change per row."""

    def __init__(self) -> None:
        #: Row updates held since the pause (a snapshot counts none).
        self.count = 0
        self._snapshot: Rows | None = None
        self._upserts: Rows = {}
        self._deletes: set[str] = set()

    def hold(self, update: UpdateLike) -> None:
        if update.snapshot:
            self._snapshot = dict(update.upserts)
            self._upserts.clear()
            self._deletes.clear()
            return
        for key, row in update.upserts.items():
            self._upserts[key] = row
            self._deletes.discard(key)
        for key in update.deletes:
            self._upserts.pop(key, None)
            self._deletes.add(key)
        self.count += len(update.upserts) + len(update.deletes)

    def take(self) -> tuple[Rows | None, Rows, set[str]]:
        """The held snapshot (if any), upserts and deletes, in that order; empties it."""
        held = self._snapshot, self._upserts, self._deletes
        self._snapshot, self._upserts, self._deletes = None, {}, set()
        self.count = 0
        return held
