"""Restore: reading topics from their beginning to their end, which the embedded broker
makes harder than it sounds (see `read_to_end`). `engine.follower` restores every grid
with it before the app serves; what counts and what waits is decided there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

log = logging.getLogger("aerogrid.engine")


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
