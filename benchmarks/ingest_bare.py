"""The ingest benchmark's floor: a bare aiokafka loop summing quantity per product.

No grid, no changelog, no transactions, no offset commits: `getmany` batches, decode,
add to a dict. It is what one Python process can do with aiokafka at all, so it sets
the practical limit the runtime is compared against. Run by benchmarks/ingest.py as
`python -m benchmarks.ingest_bare BOOTSTRAP TOPIC N RESULT [--decoder json|msgspec]`;
it writes the first/last record times (system-wide monotonic clock) and the sums.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition


class _Order(msgspec.Struct):
    product: str
    quantity: int


def _decoder(kind: str) -> Callable[[bytes], tuple[str, int]]:
    """The per-record decode: stdlib json into a dict, or msgspec into a typed struct."""
    if kind == "msgspec":
        decode = msgspec.json.Decoder(_Order).decode

        def typed(data: bytes) -> tuple[str, int]:
            order = decode(data)
            return order.product, order.quantity

        return typed

    def plain(data: bytes) -> tuple[str, int]:
        order = json.loads(data)
        return order["product"], order["quantity"]

    return plain


async def consume(
    bootstrap: str, topic: str, records: int, decoder: str | Callable[[bytes], tuple[str, int]]
) -> dict[str, Any]:
    """Read `records` records of `topic` from the beginning; time them and sum them.

    `decoder` names one of `_decoder`'s, or is the per-record decode itself (another format's).
    """
    decode = _decoder(decoder) if isinstance(decoder, str) else decoder
    # The same consumer settings as the runtime's input consumer (max_poll_records
    # 5000, all partitions assigned), so the difference is what happens per record.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=5000,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:  # metadata may not know the topic right after start
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        sums: dict[str, int] = {}
        count = 0
        first = 0.0
        first_count = 0
        while count < records:
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for messages in batch.values():
                for message in messages:
                    product, quantity = decode(message.value or b"")
                    sums[product] = sums.get(product, 0) + quantity
                count += len(messages)
            if count and not first:
                first = time.monotonic()
                first_count = count
        last = time.monotonic()
    finally:
        await consumer.stop()
    return {"first": first, "first_count": first_count, "last": last, "count": count, "sums": sums}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("records", type=int)
    parser.add_argument("result", type=Path)
    parser.add_argument("--decoder", choices=("json", "msgspec"), default="json")
    args = parser.parse_args()
    result = asyncio.run(consume(args.bootstrap, args.topic, args.records, args.decoder))
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
