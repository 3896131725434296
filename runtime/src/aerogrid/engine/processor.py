"""The broker-free half of the engine: decode, route and run handlers over a batch.

It knows nothing of Kafka clients, so the same code runs under the Kafka engine and
under `aerogrid.testing`. A record that fails to decode (whatever the decoder raised), or
whose handler raises, is rolled back and dealt with by its stream's `on_error`; every
other record's effects stay in the grids for the engine to commit. Dead letters always
fit the producer's message limit (see `dead_letters`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from aerogrid import metrics
from aerogrid.app import App
from aerogrid.engine.dead_letters import Source, dead_letter
from aerogrid.errors import AeroGridError, DecodeError
from aerogrid.grids import rollback
from aerogrid.limits import MAX_MESSAGE_BYTES
from aerogrid.schemas.errors import SchemaNotLoaded
from aerogrid.streams import Event, StreamInput, StreamSpec
from aerogrid.topics import Outbox, OutgoingRecord

log = logging.getLogger("aerogrid.engine")

Decode = Callable[[bytes | None], Any]


class RawRecord(NamedTuple):
    """A record as read from Kafka, before decoding (a tuple: cheap to make by the million)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: int = 0


class RecordLike(Source, Protocol):
    """What the processor reads of a record: a RawRecord or aiokafka's ConsumerRecord
    (what a dead letter takes of it, and its timestamp)."""

    @property
    def timestamp(self) -> int: ...


class StopProcessing(AeroGridError):
    """A stream with on_error='stop' met a bad record: the app must stop uncommitted."""


@dataclass
class Counts:
    """What the processor did, for the TUI, tests and logs (metrics have the same)."""

    records: int = 0
    decode_errors: int = 0
    handler_errors: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    by_topic: dict[str, int] = field(default_factory=dict)


