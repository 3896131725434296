"""A record that kills the process (not an exception: the process dies) cannot loop the app.

The handler below SIGKILLs its own process on one product, as a segfault in a C
extension or an out-of-memory kill would. The first death is in a batch, the second on
that record alone; the third start dead-letters it and the grid holds every other order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.apps import RunningApp, produce, read_topic
from support.brokers import Broker
from support.orders import converged, expected_sums, orders

pytestmark = pytest.mark.timeout(300)

KILLER_APP = """
import os, signal
import aerogrid

app = aerogrid.App({app!r})

class Order(aerogrid.Record):
    product: str
    quantity: int

orders_topic = app.topic({topic!r}, key_type=str, value_type=Order, partitions=2)
product_sum = app.Grid('product_sum', columns=['units_sold', 'orders'],
                       default=lambda: {{'units_sold': 0, 'orders': 0}})

@app.stream(orders_topic)
async def sum_orders(orders):
    async for order_id, order in orders.items():
        if order.product == 'kill-the-process':
            os.kill(os.getpid(), signal.SIGKILL)
        row = product_sum[order.product]
        product_sum[order.product] = {{'units_sold': row['units_sold'] + order.quantity,
                                      'orders': row['orders'] + 1}}
"""


async def test_a_record_that_kills_the_app_twice_is_dead_lettered(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = tmp_path / "killer.py"
    path.write_text(KILLER_APP.format(app=unique_name, topic=topic))
    good = orders(400, seed=31)
    killer = (b"the-killer", json.dumps({"product": "kill-the-process", "quantity": 1}).encode())
    await produce(broker.bootstrap, topic, [*good[:200], killer, *good[200:]])
    env = {"AEROGRID_STATE_DIR": str(tmp_path / "state")}
    app = RunningApp(path, broker.bootstrap, env=env)
    try:
        deaths = 0
        for _ in range(2):
            try:
                app.start(timeout=60)
            except RuntimeError as exc:  # died before it announced it was ready
                assert "exited with -9" in str(exc), str(exc)
            assert app.proc is not None
            assert app.proc.wait(60) == -9, app.log_tail()
            deaths += 1
        assert deaths == 2
        assert "those records now run one at a time" in app.log_file.read_text()
        app.start()
        want = expected_sums(good)
        assert await converged(app.target, unique_name, "product_sum", want, timeout=60) == want
        assert app.proc is not None and app.proc.poll() is None
        (letter,) = await read_topic(broker.bootstrap, f"{unique_name}.dlq", 1)
        headers = dict(letter.headers)
        assert letter.key == b"the-killer"
        assert b"crashed the app twice" in headers["aerogrid-error"]
        assert headers["aerogrid-error-type"] == b"CrashedTwice"
        assert app.metric("aerogrid_dead_lettered_total", {"app": unique_name}) == 1
    finally:
        app.stop()
