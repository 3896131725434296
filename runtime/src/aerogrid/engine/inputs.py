"""The app's input: every partition of its input topics, read from where it left off.

One process runs each app's processing, so it assigns itself every partition instead
of joining a consumer-group rebalance (seconds on every start); offsets are still
committed under the group named after the app. Positions are never reset silently:
aiokafka's `auto_offset_reset="earliest"` would quietly re-read a partition whose log
is shorter than the committed position (a broker restarted without its data), and
count its records twice. Here the consumer raises instead, and the reader tells
a partition with no committed offset yet (read from the start), one whose oldest
records were deleted by retention (read from the oldest left, with a warning and a
count) and one that is now shorter than where the app was (`InputsLost`: the engine
resynchronises).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError

from aerogrid import metrics
from aerogrid.engine.crash_journal import Ranges
from aerogrid.engine.processor import RecordLike
from aerogrid.errors import AeroGridError
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

Positions = dict[TopicPartition, int]


class InputsLost(AeroGridError):
    """An input partition's log is shorter than the app's position in it."""

    def __init__(self, partitions: Sequence[TopicPartition]) -> None:
        names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions)
        super().__init__(f"input partitions {names} are shorter than the app's position")
        self.partitions = list(partitions)


@dataclass
class Batch:
    """Records read in one go, with the position after them and their offset ranges."""

    records: list[RecordLike] = field(default_factory=list)
    offsets: Positions = field(default_factory=dict)
    ranges: Ranges = field(default_factory=dict)
    #: Offsets the Kafka client cannot parse: (partition, first, end, why), skipped.
    unreadable: list[tuple[TopicPartition, int, int, str]] = field(default_factory=list)

    def add(self, tp: TopicPartition, messages: Sequence[RecordLike]) -> None:
        self.records.extend(messages)
        self.offsets[tp] = messages[-1].offset + 1
        first = self.ranges.get((tp.topic, tp.partition), (messages[0].offset, 0))[0]
        self.ranges[(tp.topic, tp.partition)] = (first, messages[-1].offset)


class InputReader:
    """A consumer assigned every partition of the app's input topics."""

    def __init__(
        self, app_name: str, topics: Iterable[str], settings: BrokerSettings, max_batch: int
    ) -> None:
        self.app_name = app_name
        self.topics = list(topics)
        self.max_batch = max_batch
        self.consumer = AIOKafkaConsumer(
            group_id=app_name,
            enable_auto_commit=False,
            auto_offset_reset="none",
            isolation_level="read_committed",
            max_poll_records=max_batch,
            **settings.client_options(),
        )
        #: The next offset to read of each input partition, as of the last committed cycle.
        self.positions: Positions = {}
        self._last_lag_update = 0.0

    async def start(self, resume: dict[str, int] | None = None) -> None:
        """Assign every partition; `resume` ("topic:partition" → offset) overrides the group's."""
        await self.consumer.start()
        partitions = await partitions_of(self.consumer, self.topics)
        self.consumer.assign(partitions)
        for tp in partitions:
            offset = (resume or {}).get(f"{tp.topic}:{tp.partition}")
            if offset is not None:
                self.consumer.seek(tp, offset)
                self.positions[tp] = offset

    async def stop(self) -> None:
        await self.consumer.stop()

    def assigned(self) -> dict[str, int]:
        """Partitions read per input topic."""
        counts = dict.fromkeys(self.topics, 0)
        for tp in self.consumer.assignment():
            counts[tp.topic] = counts.get(tp.topic, 0) + 1
        return counts

    async def read(self, timeout_ms: int = 100) -> Batch:
        """The next batch; raises InputsLost."""
        try:
            batch = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
        except NoOffsetForPartitionError as exc:
            tp = exc.args[0]
            log.info("input %s[%d]: no committed offset, reading from the start", *tp)
            await self.consumer.seek_to_beginning(tp)
            return Batch()
        except OffsetOutOfRangeError as exc:
            await self._out_of_range(exc.args[0])
            return Batch()
        except KafkaError:
            raise
        except Exception as exc:
            # The client itself could not parse a record batch (a header name that is not
            # UTF-8, say), and would raise on every call: find it and step over it.
            log.warning("input: the Kafka client cannot read a record batch (%r)", exc)
            return await self._read_around_unreadable()
        read = Batch()
        for tp, messages in batch.items():
            if messages:
                read.add(tp, messages)
        return read

    async def _read_around_unreadable(self) -> Batch:
        """One record at a time per partition, up to the batch the client cannot parse.

        aiokafka parses a whole record batch at once, so the unreadable part is a batch,
        not a record: its extent is found by seeking past it (`_end_of_unreadable`).
        """
        read = Batch()
        for tp in sorted(self.consumer.assignment()):
            for _ in range(self.max_batch):
                try:
                    got = await self.consumer.getmany(tp, timeout_ms=200, max_records=1)
                except KafkaError:
                    break  # the next ordinary read deals with it
                except Exception as exc:
                    start = await self.consumer.position(tp)
                    end = await self._end_of_unreadable(tp, start)
                    why = f"{type(exc).__name__}: {exc}"
                    read.unreadable.append((tp, start, end, why))
                    read.offsets[tp] = end
                    self.consumer.seek(tp, end)
                    break
                if not got.get(tp):
                    break
                read.add(tp, got[tp])
        return read

    async def _end_of_unreadable(self, tp: TopicPartition, start: int) -> int:
        """The first offset after `start` that the client reads (a bisection by seeking)."""

        async def readable(offset: int) -> bool:
            self.consumer.seek(tp, offset)
            try:
                await self.consumer.getmany(tp, timeout_ms=500, max_records=1)
            except KafkaError:
                return True  # past the end, say: not the parse failure
            except Exception:
                return False
            return True

        bad, step = start, 1
        while not await readable(start + step):
            bad, step = start + step, step * 2
        good = start + step
        while good - bad > 1:
            middle = (bad + good) // 2
            if await readable(middle):
                good = middle
            else:
                bad = middle
        return good

    async def _out_of_range(self, fetched: dict[TopicPartition, int]) -> None:
        starts = await self.consumer.beginning_offsets(list(fetched))
        lost = [tp for tp, offset in fetched.items() if offset >= starts[tp]]
        for tp, offset in fetched.items():
            if tp in lost:
                continue
            # Retention deleted records the app had not read yet: say how many.
            log.warning(
                "input %s[%d]: %d records were deleted by retention before the app read "
                "them; reading from the oldest left (offset %d)",
                tp.topic,
                tp.partition,
                starts[tp] - offset,
                starts[tp],
            )
            metrics.INPUT_RECORDS_EXPIRED.labels(self.app_name, tp.topic).inc(starts[tp] - offset)
            self.consumer.seek(tp, starts[tp])
        if lost:
            raise InputsLost(lost)

    async def follow(self, added: dict[str, int]) -> None:
        """Start reading partitions added to input topics, from their start."""
        known = set(self.consumer.assignment())
        await refresh_metadata(self.consumer)
        partitions = await partitions_of(self.consumer, self.topics)
        new = [tp for tp in partitions if tp not in known]
        if not new:
            return
        self.consumer.assign(partitions)
        # Re-assigning forgets positions: put back those the app read from (a partition
        # it has read nothing from in this run resumes from its committed offset again).
        for tp in known:
            if tp in self.positions:
                self.consumer.seek(tp, self.positions[tp])
        starts = await self.consumer.beginning_offsets(new)
        for tp in new:
            self.consumer.seek(tp, starts[tp])
            self.positions[tp] = starts[tp]
        log.info(
            "input partitions added: now reading %s",
            ", ".join(f"{t} ({n} partitions)" for t, n in self.assigned().items()),
        )

    async def restart_from_beginning(self) -> None:
        """Every input partition from its start (the broker lost the app's data)."""
        await refresh_metadata(self.consumer)
        partitions = await partitions_of(self.consumer, self.topics)
        self.consumer.assign(partitions)
        starts = await self.consumer.beginning_offsets(partitions)
        for tp in partitions:
            self.consumer.seek(tp, starts[tp])
        self.positions = dict(starts)

    def update_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag_update < 1.0:
            return
        self._last_lag_update = now
        for tp, position in self.positions.items():
            highwater = self.consumer.highwater(tp)
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self.app_name, tp.topic, str(tp.partition)).set(
                    max(0, highwater - position)
                )


async def refresh_metadata(consumer: AIOKafkaConsumer) -> None:
    """Fetch the cluster's metadata now, not at the client's next refresh.

    aiokafka has no public call for it (`topics()` answers from its cache, which misses a
    topic or partition added since), so this is the one place that reaches into its client.
    """
    await consumer._client.force_metadata_update()


async def partitions_of(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    """Every partition of `topics`, waiting briefly for metadata of a just-created topic."""
    found: list[TopicPartition] = []
    for topic in topics:
        numbers = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if numbers:
                break
            await refresh_metadata(consumer)
            numbers = consumer.partitions_for_topic(topic)
            if not numbers:
                await asyncio.sleep(0.1)
        if not numbers:
            raise RuntimeError(f"topic {topic!r} has no partitions in the broker's metadata")
        found.extend(TopicPartition(topic, p) for p in sorted(numbers))
    return found
