"""The grid hub: sequence numbers, recent changes and the cursors of every subscriber.

Each grid has a channel. The engine publishes each committed batch of row changes as one
entry, under the cycle number it was committed in (`engine.cycles`): every replica of
the app publishes the same state under the same seq and epoch, so seqs grow but skip
numbers, and a subscriber resumes on any replica from the (epoch, seq) it was last sent.
Each subscriber has a `SubscriptionCursor`, which keeps only the last sequence it sent:
when it wakes up it merges the entries after that, so a slow subscriber gets the latest
value of every changed row at its own pace and its memory stays bounded. The channel
keeps a bounded window of entries (of about twice the grid's rows in changes, beyond
which a snapshot is cheaper); a subscriber that falls behind it gets a fresh snapshot
instead. The common case — a subscriber that is caught up and wants every column —
shares one encoded delta per entry with all others.

Once a grid is served, its channel keeps the wire image of every row (the row encoded
once, when it changes), so deltas and snapshots for full-column subscribers are joins
of ready bytes. Publications can be coalesced (`coalesce_ms`): under load the engine
commits many small batches a second, and merging them before waking the subscribers
keeps all caught-up subscribers at one sequence, sharing one message.

A cursor is the whole of a subscription but its transport (snapshot, resume, merging,
filters, stale flags, heartbeats); every message it sends is built by messages.py.
"""

from __future__ import annotations

import asyncio
import bisect
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field

from aerogrid import metrics
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.messages import (
    delete_field,
    delta_message,
    delta_response,
    heartbeat_message,
    row_field,
    row_message,
    schema_message,
    snapshot_messages,
    snapshot_response,
)
from aerogrid.v1 import grid_pb2

Changes = dict[RowKey, RowTuple | None]

