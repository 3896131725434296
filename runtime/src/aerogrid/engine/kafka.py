"""The active replica's work: the consume–process–commit loop.

Each cycle reads a batch, runs it through the Processor, writes the changed rows to the
grids' changelogs (plus dead letters and records the app sent), commits the input
offsets, and only then publishes the changes to subscribers, under the cycle's number
(`cycles`). `engine.replica` decides when this replica is the active; until then the
engine only watches the broker.

Two guarantees, chosen when the engine starts:

* exactly-once (brokers with transactions, e.g. Apache Kafka): one transactional
  producer per app (transactional id = app name, which fences a restarted instance);
  changelog writes, dead letters, sent records and the input offsets commit in one
  transaction; restore and input reads are read_committed. After any crash the grids
  hold the effect of every input record exactly once.
* checkpointed (brokers without transactions, e.g. the embedded broker): each cycle's
  changelog records carry the cycle's number and count only once the cycle's checkpoint
  (with the input positions) is acknowledged; see `checkpoints`. After any crash the
  grids hold the effect of every input record exactly once; dead letters and records
  the app sent are at-least-once (a cycle cut short is replayed).

A replica becoming the active fences the previous one by starting the app's transactional
producer (same transactional id); a fenced engine's commit fails with `Fenced` and it
never retries with a new producer once it is no longer the group's active.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

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
from aerogrid.engine.crash_journal import CrashJournal
from aerogrid.engine.follower import ChangelogFollower
from aerogrid.engine.guarantee import ExactlyOnce, Guarantee, choose_producer
from aerogrid.engine.health import BrokerWatch
from aerogrid.engine.inputs import Batch, InputReader, InputsLost
from aerogrid.engine.processor import Processor, RawRecord, RecordLike, StopProcessing
from aerogrid.engine.topic_admin import ensure_topics
from aerogrid.errors import AeroGridError, BrokerConnectionError
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.settings import BrokerSettings
from aerogrid.topics import OutgoingRecord

log = logging.getLogger("aerogrid.engine")

#: Called with a grid, its committed changes and the seq (cycle number) they bring it to.
Publish = Callable[[Grid, dict[RowKey, RowTuple | None], int], None]
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


class CrashedTwice(AeroGridError):
    """The process died twice while a handler ran this record."""


class Fenced(AeroGridError):
    """Another replica became the active: this one may not commit any more."""


class UnreadableRecord(AeroGridError):
    """The Kafka client cannot parse these records (so no decoder ever sees them)."""


class Status(StrEnum):
    STARTING = "starting"
    RESTORING = "restoring"
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"


class KafkaEngine:
    """Runs one app against one Kafka cluster."""

    def __init__(
        self,
        app: App,
        *,
        settings: BrokerSettings | None = None,
        publish: Publish | None = None,
        exactly_once: ExactlyOnce = "auto",
        max_batch: int = 20_000,
        state_lock: asyncio.Lock | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or app.broker
        self.publish: Publish = publish or (lambda grid, changes, seq: None)
        self.exactly_once = exactly_once
        self.max_batch = max_batch
        #: Held from processing a batch to publishing it (see GridHub.state_lock).
        self.state_lock = state_lock or asyncio.Lock()
        self.processor = Processor(app)
        self.status = Status.STARTING
        self.status_message = ""
        self.guarantee: Guarantee | None = None
        #: Why exactly-once is not in use although `auto` asked for it.
        self.downgrade_reason: str | None = None
        self._producer: AIOKafkaProducer | None = None
        self._inputs: InputReader | None = None
        self._journal: CrashJournal | None = None
        self._watch: BrokerWatch | None = None
        #: Set by the broker watch, acted on between cycles: why to resynchronise, and
        #: whether the inputs must be read again from their start.
        self._resync: tuple[str, bool] | None = None
        self._transaction_open = False
        #: Why the batch in flight cannot be committed, while it cannot.
        self._commit_stall: str | None = None
        self._partitions_added = False
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        #: Checkpointed mode: what the checkpoint topic said at restore, and this run's cycle.
        self._checkpoints = checkpoints.CheckpointLog()
        self._generation = 0
        self._batch = 0
        self._cycles = 0
        self._group_commit: asyncio.Task[None] | None = None
        #: Tests only: AEROGRID_FAULT_INJECTION=crash-after-outputs=N SIGKILLs the process in
        #: its Nth cycle after the outputs are acknowledged and before the commit.
        self._crash_cycle = _crash_cycle_from_env()
        #: The changelogs' numbering (see `cycles`), from the follower at activation.
        self.lineage = ""
        self.cycle = 0
        self._follower: ChangelogFollower | None = None
        #: Whether this replica still holds the active role (the replica group says).
        self.holding: Callable[[], bool] = lambda: True
        #: Held for the length of a cycle: a revocation waits for the cycle in flight.
        self.cycle_lock = asyncio.Lock()
        self.on_status: Callable[[Status], None] = lambda status: None
        #: Called when the broker becomes unreachable (with why) or reachable again (None).
        self.on_outage: Callable[[str | None], None] = lambda outage: None

    # -- lifecycle -------------------------------------------------------------------

    async def prepare(self) -> None:
        """Choose the guarantee (without fencing a running active), create missing topics,
        and watch the broker. Every replica does this; only the active then processes."""
        chosen = await choose_producer(
            self.app.name,
            self.settings,
            self.exactly_once,
            on_wait=lambda message: self.set_status(self.status, message),
            transactional_id=f"{self.app.name}.probe",
        )
        await _stop_producer(chosen.producer)
        self.guarantee = chosen.guarantee
        self.downgrade_reason = chosen.downgrade_reason
        metrics.GUARANTEE.labels(self.app.name, chosen.guarantee.value).set(1)
        self.set_status(self.status, "")
        await ensure_topics(
            self.app, self.settings, checkpointed=self.guarantee is Guarantee.CHECKPOINTED
        )
        self._watch = BrokerWatch(
            self.app.name,
            self.settings,
            owned_topics=self._owned_topics,
            input_partitions=lambda: self._inputs.assigned() if self._inputs else {},
            on_reachable=self.on_outage,
            on_topics_lost=self._topics_lost,
            on_partitions_added=self._partitions_grew,
        )
        self._watch.start()

    async def activate(self, follower: ChangelogFollower) -> None:
        """Become the active: fence the previous one, catch up, then consume from its commit."""
        exactly_once = self.guarantee is Guarantee.EXACTLY_ONCE
        chosen = await choose_producer(
            self.app.name, self.settings, "on" if exactly_once else "off"
        )
        self._producer = chosen.producer
        self._transaction_open = False
        # The previous active is fenced now: everything it committed can be read.
        await follower.catch_up()
        follower.take_over()
        self._follower = follower
        self.lineage = follower.lineage or cycles.new_lineage()
        self.cycle = follower.cycle
        if follower.lineage is None:
            await self._announce_lineage(exactly_once)
        resume: dict[str, int] | None = None
        if not exactly_once:
            # A new generation before the first cycle, so a crash in that cycle can never be
            # mistaken for a later run's (same generation, same batch number).
            self._checkpoints = follower.checkpoints
            self._generation = self._checkpoints.next_generation()
            self._batch = 0
            last = self._checkpoints.last
            resume = dict(last.inputs) if last else {}
            await self._write_checkpoint(self._producer, resume)
        if self.app.streams:
            self._journal = CrashJournal.open(self.app.name)
            self._inputs = InputReader(
                self.app.name, self.app.input_topics(), self.settings, self.max_batch
            )
            await self._inputs.start(resume)
        self.processor.start()
        for timer in self.app.timers:
            self._background.append(
                asyncio.create_task(self._run_timer(timer.name, timer.interval, timer.handler))
            )
        for task in self.app.tasks:
            self._background.append(asyncio.create_task(self._run_task(task.name, task.handler)))
        log.info(
            "app %s active on %s with %s processing, from cycle %d",
            self.app.name,
            self.settings.bootstrap,
            self.guarantee.value if self.guarantee else "?",
            self.cycle,
        )

    async def deactivate(self, timeout: float = 3.0) -> None:
        """Stop processing (another replica is the active now); the grids stay as committed."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.processor.stop()
        if self._inputs is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._inputs.stop(), timeout)
            self._inputs = None
        if self._producer is not None:
            await _stop_producer(self._producer, timeout)
            self._producer = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    async def _announce_lineage(self, exactly_once: bool) -> None:
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
            if not exactly_once:
                await self._send(self._require_producer(), records)
                return
            if self._transaction_open:
                await self._renew_producer()
            producer = self._require_producer()
            await producer.begin_transaction()
            self._transaction_open = True
            await self._send(producer, records)
            await producer.commit_transaction()
            self._transaction_open = False

        await self._until_committed(attempt)

    def request_stop(self) -> None:
        """Finish the cycle in flight, commit it, then let `run()` return."""
        self._stopping.set()

    @property
    def outage(self) -> str | None:
        """Why the grids cannot move on now: the broker is unreachable, or a commit waits."""
        if self._watch and self._watch.outage:
            return self._watch.describe_outage()
        return self._commit_stall

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self) -> None:
        """The consume–process–commit loop, until `request_stop()` or the role is lost."""
        try:
            while not self._stopping.is_set() and self.holding():
                async with self.cycle_lock:
                    if not self.holding():
                        break
                    await self._apply_broker_changes()
                    await self._cycle()
            if self._stopping.is_set() and self.holding():
                async with self.cycle_lock:
                    await self._cycle(final=True)
        except StoppedUncommitted as exc:
            log.warning(
                "app %s stopped with a batch not committed (%s); it is read again on the next "
                "start",
                self.app.name,
                exc,
            )
        except (StopProcessing, Fenced) as exc:
            self.set_status(Status.FAILED, str(exc))
            raise
        except Exception as exc:
            self.set_status(Status.FAILED, f"{type(exc).__name__}: {exc}")
            raise

    async def close(self, timeout: float = 3.0) -> None:
        """Stop everything; each client gets `timeout` seconds (a broker may be down)."""
        if self._watch is not None:
            await self._watch.stop()
        if self._group_commit is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._group_commit, timeout)
        await self.deactivate(timeout)
        if self.status is not Status.FAILED:
            self.set_status(Status.STOPPED)

    # -- one cycle -------------------------------------------------------------------

    async def _cycle(self, *, final: bool = False) -> None:
        batch = Batch()
        if self._inputs is not None and not final:
            try:
                batch = await self._inputs.read()
            except InputsLost as exc:
                self._resync = (str(exc), True)
                return
        elif not final:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.05)
        if (
            not batch.records
            and not batch.unreadable
            and not self.processor.outbox
            and not any(g.has_changes() for g in self.app.grids.values())
        ):
            self._update_lag()
            return
        async with self.state_lock:
            started = time.perf_counter()
            if self.guarantee is Guarantee.EXACTLY_ONCE:
                changes = await self._commit_transactional(batch)
            else:
                changes = await self._commit_checkpointed(batch)
            metrics.BATCH_SECONDS.labels(self.app.name).observe(time.perf_counter() - started)
            if self._inputs is not None:
                self._inputs.positions.update(batch.offsets)
            for grid, grid_changes in changes:
                if grid_changes:
                    if self._follower is not None:
                        self._follower.note_committed(grid, self.lineage, self.cycle)
                    self.publish(grid, grid_changes, self.cycle)
                    metrics.GRID_ROWS.labels(self.app.name, grid.name).set(len(grid))
        self._update_lag()

    async def _process(self, batch: Batch) -> None:
        """Run the batch through the handlers, noted in the crash journal (see there)."""
        for tp, start, end, why in batch.unreadable:
            self._dead_letter_unprocessable(
                RawRecord(tp.topic, tp.partition, start, None, None),
                UnreadableRecord(
                    f"the Kafka client cannot read offsets {start}..{end - 1} of "
                    f"{tp.topic}[{tp.partition}] ({why}); they are skipped, and still in "
                    "the topic for other tools"
                ),
                stage="decode",
            )
        journal = self._journal
        if journal is None or not batch.records:
            await self.processor.process(batch.records)
            return
        if not journal.suspects and not journal.quarantined:
            journal.processing(batch.ranges)
            await self.processor.process(batch.records)
            journal.done()
            return
        # After a crash in the handlers: the suspects one at a time, the rest together.
        together: list[RecordLike] = []
        for record in batch.records:
            where = (record.topic, record.partition, record.offset)
            if where in journal.quarantined:
                journal.quarantined.discard(where)
                self._dead_letter_unprocessable(
                    record,
                    CrashedTwice(
                        f"record {record.topic}[{record.partition}]@{record.offset} crashed "
                        "the app twice (the process died while its handler ran); it is "
                        "skipped so that it cannot stop the app"
                    ),
                    stage="handler",
                )
            elif journal.is_suspect(*where):
                journal.processing({where[:2]: (record.offset, record.offset)}, single=True)
                await self.processor.process([record])
                journal.done()
            else:
                together.append(record)
            journal.passed(*where)
        if together:
            journal.processing(batch.ranges)
            await self.processor.process(together)
            journal.done()

    def _dead_letter_unprocessable(
        self, record: RecordLike, error: AeroGridError, *, stage: str
    ) -> None:
        """Dead-letter a record the streams never saw (whatever their `on_error`)."""
        streams = [spec.name for spec in self.processor.routes.get(record.topic, [])]
        self.processor.dead_letter(record, error, stage=stage, stream=",".join(streams))

    async def _commit_transactional(self, batch: Batch) -> list[GridChanges]:
        await self._process(batch)
        changes, outputs = self._drain_outputs()

        async def transaction() -> None:
            if self._transaction_open:
                await self._renew_producer()
            producer = self._require_producer()
            await producer.begin_transaction()
            self._transaction_open = True
            await self._send(producer, outputs)
            self._maybe_crash()
            if batch.offsets:
                await producer.send_offsets_to_transaction(batch.offsets, self.app.name)
            await producer.commit_transaction()
            self._transaction_open = False

        await self._until_committed(transaction)
        return changes

    async def _commit_checkpointed(self, batch: Batch) -> list[GridChanges]:
        producer = self._require_producer()
        offsets = batch.offsets
        await self._process(batch)
        self._batch += 1
        changes, outputs = self._drain_outputs(checkpoints.header(self._generation, self._batch))
        positions = {**self._inputs.positions, **offsets} if self._inputs else {}
        inputs = {f"{tp.topic}:{tp.partition}": o for tp, o in positions.items()}

        async def cycle() -> None:
            # A retry writes the cycle's changelog records again: the same rows under the
            # same cycle number, so restore reads the same grid.
            await self._send(producer, outputs)
            self._maybe_crash()
            await self._write_checkpoint(producer, inputs)

        await self._until_committed(cycle)
        # The group's offsets are only for tools (a restart resumes from the checkpoint),
        # so they are committed in the background, one commit at a time, off the hot path.
        idle = self._group_commit is None or self._group_commit.done()
        if offsets and self._inputs is not None and idle:
            self._group_commit = asyncio.create_task(self._commit_group(positions))
        return changes

    async def _renew_producer(self) -> None:
        """A new transactional producer after an attempt failed mid-transaction.

        The old one's sequence numbers may no longer match the broker's (a batch expired
        while a leader was away: OutOfOrderSequenceNumber on every later send), and aiokafka
        cannot reset them. InitProducerId under the same transactional id bumps the epoch,
        aborts the old transaction and fences the old producer.
        """
        if not self.holding():
            raise Fenced(
                f"app {self.app.name}: another replica is the active now; this one stops "
                "processing (its batch in flight is processed by the active)"
            )
        old, self._producer = self._producer, None
        if old is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(old.stop(), 5)
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
                if self._commit_stall is not None:
                    log.info("app %s: the batch is committed; processing resumes", self.app.name)
                    self._commit_stall = None
                    self.on_outage(None)
                return
            except (ProducerFenced, InvalidProducerEpoch) as exc:
                raise Fenced(
                    f"app {self.app.name}: fenced by another replica that became the active "
                    f"({type(exc).__name__}); this one's uncommitted batch is processed there"
                ) from exc
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if self._stopping.is_set():
                    raise StoppedUncommitted(f"{type(exc).__name__}: {exc}") from exc
                delay = backoff.next_delay()
                metrics.COMMIT_RETRIES.labels(self.app.name).inc()
                self._commit_stall = f"a batch waits to be committed ({type(exc).__name__})"
                self.on_outage(self._commit_stall)
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

    # -- what the broker watch found ------------------------------------------------------

    def _owned_topics(self) -> list[str]:
        """The topics this app created or reads; one missing means the broker lost it."""
        owned = [*self.app.input_topics(), *map(self.app.changelog_topic, self.app.grids)]
        if self.app.streams:
            owned.append(self.app.dlq_topic)
        if self.guarantee is Guarantee.CHECKPOINTED:
            owned.append(self.app.checkpoint_topic)
        return owned

    def _topics_lost(self, lost: list[str]) -> None:
        if self._resync is not None:
            return
        inputs = set(self.app.input_topics())
        owned = set(self._owned_topics()) - inputs
        # An input topic gone, or everything the app wrote gone: the broker lost its data
        # (input topics may already be back, auto-created empty by a producer).
        everything = bool(inputs & set(lost)) or owned <= set(lost)
        self._resync = (f"topics {', '.join(lost)} vanished from the broker", everything)

    def _partitions_grew(self, added: dict[str, int]) -> None:
        self._partitions_added = True

    async def _apply_broker_changes(self) -> None:
        """Between cycles: follow added input partitions; resynchronise after data loss."""
        if self._partitions_added and self._inputs is not None:
            self._partitions_added = False
            await self._inputs.follow({})
        if self._resync is None:
            return
        reason, reread_inputs = self._resync
        log.error(
            "app %s: %s (was the broker restarted without its data?): recreating the app's "
            "topics; the grids keep their state and are written to their changelogs again%s",
            self.app.name,
            reason,
            "; input is read again from the start of the recreated topics" if reread_inputs else "",
        )
        metrics.RESYNCS.labels(self.app.name).inc()
        await ensure_topics(
            self.app, self.settings, checkpointed=self.guarantee is Guarantee.CHECKPOINTED
        )
        async with self.state_lock:
            for grid in self.app.grids.values():
                for key in grid:
                    grid.mark_changed(key)
            if reread_inputs and self._inputs is not None:
                await self._inputs.restart_from_beginning()
        self._resync = None

    async def _commit_group(self, positions: dict[TopicPartition, int]) -> None:
        """Checkpointed mode's group offsets: only for tools, so a failure is just logged."""
        assert self._inputs is not None
        try:
            await self._inputs.consumer.commit(positions)
        except Exception as exc:
            log.debug("group offsets not committed (tools may show lag): %r", exc)

    # -- start-up --------------------------------------------------------------------

    # -- timers and tasks ----------------------------------------------------------------

    async def _run_timer(
        self, name: str, interval: float, handler: Callable[[], Awaitable[None]]
    ) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                with self.processor.outbox.bound():
                    await handler()
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.TASK_ERRORS.labels(self.app.name, name).inc()
                log.exception(
                    "timer %s of app %s failed; it runs again next time", name, self.app.name
                )

    async def _run_task(self, name: str, handler: Callable[[], Awaitable[None]]) -> None:
        try:
            with self.processor.outbox.bound():
                await handler()
        except asyncio.CancelledError:
            raise
        except Exception:
            metrics.TASK_ERRORS.labels(self.app.name, name).inc()
            log.exception("task %s of app %s failed", name, self.app.name)

    # -- helpers -------------------------------------------------------------------------

    def _maybe_crash(self) -> None:
        self._cycles += 1
        if self._crash_cycle is not None and self._cycles == self._crash_cycle:
            log.warning("fault injection: SIGKILL after the outputs of cycle %d", self._cycles)
            os.kill(os.getpid(), signal.SIGKILL)

    def _require_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("engine not started")
        return self._producer

    def set_status(self, status: Status, message: str = "") -> None:
        self.status = status
        self.status_message = message
        self.on_status(status)

    def _update_lag(self) -> None:
        if self._inputs is not None:
            self._inputs.update_lag()


async def _stop_producer(producer: AIOKafkaProducer, timeout: float = 5.0) -> None:
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(producer.stop(), timeout)


def _crash_cycle_from_env() -> int | None:
    spec = os.environ.get("AEROGRID_FAULT_INJECTION", "")
    name, _, value = spec.partition("=")
    return int(value) if name == "crash-after-outputs" and value.isdigit() else None
