"""`make demo`: the orders app on the embedded broker, fed with orders, its grid live.

Starts the embedded broker, runs `aerogrid run app.py` as a real subprocess, produces a
stream of orders (with the odd malformed one, which lands in the dead-letter topic),
and prints the `product_sum` grid as it changes, read over gRPC like any client would.
Until the devkit's `aerogrid demo` lands this is the main job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from aerogrid.client import GridClient
from aerogrid_devkit.embedded import EmbeddedBroker

HERE = Path(__file__).resolve().parent

PRODUCTS = ["espresso", "flat white", "cappuccino", "croissant", "bagel", "muffin", "tea", "juice"]


async def feed(bootstrap: str, rate: float, stop: asyncio.Event) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    sent = 0
    try:
        while not stop.is_set():
            sent += 1
            if sent % 97 == 0:
                value = b'{"product": "bagel", "quantity": "lots"}'  # a bad record, on purpose
            else:
                order = {"product": random.choice(PRODUCTS), "quantity": random.randint(1, 5)}
                value = json.dumps(order).encode()
            await producer.send("orders", key=f"order-{sent}".encode(), value=value)
            await asyncio.sleep(1 / rate)
    finally:
        await producer.stop()
    return sent


def print_grid(rows: dict[str, dict[str, Any]], seq: int) -> None:
    total = sum(int(r["units_sold"]) for r in rows.values())
    print(f"\n-- product_sum  seq {seq}  ({len(rows)} products, {total} units)")
    for key in sorted(rows):
        units = rows[key]["units_sold"]
        print(f"   {key:<12} {units:>6}  {'#' * min(60, int(units) // 5)}")
    sys.stdout.flush()


async def watch(target: str, stop: asyncio.Event) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    last_print = 0.0
    async with GridClient(target) as client:
        async for update in client.subscribe("ordersapp", "product_sum", min_interval_ms=250):
            state = update.apply_to(state)
            if time.monotonic() - last_print >= 1.0:
                print_grid(state, update.seq)
                last_print = time.monotonic()
            if stop.is_set():
                break
    return state


async def main(duration: float, rate: float) -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedBroker(0, log_file=Path(tmp) / "broker.log") as broker,
    ):
        print(f"embedded broker on {broker.bootstrap}")
        ready = Path(tmp) / "ready.json"
        env = {**os.environ, "AEROGRID_BROKER": broker.bootstrap}
        app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aerogrid",
                "run",
                str(HERE / "app.py"),
                "--port",
                "0",
                "--ready-file",
                str(ready),
                "--log-level",
                "WARNING",
            ],
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                if app.poll() is not None or time.monotonic() > deadline:
                    print("the app did not start", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.1)
            ports = json.loads(ready.read_text())
            target = f"127.0.0.1:{ports['grpc_port']}"
            guarantee = ports["guarantee"]
            print(f"ordersapp on {target} ({guarantee}); feeding orders for {duration:.0f}s")
            stop = asyncio.Event()
            feeder = asyncio.create_task(feed(broker.bootstrap, rate, stop))
            watcher = asyncio.create_task(watch(target, stop))
            await asyncio.sleep(duration)
            stop.set()
            sent = await feeder
            await asyncio.sleep(1.0)
            async with GridClient(target) as client:
                final = await client.snapshot("ordersapp", "product_sum")
            watcher.cancel()
            print_grid(final, -1)
            total = sum(int(r["units_sold"]) for r in final.values())
            bad = sent // 97
            print(f"\n{sent} orders sent ({bad} malformed, dead-lettered); {total} units in grid")
            print(json.dumps({"product_sum": final}, sort_keys=True))
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(15)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run (default 20)")
    parser.add_argument("--rate", type=float, default=50.0, help="orders per second (default 50)")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.duration, args.rate)))
