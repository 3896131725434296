"""The grid hub: sequence numbers, recent changes and wake-ups for every subscriber.

Each grid has a channel. The engine publishes each committed batch of row changes as
one entry with the next sequence number. Subscribers keep only a cursor (the last
sequence they sent): when they wake up they merge the entries after their cursor, so
a slow subscriber gets the latest value of every changed row at its own pace and its
memory stays bounded. The channel keeps a bounded window of entries (of about twice
the grid's rows in changes, beyond which a snapshot is cheaper); a subscriber that
falls behind it gets a fresh snapshot instead. The common case — a subscriber that is
caught up and wants every column — shares one encoded delta per entry with all others.

Once a grid is served, its channel keeps the wire image of every row (the row encoded
once, when it changes), so deltas and snapshots for full-column subscribers are joins
of ready bytes (see wire.py). Publications can be coalesced (`coalesce_ms`): under load
the engine commits many small batches a second, and merging them before waking the
subscribers keeps all caught-up subscribers on one cursor, sharing one message.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from dataclasses import dataclass, field

from aerogrid import metrics
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.server import wire
from aerogrid.server.encoding import row_message
from aerogrid.v1 import grid_pb2

Changes = dict[RowKey, RowTuple | None]

#: The window holds at most this many row changes per row of the grid (plus
#: MIN_WINDOW_ROWS): replaying more changes than that costs more than a snapshot, and
#: under steady load a window of a fixed count of entries is mostly memory.
WINDOW_GRID_FACTOR = 2
MIN_WINDOW_ROWS = 1000
#: Merged deltas kept for subscribers that share a cursor, in bytes at most.
MERGES_MAX_BYTES = 16 * 1024 * 1024


@dataclass
class Entry:
    """One published batch of row changes (None: the row was deleted)."""

    seq: int
    changes: Changes
    encoded: bytes | None = field(default=None)
    #: Each change as its tagged wire field (an upsert or a delete), once encoded.
    fields: dict[RowKey, bytes] | None = field(default=None)

    def wire_fields(self) -> dict[RowKey, bytes]:
        if self.fields is None:
            self.fields = {
                key: wire.delete_field(key) if row is None else wire.row_field(key, row)
                for key, row in self.changes.items()
            }
        return self.fields


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
        coalesce_ms: int = 0,
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
        self._merges_bytes = 0
        #: The wire image of every row (tagged row fields), kept once the grid is served.
        self._image: dict[RowKey, bytes] | None = None
        self._snapshot: tuple[int, list[bytes]] | None = None
        self.coalesce = coalesce_ms / 1000.0
        self._pending: Changes = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        #: Why the app cannot update this grid now (None: it can); see GridHub.set_degraded.
        self.stale: str | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def mark_ready(self) -> None:
        self._ready.set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def set_stale(self, reason: str | None) -> None:
        """Mark the grid stale (None: fresh again) and wake every subscriber to say so."""
        if reason == self.stale:
            return
        self.stale = reason
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def publish(self, changes: Changes) -> None:
        """Record a committed batch of changes and wake every waiting subscriber.

        With coalescing, batches arriving within `coalesce_ms` of the last publication
        are merged into the next one (the first after a quiet spell goes out at once).
        """
        if not changes:
            return
        if not self.coalesce:
            self._release(changes)
            return
        self._pending.update(changes)
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self.coalesce - loop.time()
        if wait <= 0:
            self._flush()
        else:
            self._flush_handle = loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        pending, self._pending = self._pending, {}
        if pending:
            self._release(pending)

    def _release(self, changes: Changes) -> None:
        self.seq += 1
        entry = Entry(self.seq, changes)
        if self._image is not None:
            for key, encoded in entry.wire_fields().items():
                if changes[key] is None:
                    self._image.pop(key, None)
                else:
                    self._image[key] = encoded
        self._entries.append(entry)
        self._rows_in_window += len(changes)
        max_rows = min(self.max_rows, MIN_WINDOW_ROWS + WINDOW_GRID_FACTOR * len(self.grid))
        while self._entries and (
            len(self._entries) > self.max_entries or self._rows_in_window > max_rows
        ):
            self._rows_in_window -= len(self._entries.popleft().changes)
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    @property
    def has_image(self) -> bool:
        """The wire image exists: it changes only on publication, so it is committed state."""
        return self._image is not None

    async def build_image(self, batch: int = 20_000) -> None:
        """Encode every row once, yielding to the event loop between batches.

        Called under the hub's state lock (no commit can change the rows meanwhile), so
        a million-row grid does not stall the other subscribers while it is encoded.
        """
        if self._image is not None:
            return
        items = list(self.grid.rows().items())
        image: dict[RowKey, bytes] = {}
        for start in range(0, len(items), batch):
            for key, row in items[start : start + batch]:
                image[key] = wire.row_field(key, row)
            await asyncio.sleep(0)
        if self._image is None:
            self._image = image

    def shared_snapshot(self, chunk_rows: int) -> list[bytes]:
        """The whole grid at `seq` as snapshot chunks, shared by every new subscriber."""
        if self._snapshot is not None and self._snapshot[0] == self.seq:
            return self._snapshot[1]
        if self._image is None:
            self._image = {key: wire.row_field(key, row) for key, row in self.grid.rows().items()}
        rows = list(self._image.values())
        chunks = [
            wire.snapshot_response(
                self.seq, rows[start : start + chunk_rows], start + chunk_rows >= len(rows)
            )
            for start in range(0, max(len(rows), 1), chunk_rows)
        ]
        self._snapshot = (self.seq, chunks)
        return chunks

    async def wait_after(self, seq: int, timeout: float) -> bool:
        """Wait until something after `seq` is published; False on timeout."""
        if self.seq > seq:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            return self.seq > seq
        return True

    def reaches(self, seq: int) -> bool:
        """Whether the window still holds every entry after `seq` (a subscriber there resumes)."""
        if seq == self.seq:
            return True
        return bool(self._entries) and self._entries[0].seq <= seq + 1 and seq < self.seq

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
            entry.encoded = wire.delta_response(entry.seq, entry.wire_fields().values())
        return entry.encoded

    def shared_merge(self, cursor: int, entries: list[Entry]) -> tuple[bytes, int]:
        """Entries after `cursor` merged into one full-column Delta, and the rows merged.

        Subscribers that fell behind together (they were sent the same messages, so they
        share a cursor) share one message: the cache is keyed by (cursor, last seq).
        Merging is joining the entries' encoded rows, latest per key.
        """
        key = (cursor, entries[-1].seq)
        cached = self._merges.get(key)
        if cached is not None:
            return cached
        merged: dict[RowKey, bytes] = {}
        total = 0
        for entry in entries:
            merged.update(entry.wire_fields())
            total += len(entry.changes)
        conflated = total - len(merged)
        result = (wire.delta_response(key[1], merged.values(), conflated), conflated)
        self._merges_bytes += len(result[0])
        self._merges[key] = result
        while len(self._merges) > 64 or self._merges_bytes > MERGES_MAX_BYTES:
            self._merges_bytes -= len(self._merges.pop(next(iter(self._merges)))[0])
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

    def __init__(self, *, coalesce_ms: int = 0) -> None:
        self.epoch = secrets.token_hex(8)
        self.coalesce_ms = coalesce_ms
        #: Held by the engine from processing a batch to publishing it, and by snapshot
        #: builders: a snapshot never shows a change that is not committed yet.
        self.state_lock = asyncio.Lock()
        self._channels: dict[tuple[str, str], GridChannel] = {}
        self._degraded: dict[str, str] = {}

    def add_grid(self, app: str, grid: Grid) -> GridChannel:
        channel = GridChannel(app, grid, epoch=self.epoch, coalesce_ms=self.coalesce_ms)
        channel.stale = self._degraded.get(app)
        self._channels[(app, grid.name)] = channel
        return channel

    def set_degraded(self, app: str, reason: str | None) -> None:
        """Say that `app` cannot update its grids now, and why (None: it can again).

        Its grids keep serving their last committed state; every subscriber is told at
        once (a heartbeat carrying `Stale`), and every heartbeat repeats it while it lasts.
        """
        if reason is None:
            self._degraded.pop(app, None)
        else:
            self._degraded[app] = reason
        for channel in self.channels(app):
            channel.set_stale(reason)

    def channel(self, app: str, grid: str) -> GridChannel | None:
        return self._channels.get((app, grid))

    def channels(self, app: str | None = None) -> list[GridChannel]:
        return [c for (a, _), c in self._channels.items() if app is None or a == app]

    def publish(self, app: str, grid: Grid, changes: Changes) -> None:
        channel = self._channels.get((app, grid.name))
        if channel is not None:
            channel.publish(changes)
            metrics.GRID_ROWS.labels(app, grid.name).set(len(grid))
