"""The fan-out benchmark's server app: a price ticker kept as one grid row per instrument.

Each record carries the producer's wall-clock `sent_at` (float seconds); the app stores
it in the row next to the price, so a subscriber can tell how old every row it receives
is (receive time − sent_at) without any side channel. Names come from the environment
(BENCH_APP, BENCH_TOPIC, BENCH_PARTITIONS) so runs can share one broker.
"""

from __future__ import annotations

import os

import aerogrid

app = aerogrid.App(os.environ.get("BENCH_APP", "ticker"))


class Tick(aerogrid.Record):
    price: float
    sent_at: float


ticks = app.topic(
    os.environ.get("BENCH_TOPIC", "ticks"),
    key_type=str,
    value_type=Tick,
    partitions=int(os.environ.get("BENCH_PARTITIONS", "1")),
)
quotes = app.Grid("quotes", columns=["price", "sent_at"])


@app.stream(ticks)
async def on_tick(stream: aerogrid.StreamInput) -> None:
    async for key, tick in stream.items():
        quotes[key] = {"price": tick.price, "sent_at": tick.sent_at}