class Processor:
    """Runs an app's stream handlers over batches of raw records."""

    def __init__(self, app: App, *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.app = app
        #: The producer's limit: no dead letter is bigger.
        self.max_message_bytes = max_message_bytes
        self.routes = app.input_topics()
        #: topic → (stream, key decoder, value decoder) for each stream reading it; made
        #: by `start()`, once registry-format topics have their codecs.
        self._decoders: dict[str, list[tuple[StreamSpec, Decode, Decode]]] = {}
        self.inputs: dict[str, StreamInput] = {s.name: StreamInput(s.name) for s in app.streams}
        self.handler_tasks: dict[str, asyncio.Task[None]] = {}
        self.counts = Counts()
        #: Dead letters of the batch in flight by source position, produced with the batch.
        self.dead_letters: list[tuple[tuple[str, int, int], OutgoingRecord]] = []
        #: What the app's code sent (`Topic.send`): bound in every handler task, and by
        #: the engine in the app's timers and tasks; drained with each batch.
        self.outbox = Outbox()

    def start(self) -> None:
        self._decoders = {
            name: [
                (spec, topic.key_codec.decode, topic.value_codec.decode)
                for spec in specs
                for topic in spec.topics
                if topic.name == name
            ]
            for name, specs in self.routes.items()
        }
        for spec in self.app.streams:
            self._start_handler(spec)

    async def stop(self) -> None:
        tasks = list(self.handler_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.handler_tasks.clear()

    async def process(self, records: Sequence[RecordLike]) -> None:
        """Run every record through the handlers of its topic; raise StopProcessing.

        The hot path of the runtime: metrics are counted per batch, not per record.
        """
        per_stream: dict[str, tuple[StreamSpec, list[Event], list[RecordLike]]] = {}
        routes = self._decoders
        seen: dict[str, int] = {}
        for record in records:
            topic_name = record.topic
            targets = routes.get(topic_name)
            if targets is None:
                continue
            seen[topic_name] = seen.get(topic_name, 0) + 1
            for spec, decode_key, decode_value in targets:
                try:
                    key = decode_key(record.key)
                    value = decode_value(record.value)
                except SchemaNotLoaded:
                    raise  # the engine's bug, not the record's: never dead-lettered
                except Exception as exc:  # DecodeError; anything else is a decoder's bug
                    self.counts.decode_errors += 1
                    metrics.DECODE_ERRORS.labels(self.app.name, topic_name).inc()
                    if not isinstance(exc, DecodeError):
                        exc = DecodeError(f"{type(exc).__name__}: {exc}")
                    self._reject(spec, record, exc, stage="decode")
                    continue
                entry = per_stream.get(spec.name)
                if entry is None:
                    entry = per_stream[spec.name] = (spec, [], [])
                entry[1].append(
                    Event(
                        key,
                        value,
                        record.headers,
                        topic_name,
                        record.partition,
                        record.offset,
                        record.timestamp,
                    )
                )
                entry[2].append(record)
        for topic_name, count in seen.items():
            self.counts.records += count
            self.counts.by_topic[topic_name] = self.counts.by_topic.get(topic_name, 0) + count
            metrics.RECORDS_IN.labels(self.app.name, topic_name).inc(count)
        if len(per_stream) == 1:
            ((spec, events, raws),) = per_stream.values()
            await self._deliver(spec, events, raws)
        elif per_stream:
            await asyncio.gather(
                *(self._deliver(spec, events, raws) for spec, events, raws in per_stream.values())
            )

    async def _deliver(self, spec: StreamSpec, events: list[Event], raws: list[RecordLike]) -> None:
        stream_input = self.inputs[spec.name]
        done = stream_input.feed(events)
        while True:
            task = self.handler_tasks[spec.name]
            if not done.done():
                await asyncio.wait((done, task), return_when=asyncio.FIRST_COMPLETED)
            if done.done():
                return
            # The handler task ended while records remain: it raised (or returned).
            error = task.exception() if not task.cancelled() else asyncio.CancelledError()
            position = len(events) - stream_input.remaining - 1
            rollback(stream_input.undo)
            if error is None:
                raise StopProcessing(
                    f"stream handler {spec.name!r} returned; a handler must loop over its "
                    "stream for as long as the app runs"
                )
            if position < 0 or stream_input.current is None:
                raise StopProcessing(
                    f"stream handler {spec.name!r} failed before taking a record: {error!r}"
                ) from error
            self.counts.handler_errors += 1
            metrics.HANDLER_ERRORS.labels(self.app.name, raws[position].topic).inc()
            self._reject(spec, raws[position], error, stage="handler")
            self._start_handler(spec)

    def _start_handler(self, spec: StreamSpec) -> None:
        stream_input = self.inputs[spec.name]

        async def run() -> None:
            stream_input.attach()
            with self.outbox.bound():
                await spec.handler(stream_input)

        self.handler_tasks[spec.name] = asyncio.create_task(run(), name=f"stream:{spec.name}")

    def _reject(
        self, spec: StreamSpec, record: RecordLike, error: BaseException, *, stage: str
    ) -> None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        if spec.on_error == "stop":
            raise StopProcessing(
                f"stream {spec.name!r}: record {where} failed to {stage}: {_short(error)}"
            ) from error
        if spec.on_error == "skip":
            self.counts.skipped += 1
            metrics.SKIPPED.labels(self.app.name, record.topic).inc()
            log.warning("skipped record %s: %s failed: %s", where, stage, _short(error))
            return
        log.warning("dead-lettered record %s: %s failed: %s", where, stage, _short(error))
        self.dead_letter(record, error, stage=stage, stream=spec.name)

    def dead_letter(
        self, record: RecordLike, error: BaseException, *, stage: str, stream: str
    ) -> None:
        """Write `record` to the dead-letter topic with the batch, and count it.

        Also what the engine calls for records no stream ever saw (unparseable by the
        Kafka client, or quarantined after crashing the app), whatever their `on_error`.
        """
        self.counts.dead_lettered += 1
        metrics.DEAD_LETTERED.labels(self.app.name, record.topic).inc()
        letter = dead_letter(
            self.app.dlq_topic, record, error, stage=stage, stream=stream,
            limit=self.max_message_bytes,
        )  # fmt: skip
        self.dead_letters.append(((record.topic, record.partition, record.offset), letter))

    def drain_dead_letters(self) -> list[OutgoingRecord]:
        """The batch's dead letters in source order (decode failures come first otherwise)."""
        letters, self.dead_letters = self.dead_letters, []
        letters.sort(key=lambda item: item[0])
        return [letter for _, letter in letters]


def _short(error: BaseException) -> str:
    """An error for a log line: a handler's message may quote a megabyte of input."""
    text = str(error)
    return text if len(text) <= 500 else f"{text[:500]}… ({len(text)} characters)"
