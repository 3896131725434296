"""A replica's copy of the grids: restored from the changelogs, then kept up by tailing them.

Every process of an app restores its grids with a `ChangelogFollower`; standbys and
serve-only replicas then keep following, the active stops following while it processes
(it writes the changelog itself). Records are applied in changelog order, and a grid is
published once its cycle is complete (the `!` mark of `cycles`), with the cycle's number
as seq: the same (epoch, seq) the active published for the same state.

With transactions the consumer reads `read_committed`, so every record it sees counts.
Checkpointed (a broker without transactions), a record counts once its cycle's checkpoint
is read (see `checkpoints`): until then it waits, with every later record of its
changelog behind it; records of a cycle that a later generation's checkpoint shows was
cut short are dropped, and their rows are written again by the next active (`dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from aerogrid import metrics
from aerogrid.app import App
from aerogrid.engine import changelog, checkpoints, cycles
from aerogrid.engine.inputs import partitions_of
from aerogrid.engine.restore import read_to_end
from aerogrid.errors import DecodeError
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

#: How the changelogs are read: committed records only, from the start, in large fetches.
READER_OPTIONS: dict[str, Any] = {
    "group_id": None,
    "enable_auto_commit": False,
    "isolation_level": "read_committed",
    "auto_offset_reset": "earliest",
    "max_poll_records": 10_000,
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 16 * 1024 * 1024,
    # Short long-polls: the end check waits for one to come back empty.
    "fetch_max_wait_ms": 50,
}

#: Restored cycles kept per grid to seed the hub's window (see `recent`).
RECENT_CYCLES = 64

#: Called with a grid, its changes and the seq they bring it to.
Publish = Callable[[Grid, dict[RowKey, RowTuple | None], int], None]


class ChangelogFollower:
    """Restores, then follows, every grid's changelog (and the checkpoints, checkpointed)."""

    def __init__(
        self,
        app: App,
        settings: BrokerSettings,
        *,
        checkpointed: bool,
        publish: Publish,
        state_lock: asyncio.Lock,
        on_lineage: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.checkpointed = checkpointed
        self.publish = publish
        self.state_lock = state_lock
        #: Called when a record brings a lineage this replica had not seen (a new app's
        #: first cycle, or a numbering started over): the grids' epochs change.
        self.on_lineage = on_lineage
        self.checkpoints = checkpoints.CheckpointLog()
        #: The changelogs' lineage (None: no cycle committed yet) and highest cycle number.
        self.lineage: str | None = None
        self.cycle = 0
        #: Each grid's seq: the number of the last cycle that changed it.
        self.seqs: dict[str, int] = dict.fromkeys(app.grids, 0)
        self._by_topic = {app.changelog_topic(g.name): g for g in app.grids.values()}
        self._decoders = {t: changelog.row_decoder(g) for t, g in self._by_topic.items()}
        #: Changes applied since each grid's last publication.
        self._changes: dict[str, dict[RowKey, RowTuple | None]] = {g: {} for g in app.grids}
        #: Checkpointed: records waiting for their cycle's checkpoint, per changelog.
        self._waiting: dict[str, deque[Any]] = {t: deque() for t in self._by_topic}
        #: Rows whose newest record was dropped (a cycle cut short): written again on takeover.
        self.dropped: set[tuple[Grid, RowKey]] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._publishing = False
        #: The last cycles read during restore, per grid: (seq before, seq, changes). They
        #: seed the hub's window, so a subscriber a few cycles behind a restarted process
        #: resumes by deltas, not a snapshot.
        self.recent: dict[str, deque[tuple[int, int, dict[RowKey, RowTuple | None]]]] = {
            g: deque(maxlen=RECENT_CYCLES) for g in app.grids
        }
        self._lag: dict[str, int] = dict.fromkeys(app.grids, 0)

    # -- restore -------------------------------------------------------------------------

    async def restore(self) -> None:
        """Read every changelog (and the checkpoints) to its end; the grids are then ready."""
        started = time.perf_counter()
        topics = list(self._by_topic)
        if self.checkpointed:
            topics.append(self.app.checkpoint_topic)
        if topics:
            consumer = self._consumer = AIOKafkaConsumer(
                **READER_OPTIONS, **self.settings.client_options()
            )
            await consumer.start()
            # Look every partition up before the first assign(): after it, the consumer's
            # metadata covers only the assigned topics.
            self._partitions = await partitions_of(consumer, topics)
            if self.checkpointed:
                await read_to_end(
                    consumer,
                    [tp for tp in self._partitions if tp.topic == self.app.checkpoint_topic],
                    self._take,
                )
            await read_to_end(consumer, self._partitions, self._take)
        self._publishing = True
        elapsed = time.perf_counter() - started
        for grid in self.app.grids.values():
            self._changes[grid.name].clear()
            grid.ready = True
            metrics.RESTORE_SECONDS.labels(self.app.name, grid.name).set(elapsed)
            metrics.GRID_ROWS.labels(self.app.name, grid.name).set(len(grid))
            log.info(
                "restored grid %s: %d rows (seq %d) in %.2fs",
                grid.name,
                len(grid),
                self.seqs[grid.name],
                elapsed,
            )

    # -- following -----------------------------------------------------------------------

    async def follow(self, stop: asyncio.Event) -> None:
        """Apply what the changelogs receive and publish each complete cycle, until `stop`."""
        consumer = self._consumer
        if consumer is None:
            await stop.wait()
            return
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            if batch:
                await self._apply_batch(batch)
            await self._update_lag()

    async def catch_up(self) -> None:
        """Apply everything committed now (the end as the broker says it, then a quiet poll).

        Called by a replica becoming the active, after its producer fenced the previous
        one: nothing more can be committed by anyone else.
        """
        consumer = self._consumer
        if consumer is None:
            return
        ends = await consumer.end_offsets(self._partitions)
        quiet = 0
        while True:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            if batch and any(batch.values()):
                quiet = 0
                await self._apply_batch(batch)
                continue
            quiet += 1
            positions = [await consumer.position(tp) for tp in self._partitions]
            reached = all(p >= ends[tp] for p, tp in zip(positions, self._partitions, strict=True))
            if reached or quiet >= 5:
                break
        await self._update_lag()

    def take_over(self) -> None:
        """The rows to write again now that this replica commits (see `dropped`)."""
        for topic, waiting in self._waiting.items():
            grid = self._by_topic[topic]
            for m in waiting:
                with contextlib.suppress(DecodeError):
                    self.dropped.add((grid, changelog.decode_key(m.key)))
            waiting.clear()
        for grid, key in self.dropped:
            grid.mark_changed(key)
        self.dropped.clear()

    def note_committed(self, grid: Grid, lineage: str, number: int) -> None:
        """The active committed cycle `number` of `grid` (so a later follow starts there)."""
        self.lineage = lineage
        self.cycle = max(self.cycle, number)
        self.seqs[grid.name] = number

    async def close(self, timeout: float = 3.0) -> None:
        if self._consumer is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._consumer.stop(), timeout)
            self._consumer = None

    def lag(self) -> dict[str, int]:
        """Records each grid's copy is behind its changelog, as of the last poll."""
        return dict(self._lag)

    # -- applying records ----------------------------------------------------------------

    async def _apply_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        async with self.state_lock:
            for tp, messages in batch.items():
                for m in messages:
                    try:
                        self._take(m)
                    except (ValueError, msgspec.DecodeError) as exc:
                        log.error("skipping unreadable record %s@%d: %s", tp, m.offset, exc)
            for name, changes in self._changes.items():
                if changes:
                    # Records written before cycle numbers: published under a local seq.
                    self._publish(self.app.grids[name], self.seqs[name] + 1)

    def _take(self, m: Any) -> None:
        if m.topic == self.app.checkpoint_topic:
            self.checkpoints.add(checkpoints.decode(m.value))
            self._release()
            return
        waiting = self._waiting[m.topic]
        if waiting or not self.checkpoints.is_committed(m.headers):
            waiting.append(m)
            if len(waiting) == 1:
                # A restore reads the checkpoints first: one that makes it dead may be known
                # already, and no checkpoint to come would release the records behind it.
                self._release()
            return
        self._apply(m)

    def _release(self) -> None:
        """Apply the waiting records whose checkpoint arrived; drop those of dead cycles."""
        for topic, waiting in self._waiting.items():
            grid = self._by_topic[topic]
            while waiting:
                m = waiting[0]
                if self.checkpoints.is_committed(m.headers):
                    self._apply(waiting.popleft())
                elif self._is_dead(m.headers):
                    waiting.popleft()
                    with contextlib.suppress(DecodeError):
                        self.dropped.add((grid, changelog.decode_key(m.key)))
                else:
                    break

    def _is_dead(self, headers: Any) -> bool:
        """A record of a generation that a later generation's checkpoint shows ended."""
        cycle = checkpoints.cycle_of(headers)
        if cycle is None:
            return False
        generation, _ = cycle
        return any(g > generation for g in self.checkpoints.completed)

    def _apply(self, m: Any) -> None:
        grid = self._by_topic[m.topic]
        mark = cycles.mark_of(m.headers)
        if mark is not None:
            if mark.lineage != self.lineage:
                if self.lineage is not None:
                    # The numbering started over (a changelog written anew): count afresh.
                    self.seqs = dict.fromkeys(self.seqs, 0)
                    self.cycle = 0
                self.lineage = mark.lineage
                if self._publishing:
                    self.on_lineage()
            elif mark.number <= self.seqs[grid.name]:
                # A cycle this copy holds already: its own, written while it was the active
                # (read again after it stepped down), or a cycle written twice (checkpointed).
                return
        if m.key == cycles.LINEAGE_KEY:
            return  # a new numbering's announcement: no row
        key = changelog.decode_key(m.key)
        row = self._decoders[m.topic](m.value)
        grid.load(key, row)
        self.dropped.discard((grid, key))
        self._changes[grid.name][key] = row
        if mark is None:
            return
        self.cycle = max(self.cycle, mark.number)
        if mark.last:
            if self._publishing:
                self._publish(grid, mark.number)
            else:
                changes, self._changes[grid.name] = self._changes[grid.name], {}
                self.recent[grid.name].append((self.seqs[grid.name], mark.number, changes))
                self.seqs[grid.name] = mark.number

    def _publish(self, grid: Grid, seq: int) -> None:
        changes, self._changes[grid.name] = self._changes[grid.name], {}
        if seq <= self.seqs[grid.name]:
            return  # a retried cycle written again (checkpointed): the same rows
        self.seqs[grid.name] = seq
        self.publish(grid, changes, seq)

    async def _update_lag(self) -> None:
        """The records between each grid's position and its changelog's last stable offset.

        The offsets come with every fetch (no request is made); the embedded broker's may
        be short of the truth (see FACTS.md), so its lag reads low, never high.
        """
        consumer = self._consumer
        if consumer is None:
            return
        lags = dict.fromkeys(self.app.grids, 0)
        for tp in self._partitions:
            grid = self._by_topic.get(tp.topic)
            end = consumer.last_stable_offset(tp) or consumer.highwater(tp)
            if grid is None or end is None:
                continue
            lags[grid.name] += max(0, end - await consumer.position(tp))
        self._lag = lags
        for name, lag in lags.items():
            metrics.REPLICA_LAG.labels(self.app.name, name).set(lag)
