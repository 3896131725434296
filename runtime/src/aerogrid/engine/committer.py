"""How the active commits a cycle, in one of the two guarantees (see `engine.kafka`).

The `Committer` owns the active's producer. It writes each changed row to its grid's
changelog under the cycle's number (`cycles`), with the dead letters and the records the
app sent, then commits the input offsets: in one transaction, or followed by a checkpoint.
A transient broker failure is retried with the same outputs until the commit succeeds;
a producer fenced by a newer active (`Fenced`) is never replaced by this replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidTxnState,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from aerogrid import metrics
from aerogrid.app import App
from aerogrid.backoff import Backoff
from aerogrid.engine import changelog, checkpoints, cycles
from aerogrid.engine.follower import ChangelogFollower
from aerogrid.engine.guarantee import choose_producer
from aerogrid.engine.processor import Processor
from aerogrid.errors import AeroGridError, BrokerConnectionError
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.settings import BrokerSettings
from aerogrid.topics import OutgoingRecord

log = logging.getLogger("aerogrid.engine")

GridChanges = tuple[Grid, dict[RowKey, RowTuple | None]]


def is_transient(exc: BaseException) -> bool:
    """A broker failure that retrying can fix (a leader election, a broker away for a while).

    A transactional producer's sequence errors count too: the retry takes a new producer.
    """
    if isinstance(exc, _RECOVERABLE):
        return True
    return isinstance(exc, KafkaError) and bool(exc.retriable)


_RECOVERABLE = (
    KafkaTimeoutError,
    TimeoutError,
    BrokerConnectionError,
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidTxnState,
)


class StoppedUncommitted(AeroGridError):
    """A stop came while a batch waited to be committed; it is read again on the next start."""


class Fenced(AeroGridError):
    """Another replica became the active: this one may not commit any more."""


class Committer:
    """The active's producer and its commits."""

    def __init__(
        self,
        app: App,
        settings: BrokerSettings,
        processor: Processor,
        *,
        exactly_once: bool,
        stopping: Callable[[], bool],
        holding: Callable[[], bool],
        on_stall: Callable[[str | None], None],
    ) -> None:
        self.app = app
        self.settings = settings
        self.processor = processor
        self.exactly_once = exactly_once
        self._stopping = stopping
        self._holding = holding
        self._on_stall = on_stall
        #: The changelogs' numbering (see `cycles`), and the last cycle's number.
        self.lineage = ""
        self.cycle = 0
        #: Why the batch in flight cannot be committed, while it cannot.
        self.stall: str | None = None
        self._producer: AIOKafkaProducer | None = None
        self._transaction_open = False
        #: Checkpointed: every checkpoint so far, and this run's generation and batch.
        self._checkpoints = checkpoints.CheckpointLog()
        self._generation = 0
        self._batch = 0
        self._cycles = 0
        #: Tests only: AEROGRID_FAULT_INJECTION=crash-after-outputs=N SIGKILLs the process in
        #: its Nth cycle after the outputs are acknowledged and before the commit.
        self._crash_cycle = _crash_cycle_from_env()

    async def start(self, follower: ChangelogFollower) -> dict[str, int] | None:
        """Fence the previous active, take its numbering; the inputs' checkpointed positions
        ("topic:partition" → offset), or None where the group's committed offsets count."""
        chosen = await choose_producer(
            self.app.name, self.settings, "on" if self.exactly_once else "off"
        )
        self._producer = chosen.producer
        self._transaction_open = False
        # The previous active is fenced now: everything it committed can be read.
        await follower.catch_up()
        follower.take_over()
        self.lineage = follower.lineage or cycles.new_lineage()
        self.cycle = follower.cycle
        if follower.lineage is None:
            await self._announce_lineage()
        if self.exactly_once:
            return None
        # A new generation before the first cycle, so a crash in that cycle can never be
        # mistaken for a later run's (same generation, same batch number).
        self._checkpoints = follower.checkpoints
        self._generation = self._checkpoints.next_generation()
        self._batch = 0
        last = self._checkpoints.last
        resume = dict(last.inputs) if last else {}
        await self._write_checkpoint(self._producer, resume)
        return resume

    async def stop(self, timeout: float = 3.0) -> None:
        if self._producer is not None:
            await stop_producer(self._producer, timeout)
            self._producer = None

    async def commit(
        self, offsets: dict[TopicPartition, int], positions: dict[TopicPartition, int]
    ) -> list[GridChanges]:
        """Commit what the handlers did: the batch's `offsets` (transactions) or every input
        `positions` (checkpoints). The grids' changes, numbered `self.cycle`."""
        if self.exactly_once:
            return await self._commit_transactional(offsets)
        return await self._commit_checkpointed(positions)

    async def _commit_transactional(self, offsets: dict[TopicPartition, int]) -> list[GridChanges]:
        changes, outputs = self._drain_outputs()

        async def transaction() -> None:
            producer = await self._begin()
            await self._send(producer, outputs)
            self._maybe_crash()
            if offsets:
                await producer.send_offsets_to_transaction(offsets, self.app.name)
            await producer.commit_transaction()
            self._transaction_open = False

        await self._until_committed(transaction)
        return changes

    async def _commit_checkpointed(self, positions: dict[TopicPartition, int]) -> list[GridChanges]:
        producer = self._require_producer()
        self._batch += 1
        changes, outputs = self._drain_outputs(checkpoints.header(self._generation, self._batch))
        inputs = {f"{tp.topic}:{tp.partition}": o for tp, o in positions.items()}

        async def cycle() -> None:
            # A retry writes the cycle's changelog records again: the same rows under the
            # same cycle number, so restore reads the same grid.
            await self._send(producer, outputs)
            self._maybe_crash()
            await self._write_checkpoint(producer, inputs)

        await self._until_committed(cycle)
        return changes

    async def _announce_lineage(self) -> None:
        """A new app's numbering, written to every changelog before its first cycle, so
        standbys serve under the same epoch from the start (see `cycles.LINEAGE_KEY`)."""
        mark = (cycles.header(self.lineage, 0, last=True),)
        records = [
            OutgoingRecord(self.app.changelog_topic(name), cycles.LINEAGE_KEY, b"{}", mark)
            for name in self.app.grids
        ]
        if not records:
            return

        async def attempt() -> None:
            if not self.exactly_once:
                await self._send(self._require_producer(), records)
                return
            producer = await self._begin()
            await self._send(producer, records)
            await producer.commit_transaction()
            self._transaction_open = False

        await self._until_committed(attempt)

    async def _begin(self) -> AIOKafkaProducer:
        """A transaction begun (on a new producer if the last attempt left one open)."""
        if self._transaction_open:
            await self._renew_producer()
        producer = self._require_producer()
        await producer.begin_transaction()
        self._transaction_open = True
        return producer

    async def _renew_producer(self) -> None:
        """A new transactional producer after an attempt failed mid-transaction.

        The old one's sequence numbers may no longer match the broker's (a batch expired
        while a leader was away: OutOfOrderSequenceNumber on every later send), and aiokafka
        cannot reset them. InitProducerId under the same transactional id bumps the epoch,
        aborts the old transaction and fences the old producer — so only while this replica
        is still the active: otherwise it would fence its successor.
        """
        if not self._holding():
            raise Fenced(
                f"app {self.app.name}: another replica is the active now; this one stops "
                "processing (its batch in flight is processed by the active)"
            )
        old, self._producer = self._producer, None
        if old is not None:
            await stop_producer(old, 5)
        chosen = await choose_producer(self.app.name, self.settings, "on")
        self._producer = chosen.producer
        self._transaction_open = False

    async def _until_committed(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Run a commit `attempt` until it succeeds; a transient broker failure is retried.

        The batch is already in the grids, and its outputs are kept, so a retry commits the
        same outputs and input positions: nothing is lost or counted twice. A stop request
        ends the retries (`StoppedUncommitted`): the batch is read again on the next start.
        """
        backoff = Backoff(initial=0.5, maximum=10.0)
        while True:
            try:
                await attempt()
                if self.stall is not None:
                    log.info("app %s: the batch is committed; processing resumes", self.app.name)
                    self.stall = None
                    self._on_stall(None)
                return
            except (ProducerFenced, InvalidProducerEpoch) as exc:
                raise Fenced(
                    f"app {self.app.name}: fenced by another replica that became the active "
                    f"({type(exc).__name__}); this one's uncommitted batch is processed there"
                ) from exc
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self._stopping():
                    raise StoppedUncommitted(f"{type(exc).__name__}: {exc}") from exc
                delay = backoff.next_delay()
                metrics.COMMIT_RETRIES.labels(self.app.name).inc()
                self.stall = f"a batch waits to be committed ({type(exc).__name__})"
                self._on_stall(self.stall)
                log.warning(
                    "app %s: the batch could not be committed (%s: %s); retrying in %.1f s "
                    "(it is committed once, nothing is lost)",
                    self.app.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _write_checkpoint(self, producer: AIOKafkaProducer, inputs: dict[str, int]) -> None:
        checkpoint = checkpoints.Checkpoint(self._generation, self._batch, inputs)
        delivery = await producer.send(
            self.app.checkpoint_topic,
            key=str(self._generation).encode(),
            value=checkpoints.encode(checkpoint),
        )
        await delivery
        self._checkpoints.add(checkpoint)

    def _drain_outputs(
        self, checkpoint: tuple[str, bytes] | None = None
    ) -> tuple[list[GridChanges], list[OutgoingRecord]]:
        """The batch's grid changes, and every record to write for it (encoded once).

        Every changelog record carries the cycle's number; a grid's last one says so.
        """
        outputs: list[OutgoingRecord] = []
        changes: list[GridChanges] = []
        drained = [(grid, grid.drain_changes()) for grid in self.app.grids.values()]
        if any(grid_changes for _, grid_changes in drained):
            self.cycle += 1
        for grid, grid_changes in drained:
            changes.append((grid, grid_changes))
            if not grid_changes:
                continue
            topic = self.app.changelog_topic(grid.name)
            mark = cycles.header(self.lineage, self.cycle, last=False)
            headers = (checkpoint, mark) if checkpoint else (mark,)
            records = [
                OutgoingRecord(
                    topic, changelog.encode_key(key), changelog.encode_row(grid, row), headers
                )
                for key, row in grid_changes.items()
            ]
            last = cycles.header(self.lineage, self.cycle, last=True)
            final = records[-1]
            records[-1] = OutgoingRecord(
                final.topic, final.key, final.value, (checkpoint, last) if checkpoint else (last,)
            )
            outputs.extend(records)
        outputs += self.processor.drain_dead_letters()
        outputs += self.processor.outbox.drain()
        return changes, outputs

    @staticmethod
    async def _send(producer: AIOKafkaProducer, outputs: list[OutgoingRecord]) -> None:
        sends = [
            await producer.send(r.topic, key=r.key, value=r.value, headers=list(r.headers) or None)
            for r in outputs
        ]
        await asyncio.gather(*sends)

    def _maybe_crash(self) -> None:
        self._cycles += 1
        if self._crash_cycle is not None and self._cycles == self._crash_cycle:
            log.warning("fault injection: SIGKILL after the outputs of cycle %d", self._cycles)
            os.kill(os.getpid(), signal.SIGKILL)

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("the committer is not started")
        return self._producer


async def stop_producer(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(producer.stop(), timeout)


def _crash_cycle_from_env() -> int | None:
    spec = os.environ.get("AEROGRID_FAULT_INJECTION", "")
    name, _, value = spec.partition("=")
    return int(value) if name == "crash-after-outputs" and value.isdigit() else None
