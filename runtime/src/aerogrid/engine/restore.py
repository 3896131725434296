"""Restore: every grid rebuilt from its changelog before the app consumes input.

Checkpointed (a broker without transactions), the checkpoint topic is read first, and a
changelog record counts only if its cycle's checkpoint was written (see `checkpoints`);
rows whose newest record belongs to a cycle cut short by a crash are marked changed, so
the first cycle writes them again and compaction can never keep that record over a valid
one. With transactions, restore reads `read_committed` and every record counts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from aerogrid import metrics
from aerogrid.app import App
from aerogrid.engine import changelog, checkpoints
from aerogrid.engine.inputs import partitions_of
from aerogrid.grids import Grid, RowKey
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")


async def restore_grids(
    app: App,
    settings: BrokerSettings,
    log_of_cycles: checkpoints.CheckpointLog,
    *,
    checkpointed: bool,
) -> None:
    """Rebuild every grid of `app`; checkpointed, fill `log_of_cycles` from its topic first."""
    if not app.grids and not checkpointed:
        # Nothing to read. (aiokafka's consumer.stop() right after a start with nothing
        # assigned raises CancelledError on Apache Kafka, so no consumer is made at all.)
        return
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_poll_records=10_000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        # Short long-polls: the end check waits for one to come back empty.
        fetch_max_wait_ms=50,
        **settings.client_options(),
    )
    await consumer.start()
    started = time.perf_counter()
    try:
        by_topic = {app.changelog_topic(g.name): g for g in app.grids.values()}
        decoders = {topic: changelog.row_decoder(g) for topic, g in by_topic.items()}
        # Look every partition up before the first assign(): after it, the consumer's
        # metadata covers only the assigned topics.
        partitions = await partitions_of(
            consumer, [*by_topic, *([app.checkpoint_topic] if checkpointed else [])]
        )
        if checkpointed:
            await read_to_end(
                consumer,
                [tp for tp in partitions if tp.topic == app.checkpoint_topic],
                lambda m: log_of_cycles.add(checkpoints.decode(m.value)),
            )
        uncommitted: set[tuple[Grid, RowKey]] = set()

        def apply(m: Any) -> None:
            grid = by_topic[m.topic]
            key = changelog.decode_key(m.key)
            if not log_of_cycles.is_committed(m.headers):
                uncommitted.add((grid, key))
                return
            grid.load(key, decoders[m.topic](m.value))
            if uncommitted:
                uncommitted.discard((grid, key))

        if by_topic:
            await read_to_end(consumer, [tp for tp in partitions if tp.topic in by_topic], apply)
        for grid, key in uncommitted:
            grid.mark_changed(key)
    finally:
        await consumer.stop()
    elapsed = time.perf_counter() - started
    for grid in app.grids.values():
        grid.ready = True
        metrics.RESTORE_SECONDS.labels(app.name, grid.name).set(elapsed)
        metrics.GRID_ROWS.labels(app.name, grid.name).set(len(grid))
        log.info("restored grid %s: %d rows in %.2fs", grid.name, len(grid), elapsed)


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], handle: Callable[[Any], None]
) -> None:
    """Read `partitions` from the beginning to their end.

    Done when every position reached the end AND a poll came back empty: the embedded
    broker reports an end short of the real one (the last batch's base offset + 1), so
    neither the reported end nor the high watermark alone is trusted. A position stuck
    short of the end (a transaction marker as the last offset) ends the read after a few
    empty polls.
    """
    consumer.assign(partitions)
    # Offsets first: once positions are set, the consumer keeps a long-polling fetch in
    # flight, and a broker answers a connection's requests in order, so a lookup issued
    # then waits out the fetch (half a second per call on the embedded broker).
    starts = await consumer.beginning_offsets(partitions)
    ends = await consumer.end_offsets(partitions)
    if all(ends[tp] <= starts[tp] for tp in partitions):
        return  # nothing to read (a new app, or everything compacted away)
    await consumer.seek_to_beginning(*partitions)
    empty_polls = 0
    while True:
        batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
        if not batch or not any(batch.values()):
            empty_polls += 1
            positions = [int(await consumer.position(tp)) for tp in partitions]
            reached = all(p >= ends[tp] for p, tp in zip(positions, partitions, strict=True))
            if reached or empty_polls >= 5:
                return
            continue
        empty_polls = 0
        for tp, messages in batch.items():
            for m in messages:
                try:
                    handle(m)
                except (ValueError, msgspec.DecodeError) as exc:
                    log.error("skipping unreadable record %s@%d: %s", tp, m.offset, exc)
