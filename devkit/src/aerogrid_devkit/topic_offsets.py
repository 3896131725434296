"""Where each partition of a topic begins and ends, and how many records lie between.

Both numbers need care to be right on every local broker:

* The embedded broker (tansu 0.6) answers ListOffsets with the last batch's base offset + 1,
  so after a batched produce the listed end is too small (8 records in one batch: end 1).
  The high watermark of a fetch response is right on every broker, so `high_watermarks`
  fetches from just before the listed end and takes the fetch's figure.
* On Apache Kafka, offsets are not records: a transaction's commit marker takes an offset
  (AeroGrid's exactly-once writes one per partition per commit), and compaction leaves
  gaps. So `count_records` reads the partitions to count them, within a bound of offsets
  and seconds; a partition left unread has only an upper bound (end - begin).

aiokafka offers no record count, and kcat's or the Kafka CLI's would need a process per
listing, so the counting is done here with the consumer the tools already hold.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["COUNT_LIMIT", "COUNT_SECONDS", "count_records", "high_watermarks"]

#: Offsets read at most per listing to count records exactly (beyond: an upper bound).
COUNT_LIMIT = 20_000
#: Seconds a listing may spend counting.
COUNT_SECONDS = 3.0
#: Seconds to wait for every partition's high watermark (an empty one takes a fetch wait).
WATERMARK_SECONDS = 5.0


async def high_watermarks(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    timeout: float = WATERMARK_SECONDS,
) -> dict[TopicPartition, int]:
    """Each partition's true end: the high watermark of a fetch, never the listed end alone.

    Assigns `partitions` to `consumer` (and moves its positions).
    """
    listed = await consumer.end_offsets(partitions)
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, max(0, listed[tp] - 1))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    fetched: dict[TopicPartition, int] = {}
    while len(fetched) < len(partitions) and loop.time() < deadline:
        await consumer.getmany(timeout_ms=100)
        for tp in partitions:
            mark = consumer.highwater(tp)
            if mark is not None:
                fetched[tp] = mark
    return {tp: max(listed[tp], fetched.get(tp, 0)) for tp in partitions}


async def count_records(
    consumer: AIOKafkaConsumer,
    spans: dict[TopicPartition, tuple[int, int]],
    *,
    limit: int = COUNT_LIMIT,
    timeout: float = COUNT_SECONDS,
) -> dict[TopicPartition, int]:
    """The records in [begin, end) of each partition, for those read to the end in time.

    Partitions are taken smallest span first until `limit` offsets; an empty span counts
    0 without a read. Partitions missing from the result were not counted.
    """
    counted = {tp: 0 for tp, (begin, end) in spans.items() if end <= begin}
    chosen: dict[TopicPartition, tuple[int, int]] = {}
    budget = limit
    for tp, (begin, end) in sorted(spans.items(), key=lambda item: item[1][1] - item[1][0]):
        if begin < end <= begin + budget:
            chosen[tp] = (begin, end)
            budget -= end - begin
    if not chosen:
        return counted
    consumer.assign(list(chosen))
    for tp, (begin, _) in chosen.items():
        consumer.seek(tp, begin)
    seen = dict.fromkeys(chosen, 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = set(chosen)
    while pending and loop.time() < deadline:
        batch = await consumer.getmany(*pending, timeout_ms=100)
        for tp, messages in batch.items():
            seen[tp] += sum(1 for m in messages if m.offset < chosen[tp][1])
        for tp in list(pending):
            if await consumer.position(tp) >= chosen[tp][1]:
                pending.discard(tp)
                counted[tp] = seen[tp]
    return counted
