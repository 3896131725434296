"""The active replica's work: the consume–process–commit loop.

Each cycle reads a batch, runs it through the Processor, has the `Committer`
(`committer`) write the changed rows to the grids' changelogs (plus dead letters and
records the app sent) and commit the input offsets, and only then publishes the changes
to subscribers, under the cycle's number (`cycles`). `engine.replica` decides when this
replica is the active; until then the engine only watches the broker.

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
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from aiokafka import TopicPartition

from aerogrid import metrics
from aerogrid.app import App
from aerogrid.engine.committer import Committer, Fenced, StoppedUncommitted, stop_producer
from aerogrid.engine.crash_journal import CrashJournal
from aerogrid.engine.follower import ChangelogFollower
from aerogrid.engine.guarantee import ExactlyOnce, Guarantee, choose_producer
from aerogrid.engine.health import BrokerWatch
from aerogrid.engine.inputs import Batch, InputReader, InputsLost
from aerogrid.engine.processor import Processor, RawRecord, RecordLike, StopProcessing
from aerogrid.engine.schema_loading import SchemaLoader
from aerogrid.engine.topic_admin import ensure_topics
from aerogrid.errors import AeroGridError
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

#: Called with a grid, its committed changes and the seq (cycle number) they bring it to.
Publish = Callable[[Grid, dict[RowKey, RowTuple | None], int], None]


class CrashedTwice(AeroGridError):
    """The process died twice while a handler ran this record."""


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
        self._committer: Committer | None = None
        self._inputs: InputReader | None = None
        self._journal: CrashJournal | None = None
        self._watch: BrokerWatch | None = None
        #: Set by the broker watch, acted on between cycles: why to resynchronise, and
        #: whether the inputs must be read again from their start.
        self._resync: tuple[str, bool] | None = None
        self._partitions_added = False
        self._stopping = asyncio.Event()
        self._background: list[asyncio.Task[None]] = []
        self._group_commit: asyncio.Task[None] | None = None
        self._follower: ChangelogFollower | None = None
        #: The app's schema registry, when a topic uses a registry format.
        self._schemas: SchemaLoader | None = None
        #: A batch read but not decoded yet: its writer schemas wait for the registry.
        self._held: Batch | None = None
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
        and watch the broker. Every replica does this; only the active then processes.

        A registry-format topic first needs the schema registry configured and accepting
        the app's credentials (else ConfigurationError / RegistryAuthError: no start)."""
        self._schemas = await SchemaLoader.open(self.app)
        if self._schemas is not None:
            self._schemas.on_change = lambda outage: self.on_outage(outage)
        chosen = await choose_producer(
            self.app.name,
            self.settings,
            self.exactly_once,
            on_wait=lambda message: self.set_status(self.status, message),
            transactional_id=f"{self.app.name}.probe",
        )
        await stop_producer(chosen.producer)
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
        self._committer = committer = Committer(
            self.app,
            self.settings,
            self.processor,
            exactly_once=self.guarantee is Guarantee.EXACTLY_ONCE,
            stopping=self._stopping.is_set,
            holding=lambda: self.holding(),
            on_stall=lambda stall: self.on_outage(stall),
        )
        resume = await committer.start(follower)
        self._follower = follower
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
            committer.cycle,
        )

    async def deactivate(self, timeout: float = 3.0) -> None:
        """Stop processing (another replica is the active now); the grids stay as committed."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.processor.stop()
        self._held = None
        if self._inputs is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._inputs.stop(), timeout)
            self._inputs = None
        if self._committer is not None:
            await self._committer.stop(timeout)
            self._committer = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def request_stop(self) -> None:
        """Finish the cycle in flight, commit it, then let `run()` return."""
        self._stopping.set()

    @property
    def outage(self) -> str | None:
        """Why the grids cannot move on now: the broker is unreachable, or a commit waits."""
        if self._watch and self._watch.outage:
            return self._watch.describe_outage()
        if self._committer and self._committer.stall:
            return self._committer.stall
        return self._schemas.outage if self._schemas else None

    @property
    def lineage(self) -> str | None:
        """The changelogs' numbering the active writes under (None: not the active)."""
        return self._committer.lineage if self._committer else None

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
        if self._schemas is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._schemas.close(), timeout)
            self._schemas = None
        if self.status is not Status.FAILED:
            self.set_status(Status.STOPPED)

    # -- one cycle -------------------------------------------------------------------

    async def _cycle(self, *, final: bool = False) -> None:
        batch = Batch()
        if self._held is not None:
            # Its schemas were not loaded; a final cycle leaves it to the next start.
            batch, self._held = (Batch() if final else self._held), None
        elif self._inputs is not None and not final:
            try:
                batch = await self._inputs.read()
            except InputsLost as exc:
                self._resync = (str(exc), True)
                return
        elif not final:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.05)
        schemas = self._schemas
        if batch.records and schemas and not await schemas.ready(batch.records, self._stopping):
            self._held = batch  # the registry is out: nothing decoded, nothing lost
            return
        if (
            not batch.records
            and not batch.unreadable
            and not self.processor.outbox
            and not any(g.has_changes() for g in self.app.grids.values())
        ):
            self._update_lag()
            return
        committer = self._require_committer()
        async with self.state_lock:
            started = time.perf_counter()
            await self._process(batch)
            positions = {**self._inputs.positions, **batch.offsets} if self._inputs else {}
            changes = await committer.commit(batch.offsets, positions)
            metrics.BATCH_SECONDS.labels(self.app.name).observe(time.perf_counter() - started)
            if self._inputs is not None:
                self._inputs.positions.update(batch.offsets)
                self._commit_group_offsets(positions if batch.offsets else {})
            for grid, grid_changes in changes:
                if grid_changes:
                    if self._follower is not None:
                        self._follower.note_committed(grid, committer.lineage, committer.cycle)
                    self.publish(grid, grid_changes, committer.cycle)
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
            self._held = None  # re-assigning reads it again from the committed positions
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
                self._held = None
                await self._inputs.restart_from_beginning()
        self._resync = None

    def _commit_group_offsets(self, positions: dict[TopicPartition, int]) -> None:
        """Checkpointed, the group's offsets are only for tools (a restart resumes from the
        checkpoint), so they are committed in the background, one commit at a time."""
        idle = self._group_commit is None or self._group_commit.done()
        if positions and self.guarantee is Guarantee.CHECKPOINTED and idle:
            self._group_commit = asyncio.create_task(self._commit_group(positions))

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

    def _require_committer(self) -> Committer:
        if self._committer is None:
            raise RuntimeError("engine not active")
        return self._committer

    def set_status(self, status: Status, message: str = "") -> None:
        self.status = status
        self.status_message = message
        self.on_status(status)

    def _update_lag(self) -> None:
        if self._inputs is not None:
            self._inputs.update_lag()
