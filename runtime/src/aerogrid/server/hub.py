"""The grid hub: sequence numbers, recent changes and wake-ups for every subscriber.

Each grid has a channel. The engine publishes each committed batch of row changes as
one entry with the next sequence number. Subscribers keep only a cursor (the last
sequence they sent): when they wake up they merge the entries after their cursor, so
a slow subscriber gets the latest value of every changed row at its own pace and its
memory stays bounded. The channel keeps a bounded window of entries; a subscriber that
falls behind it gets a fresh snapshot instead. The common case — a subscriber that is
caught up and wants every column — shares one encoded delta per entry with all others.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass, field

from aerogrid import metrics
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.server.encoding import row_message
from aerogrid.v1 import grid_pb2

Changes = dict[RowKey, RowTuple | None]


@dataclass
class Entry:
    """One published batch of row changes (None: the row was deleted)."""

    seq: int
    changes: Changes
    encoded: bytes | None = field(default=None)


class GridChannel:
    """The publication side of one grid."""

    def __init__(
        self,
        app: str,
        grid: Grid,
        *,
        epoch: str,
        max_entries: int = 4096,
        max_rows: int = 1_000_000,
    ) -> None:
        self.app = app
        self.grid = grid
        self.epoch = epoch
        self.seq = 0
        self.max_entries = max_entries
        self.max_rows = max_rows
        self._entries: deque[Entry] = deque()
        self._rows_in_window = 0
        self._wakeup = asyncio.Event()
        self._ready = asyncio.Event()
        if grid.ready:
            self._ready.set()
        self.subscribers = 0
        self._merges: dict[tuple[int, int], tuple[bytes, int]] = {}

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def mark_ready(self) -> None:
        self._ready.set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def publish(self, changes: Changes) -> None:
        """Record a committed batch of changes and wake every waiting subscriber."""
        if not changes:
            return
        self.seq += 1
        self._entries.append(Entry(self.seq, changes))
        self._rows_in_window += len(changes)
        while self._entries and (
            len(self._entries) > self.max_entries or self._rows_in_window > self.max_rows
        ):
            self._rows_in_window -= len(self._entries.popleft().changes)
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    async def wait_after(self, seq: int, timeout: float) -> bool:
        """Wait until something after `seq` is published; False on timeout."""
        if self.seq > seq:
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return self.seq > seq
        return True

    def entries_after(self, seq: int) -> list[Entry] | None:
        """The entries after `seq`, or None when the window no longer reaches back there."""
        if seq == self.seq:
            return []
        if seq > self.seq or not self._entries or self._entries[0].seq > seq + 1:
            return None
        first = seq + 1 - self._entries[0].seq
        return [self._entries[i] for i in range(first, len(self._entries))]

    def shared_delta(self, entry: Entry) -> bytes:
        """The entry as a full-column Delta response, encoded once for all subscribers."""
        if entry.encoded is None:
            entry.encoded = build_delta(entry.seq, entry.changes, None, None, 0)
        return entry.encoded

    def shared_merge(self, cursor: int, entries: list[Entry]) -> tuple[bytes, int]:
        """Entries after `cursor` merged into one full-column Delta, and the rows merged.

        Subscribers that fell behind together (they were sent the same messages, so they
        share a cursor) share one encoding: the cache is keyed by (cursor, last seq).
        """
        key = (cursor, entries[-1].seq)
        cached = self._merges.get(key)
        if cached is not None:
            return cached
        merged: Changes = {}
        total = 0
        for entry in entries:
            merged.update(entry.changes)
            total += len(entry.changes)
        conflated = total - len(merged)
        result = (build_delta(key[1], merged, None, None, conflated), conflated)
        if len(self._merges) >= 64:
            self._merges.pop(next(iter(self._merges)))
        self._merges[key] = result
        return result


def build_delta(
    seq: int,
    changes: Changes,
    indices: list[int] | None,
    keys: frozenset[str] | None,
    conflated: int,
) -> bytes:
    upserts = []
    deletes = []
    for key, row in changes.items():
        if keys is not None and str(key) not in keys:
            continue
        if row is None:
            deletes.append(str(key))
        else:
            upserts.append(row_message(key, row, indices))
    delta = grid_pb2.Delta(seq=seq, upserts=upserts, deletes=deletes, conflated=conflated)
    return grid_pb2.SubscribeResponse(delta=delta).SerializeToString()


class GridHub:
    """Every grid channel of the apps one process serves."""

    def __init__(self) -> None:
        self.epoch = secrets.token_hex(8)
        self._channels: dict[tuple[str, str], GridChannel] = {}

    def add_grid(self, app: str, grid: Grid) -> GridChannel:
        channel = GridChannel(app, grid, epoch=self.epoch)
        self._channels[(app, grid.name)] = channel
        return channel

    def channel(self, app: str, grid: str) -> GridChannel | None:
        return self._channels.get((app, grid))

    def channels(self, app: str | None = None) -> list[GridChannel]:
        return [c for (a, _), c in self._channels.items() if app is None or a == app]

    def publish(self, app: str, grid: Grid, changes: Changes) -> None:
        channel = self._channels.get((app, grid.name))
        if channel is not None:
            channel.publish(changes)
            metrics.GRID_ROWS.labels(app, grid.name).set(len(grid))
