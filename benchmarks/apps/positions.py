"""The state benchmark's app: one grid of positions (float, int, str) restored at start.

It also consumes a (usually empty) input topic like any real app, so start-up includes
everything `aerogrid run` does: topics, the transactional producer, restore, consumer.
Names come from the environment (BENCH_APP, BENCH_TOPIC).
"""

from __future__ import annotations

import os

import aerogrid

app = aerogrid.App(os.environ.get("BENCH_APP", "positions"))

trades = app.topic(os.environ.get("BENCH_TOPIC", "trades"), key_type=str, value_type=dict)
positions = app.Grid("positions", columns=["price", "qty", "venue"])


@app.stream(trades)
async def on_trade(stream: aerogrid.StreamInput) -> None:
    async for key, trade in stream.items():
        positions[key] = {"price": trade["price"], "qty": trade["qty"], "venue": trade["venue"]}
