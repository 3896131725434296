"""The ingest benchmark's Faust contender: the orders app's job as a Faust Table.

It runs in its own venv (faust-streaming pins dependencies of its own), started by
benchmarks/ingest.py as `python faust_app.py worker`. Configuration comes from the
environment (BENCH_*), so this file imports nothing of the repository. The agent
times the first and the N-th record with the system-wide monotonic clock (the parent
compares it with its own) and then dumps the table to BENCH_RESULT for verification.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import faust

BOOTSTRAP = os.environ["BENCH_BOOTSTRAP"]
TOPIC = os.environ["BENCH_TOPIC"]
APP_ID = os.environ["BENCH_APP"]
RECORDS = int(os.environ["BENCH_RECORDS"])
PARTITIONS = int(os.environ["BENCH_PARTITIONS"])
RESULT = Path(os.environ["BENCH_RESULT"])
#: Settings a Faust user tuning for throughput would pick (see benchmarks/ingest.py).
SETTINGS: dict[str, Any] = json.loads(os.environ.get("BENCH_FAUST_SETTINGS", "{}"))

app = faust.App(
    APP_ID,
    broker=f"kafka://{BOOTSTRAP}",
    topic_partitions=PARTITIONS,
    **SETTINGS,
)


class Order(faust.Record, serializer="json"):  # type: ignore[misc,call-arg]
    product: str
    quantity: int


orders_topic = app.topic(TOPIC, key_type=str, value_type=Order, partitions=PARTITIONS)
product_sum = app.Table("product_sum", default=int, partitions=PARTITIONS)

_seen = {"count": 0, "first": 0.0}


@app.agent(orders_topic)
async def sum_orders(orders: AsyncIterator[Order]) -> None:
    async for order in orders:
        product_sum[order.product] += order.quantity
        _seen["count"] += 1
        if _seen["count"] == 1:
            _seen["first"] = time.monotonic()
        elif _seen["count"] == RECORDS:
            _report(time.monotonic())


def _report(last: float) -> None:
    """Write the timings and the table's sums (atomically: the parent polls the file)."""
    result = {
        "first": _seen["first"],
        "last": last,
        "count": _seen["count"],
        "sums": {str(k): int(v) for k, v in product_sum.items()},
    }
    tmp = RESULT.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(RESULT)


if __name__ == "__main__":
    app.main()