#: The window holds at most this many row changes per row of the grid (plus
#: MIN_WINDOW_ROWS): replaying more changes than that costs more than a snapshot, and
#: under steady load a window of a fixed count of entries is mostly memory.
WINDOW_GRID_FACTOR = 2
MIN_WINDOW_ROWS = 1000
#: Merged deltas kept for subscribers last sent the same seq, in bytes at most.
MERGES_MAX_BYTES = 16 * 1024 * 1024
#: Rows per snapshot message.
SNAPSHOT_CHUNK_ROWS = 5000
#: How often an idle subscription hears from the server, unless it asks otherwise.
DEFAULT_HEARTBEAT_SECONDS = 5.0
#: How long a resume from a seq this replica has not reached yet waits for it (a client
#: moving from a replica a little further along); then it gets a snapshot.
RESUME_AHEAD_WAIT_SECONDS = 5.0


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
                key: delete_field(key) if row is None else row_field(key, row)
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
        #: How often the numbering changed under subscribers (see `set_position`).
        self.renumberings = 0
        #: The seq just before the window's first entry: resumes reach back to it.
        self._base = 0
        self._pending_seq = 0
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

    def set_position(
        self, epoch: str, seq: int, recent: Sequence[tuple[int, int, Changes]] = ()
    ) -> None:
        """The grid's epoch and seq as restored (before it is served), or a new numbering.

        `recent` — the last restored cycles as (seq before, seq, changes), ending at `seq` —
        seeds the window, so a subscriber a few cycles behind a restarted process resumes.

        A new numbering of a grid that has shown something ends every subscription on it
        (`SubscriptionCursor`): a subscriber keeps the epoch its schema said, and resumes
        with it on any replica. A new app's grid (empty, nothing published) keeps its
        subscribers: what they hold is the new numbering's start too, and ending their
        streams would flash "reconnecting" in every sheet at the app's first start.
        """
        renumbered = epoch != self.epoch and (self.seq > 0 or len(self.grid) > 0)
        if renumbered:
            self.renumberings += 1
        self.epoch = epoch
        self.seq = self._base = self._pending_seq = seq
        self._entries.clear()
        self._rows_in_window = 0
        self._merges.clear()
        self._merges_bytes = 0
        self._snapshot = None
        if recent and recent[-1][1] == seq:
            self._base = recent[0][0]
            for _, cycle, changes in recent:
                self._append(Entry(cycle, changes))
        if renumbered:
            wakeup, self._wakeup = self._wakeup, asyncio.Event()
            wakeup.set()

    def publish(self, changes: Changes, seq: int | None = None) -> None:
        """Record a committed batch of changes at `seq` (None: the next number) and wake
        every waiting subscriber.

        With coalescing, batches arriving within `coalesce_ms` of the last publication
        are merged into the next one (the first after a quiet spell goes out at once).
        """
        if not changes:
            return
        # Seqs only grow: a seq at or below the last (which the engine never gives) would
        # make a resuming subscriber skip these changes, so it takes the next number.
        if seq is None:  # numbered here: the next number when released
            seq = max(self.seq + 1, self._pending_seq if self._pending else 0)
        else:
            seq = max(seq, self.seq + 1, self._pending_seq + 1 if self._pending else 0)
        if not self.coalesce:
            self._release(changes, seq)
            return
        self._pending.update(changes)
        self._pending_seq = seq
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
            self._release(pending, self._pending_seq)

    def _release(self, changes: Changes, seq: int) -> None:
        self.seq = self._pending_seq = seq
        entry = Entry(seq, changes)
        if self._image is not None:
            for key, encoded in entry.wire_fields().items():
                if changes[key] is None:
                    self._image.pop(key, None)
                else:
                    self._image[key] = encoded
        self._append(entry)
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def _append(self, entry: Entry) -> None:
        """Add `entry` to the window, then trim the window to its bounds."""
        self._entries.append(entry)
        self._rows_in_window += len(entry.changes)
        max_rows = min(self.max_rows, MIN_WINDOW_ROWS + WINDOW_GRID_FACTOR * len(self.grid))
        while self._entries and (
            len(self._entries) > self.max_entries or self._rows_in_window > max_rows
        ):
            dropped = self._entries.popleft()
            self._rows_in_window -= len(dropped.changes)
            self._base = dropped.seq

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
                image[key] = row_field(key, row)
            await asyncio.sleep(0)
        if self._image is None:
            self._image = image

    def shared_snapshot(self, chunk_rows: int) -> list[bytes]:
        """The whole grid at `seq` as snapshot chunks, shared by every new subscriber."""
        if self._snapshot is not None and self._snapshot[0] == self.seq:
            return self._snapshot[1]
        if self._image is None:
            self._image = {key: row_field(key, row) for key, row in self.grid.rows().items()}
        rows = list(self._image.values())
        chunks = [
            snapshot_response(
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

    async def wait_reached(self, seq: int, timeout: float) -> bool:
        """Wait until this grid is at `seq` or beyond; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while self.seq < seq:
                    await self._wakeup.wait()
        except TimeoutError:
            return False
        return True

    def reaches(self, seq: int) -> bool:
        """Whether the window still holds every entry after `seq` (a subscriber there resumes).

        `seq` need not be one this replica published (another replica's, between two of
        ours): the entries after it bring a subscriber there to the same state.
        """
        return self._base <= seq <= self.seq

    def entries_after(self, seq: int) -> list[Entry] | None:
        """The entries after `seq`, or None when the window no longer reaches back there."""
        if seq == self.seq:
            return []
        if not self.reaches(seq):
            return None
        first = bisect.bisect_right(self._entries, seq, key=lambda entry: entry.seq)
        return [self._entries[i] for i in range(first, len(self._entries))]

    def shared_delta(self, entry: Entry) -> bytes:
        """The entry as a full-column Delta response, encoded once for all subscribers."""
        if entry.encoded is None:
            entry.encoded = delta_response(entry.seq, entry.wire_fields().values())
        return entry.encoded

    def shared_merge(self, after: int, entries: list[Entry]) -> tuple[bytes, int]:
        """Entries after seq `after` merged into one full-column Delta, and the rows merged.

        Subscribers that fell behind together (they were sent the same messages, so they
        were last sent the same seq) share one message: the cache is keyed by (after, last seq).
        Merging is joining the entries' encoded rows, latest per key.
        """
        key = (after, entries[-1].seq)
        cached = self._merges.get(key)
        if cached is not None:
            return cached
        merged: dict[RowKey, bytes] = {}
        total = 0
        for entry in entries:
            merged.update(entry.wire_fields())
            total += len(entry.changes)
        conflated = total - len(merged)
        result = (delta_response(key[1], merged.values(), conflated), conflated)
        self._merges_bytes += len(result[0])
        self._merges[key] = result
        while len(self._merges) > 64 or self._merges_bytes > MERGES_MAX_BYTES:
            self._merges_bytes -= len(self._merges.pop(next(iter(self._merges)))[0])
        return result


class SubscriptionCursor:
    """One subscriber's place in a grid's channel, and the messages that move it on.

    `messages()` sends the schema, then a snapshot (or nothing, when the request resumes
    from an (epoch, seq) the window still reaches), then deltas and heartbeats until it
    is closed. Entries that arrived while the subscriber was busy are merged into one
    delta (the latest value per row); one that fell behind the window gets a fresh
    snapshot. A subscriber filtering by key gets a delta only when one of its keys
    changed, and heartbeats (carrying the seq it moved on to) otherwise. Only the seq
    last sent is kept per subscriber.
    """

    def __init__(
        self, channel: GridChannel, request: grid_pb2.SubscribeRequest, state_lock: asyncio.Lock
    ) -> None:
        grid = channel.grid
        if request.columns:
            unknown = [c for c in request.columns if c not in grid.columns]
            if unknown:
                raise ServiceError(
                    Code.INVALID_ARGUMENT,
                    f"grid {request.app}.{request.grid} has no column(s) {', '.join(unknown)} "
                    f"(columns: {', '.join(grid.columns)})",
                )
        self.columns = list(request.columns or grid.columns)
        #: The columns sent, by index (None: all of them).
        self.indices = [grid.columns.index(c) for c in request.columns] or None
        #: The keys sent (None: all of them).
        self.keys = frozenset(request.keys) or None
        self.min_interval = request.min_interval_ms / 1000.0
        self.heartbeat = (
            max(0.1, request.heartbeat_interval_ms / 1000.0)
            if request.heartbeat_interval_ms
            else DEFAULT_HEARTBEAT_SECONDS
        )
        #: The seq the subscriber was last sent up to (None: before its first snapshot).
        self.seq: int | None = None
        self._channel = channel
        self._state_lock = state_lock
        self._resume = (request.resume_epoch, request.resume_seq)

    @property
    def shared(self) -> bool:
        """Whether the subscriber takes every row and column: it shares the channel's messages."""
        return self.indices is None and self.keys is None

    def fell_behind(self) -> bool:
        """Whether the window no longer reaches the seq the subscriber was last sent.

        It can then only be sent a fresh snapshot: a transport that cannot send (the
        client stopped reading) drops it (`connections.SendWatch`).
        """
        return self.seq is not None and not self._channel.reaches(self.seq)

    async def messages(self) -> AsyncGenerator[bytes, None]:
        """The subscription's serialized `SubscribeResponse`s, counted in the metrics."""
        channel = self._channel
        labels = (channel.app, channel.grid.name)
        channel.subscribers += 1
        metrics.SUBSCRIBERS.labels(*labels).inc()
        sent = metrics.UPDATES_SENT.labels(*labels)
        conflated_rows = metrics.ROWS_CONFLATED.labels(*labels)
        #: The staleness this subscriber was last told (the schema tells it first).
        told = channel.stale
        try:
            # The epoch is known once the grid is restored (it names the changelog's numbering).
            await channel.wait_ready()
            told = channel.stale
            renumberings = channel.renumberings
            yield schema_message(channel.app, channel.grid.name, self.columns, channel.epoch, told)
            epoch, resume_seq = self._resume
            resumes = epoch == channel.epoch
            if resumes and resume_seq > channel.seq:
                # From a replica a little further along: wait for this one to get there.
                resumes = await channel.wait_reached(resume_seq, RESUME_AHEAD_WAIT_SECONDS)
            if resumes and channel.entries_after(resume_seq) is not None:
                seq = self.seq = resume_seq
                if epoch:
                    metrics.RESUMES.labels(*labels, "delta").inc()
            else:
                if epoch:
                    metrics.RESUMES.labels(*labels, "snapshot").inc()
                seq, chunks = await self._snapshot()
                for chunk in chunks:
                    sent.inc()
                    yield chunk
            last_sent = last_heard = time.monotonic()
            while True:
                if channel.stale != told:
                    # Degraded, or healthy again: say so now, not at the next heartbeat.
                    told = channel.stale
                    last_heard = time.monotonic()
                    yield heartbeat_message(seq, told)
                # Heard from at least every `heartbeat` seconds, however often the grid
                # commits changes this subscriber does not take (see `_takes_none`).
                idle = max(0.0, last_heard + self.heartbeat - time.monotonic())
                if not await channel.wait_after(seq, idle):
                    last_heard = time.monotonic()
                    yield heartbeat_message(seq, told)
                    continue
                if channel.renumberings != renumberings:
                    # The numbering started over (the subscriber's epoch means nothing now):
                    # it resumes under the new one.
                    raise ServiceError(
                        Code.UNAVAILABLE,
                        f"grid {channel.app}.{channel.grid.name} has a new epoch; resume",
                    )
                if channel.stale != told:
                    continue
                if self.min_interval:
                    wait = last_sent + self.min_interval - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                entries = channel.entries_after(seq)
                if entries is None:
                    # Fell behind the window: start over from a fresh snapshot.
                    seq, chunks = await self._snapshot()
                    for chunk in chunks:
                        sent.inc()
                        yield chunk
                    last_sent = last_heard = time.monotonic()
                    continue
                if not entries:
                    continue
                if self._takes_none(entries):
                    # Moved on without a message: the next heartbeat says this seq, and a
                    # resume from the last one sent replays (and skips) these entries.
                    seq = self.seq = entries[-1].seq
                    continue
                message, conflated = self._delta(seq, entries)
                seq = self.seq = entries[-1].seq
                if conflated:
                    conflated_rows.inc(conflated)
                sent.inc()
                last_sent = last_heard = time.monotonic()
                yield message
        finally:
            channel.subscribers -= 1
            metrics.SUBSCRIBERS.labels(*labels).dec()

    async def _snapshot(self) -> tuple[int, list[bytes]]:
        """The grid's seq and snapshot chunks, taken between commits (never mid-cycle).

        A full-column snapshot from the channel's image needs no lock: the image holds
        only published (committed) rows, so it is served at once even while a batch waits
        minutes for a broker to commit it.
        """
        if self.shared and self._channel.has_image:
            return self._take_snapshot()
        async with self._state_lock:
            if self.shared:
                await self._channel.build_image()
            return self._take_snapshot()

    def _take_snapshot(self) -> tuple[int, list[bytes]]:
        """The grid now, in chunks all built before any is sent (so consistent).

        Moves the cursor to the channel's seq. Full-column subscribers share the
        channel's snapshot; filtered ones get their own.
        """
        channel = self._channel
        seq = self.seq = channel.seq
        if self.shared:
            return seq, channel.shared_snapshot(SNAPSHOT_CHUNK_ROWS)
        keys = self.keys
        rows = [
            row_message(key, row, self.indices)
            for key, row in channel.grid.rows().items()
            if keys is None or str(key) in keys
        ]
        return seq, snapshot_messages(seq, rows, SNAPSHOT_CHUNK_ROWS)

    def _takes_none(self, entries: list[Entry]) -> bool:
        """Whether none of the entries changes a key this subscriber filters on."""
        keys = self.keys
        if keys is None:
            return False
        return not any(str(key) in keys for entry in entries for key in entry.changes)

    def _delta(self, after: int, entries: list[Entry]) -> tuple[bytes, int]:
        """The entries after seq `after` as one Delta, and how many row changes it merged."""
        channel = self._channel
        if self.shared:
            if len(entries) == 1:
                return channel.shared_delta(entries[0]), 0
            return channel.shared_merge(after, entries)
        keys = self.keys
        merged: Changes = {}
        total = 0
        for entry in entries:
            for key, row in entry.changes.items():
                if keys is None or str(key) in keys:
                    merged[key] = row
                    total += 1
        conflated = total - len(merged)
        message = delta_message(entries[-1].seq, merged, self.indices, self.keys, conflated)
        return message, conflated


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

    def open_cursor(
        self, channel: GridChannel, request: grid_pb2.SubscribeRequest
    ) -> SubscriptionCursor:
        """A cursor for one subscriber of `channel` (ServiceError: a column it does not have)."""
        return SubscriptionCursor(channel, request, self.state_lock)

    def channel(self, app: str, grid: str) -> GridChannel | None:
        return self._channels.get((app, grid))

    def channels(self, app: str | None = None) -> list[GridChannel]:
        return [c for (a, _), c in self._channels.items() if app is None or a == app]

    def publish(self, app: str, grid: Grid, changes: Changes, seq: int | None = None) -> None:
        channel = self._channels.get((app, grid.name))
        if channel is not None:
            channel.publish(changes, seq)
            metrics.GRID_ROWS.labels(app, grid.name).set(len(grid))
