"""Soak: the example app under steady load with subscribers that never read; does RSS level off?

The issue's figure: RSS over 30 minutes at 3,000 orders/s with two stalled subscribers.
What runs (real processes, on 127.0.0.1):

* the server: `python -m aerogrid run examples/ordersapp/app.py` (the design's app,
  unchanged) on Apache Kafka (exactly-once) or the embedded broker;
* a producer process: aiokafka, `--rate` orders/s spread over `--products` products,
  for `--duration` seconds; it keeps the expected units sold per product;
* a stalled-subscriber process: `--stalled` native gRPC subscriptions of the grid that
  are never read. The server drops a subscription once it fell behind (its client
  cannot know: the status waits behind the bytes it does not read), so each one is
  cancelled and opened again, stalled, every `--restall` seconds: there are always
  `--stalled` subscribers that do not read;
* one live subscriber (GridClient) in this process, reading everything.

Every `--sample` seconds one line: the app's RSS, records in, subscribers, subscribers
dropped. At the end: the app's grid compared with the producer's sums (and with the
live subscriber's copy), and the RSS trend: the slope over the second half of the run
(MiB per minute), which is ~0 once memory has levelled off.

    .venv/bin/python -m benchmarks.soak                     # 30 min, 3,000/s, 2 stalled
    .venv/bin/python -m benchmarks.soak --duration 60 --rate 3000 --stalled 2
    .venv/bin/python -m benchmarks.soak --broker tansu --duration 300
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from benchmarks._common import REPO, ExternalBroker, recv_message, wait_metric, write_result
from benchmarks._procstats import cpu_seconds, mib, rss_bytes, source_state

EXAMPLE_APP = REPO / "examples" / "ordersapp" / "app.py"
APP, GRID, TOPIC = "ordersapp", "product_sum", "orders"


# -- the producer (its own process) -------------------------------------------------------------


async def _produce(
    bootstrap: str, rate: int, duration: float, products: int, conn: Connection
) -> None:
    import json

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    await producer.start()
    try:
        rng = random.Random(11)
        names = [f"product-{i:04d}" for i in range(products)]
        sums: dict[str, int] = {}
        conn.send(("ready", os.getpid()))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        total, sent, started = int(rate * duration), 0, time.monotonic()
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate)) - sent
            for _ in range(due):
                product, quantity = rng.choice(names), rng.randint(1, 9)
                sums[product] = sums.get(product, 0) + quantity
                value = json.dumps({"product": product, "quantity": quantity}).encode()
                await producer.send(TOPIC, key=f"order-{sent}".encode(), value=value)
                sent += 1
            await asyncio.sleep(0.01)
        await producer.flush()
        conn.send(("done", {"orders": sent, "seconds": time.monotonic() - started, "sums": sums}))
    finally:
        await producer.stop()


def producer_main(
    bootstrap: str, rate: int, duration: float, products: int, conn: Connection
) -> None:
    try:
        asyncio.run(_produce(bootstrap, rate, duration, products, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# -- subscribers that never read (their own process) --------------------------------------------


async def _stall(target: str, count: int, restall: float, conn: Connection) -> None:
    from grpc import aio

    from aerogrid.v1 import grid_pb2

    async with aio.insecure_channel(target) as channel:
        method = channel.unary_stream(
            "/aerogrid.v1.GridService/Subscribe",
            request_serializer=None,
            response_deserializer=None,
        )
        request = grid_pb2.SubscribeRequest(app=APP, grid=GRID).SerializeToString()
        calls = [method(request) for _ in range(count)]
        opened = count
        conn.send(("ready", os.getpid()))
        loop = asyncio.get_running_loop()
        stop = loop.run_in_executor(None, conn.recv)
        while not stop.done():
            await asyncio.wait([stop], timeout=restall)
            for call in calls:
                call.cancel()
            if not stop.done():
                calls = [method(request) for _ in range(count)]
                opened += count
        conn.send(("done", {"opened": opened}))


def stalled_main(target: str, count: int, restall: float, conn: Connection) -> None:
    try:
        asyncio.run(_stall(target, count, restall, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# -- the run ---------------------------------------------------------------------------------------


async def _follow(target: str, rows: dict[str, Any], stop: asyncio.Event) -> None:
    """The live subscriber: applies every update to `rows` until `stop`."""
    from aerogrid.client import GridClient

    async with GridClient(target) as client:
        updates = client.subscribe(APP, GRID)
        async for update in updates:
            fresh = update.apply_to(rows)
            if fresh is not rows:
                rows.clear()
                rows.update(fresh)
            if stop.is_set():
                break


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, in MiB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_m = sum(m for _, m in points) / n
    num = sum((t - mean_t) * (m - mean_m) for t, m in points)
    den = sum((t - mean_t) ** 2 for t, _ in points) or 1e-9
    return 60.0 * num / den


def run(broker: Any, args: argparse.Namespace) -> dict[str, Any]:
    from aerogrid.client import GridClient
    from support.apps import RunningApp

    ctx = mp.get_context("spawn")
    extra = ("--log-level", "WARNING")
    env = {"AEROGRID_BROKER": broker.bootstrap}
    with RunningApp(EXAMPLE_APP, broker.bootstrap, env=env, extra_args=extra) as app:
        assert app.proc is not None
        pid = app.proc.pid
        pparent, pchild = ctx.Pipe()
        producer = ctx.Process(
            target=producer_main,
            args=(broker.bootstrap, args.rate, args.duration, args.products, pchild),
            daemon=True,
        )
        producer.start()
        recv_message(pparent, 60, "producer")
        sparent, schild = ctx.Pipe()
        stalled = ctx.Process(
            target=stalled_main, args=(app.target, args.stalled, args.restall, schild), daemon=True
        )
        stalled.start()
        recv_message(sparent, 60, "stalled subscribers")

        loop = asyncio.new_event_loop()
        live_rows: dict[str, Any] = {}
        stop_live = asyncio.Event()
        live = loop.create_task(_follow(app.target, live_rows, stop_live))
        loop.run_until_complete(asyncio.sleep(1))

        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        cpu_start = cpu_seconds(pid)
        pparent.send("go")
        print(
            f"== {args.rate}/s for {args.duration:.0f} s on {broker.kind}, "
            f"{args.stalled} stalled subscribers (re-stalled every {args.restall:.0f} s)",
            flush=True,
        )
        print("   t s    RSS MiB   records in   subscribers   dropped", flush=True)
        produced: dict[str, Any] | None = None
        while produced is None:
            loop.run_until_complete(asyncio.sleep(args.sample))
            elapsed = time.monotonic() - started
            sample = {
                "t": round(elapsed, 1),
                "rss_mib": mib(rss_bytes(pid)),
                "records_in": int(app.metric("aerogrid_records_in_total")),
                "subscribers": int(app.metric("aerogrid_subscribers")),
                "dropped": int(app.metric("aerogrid_subscribers_dropped_total")),
            }
            samples.append(sample)
            print(
                f"   {sample['t']:6.0f} {sample['rss_mib']:9.1f} {sample['records_in']:12d} "
                f"{sample['subscribers']:13d} {sample['dropped']:9d}",
                flush=True,
            )
            if pparent.poll():
                produced = recv_message(pparent, 1, "producer")[1]
        cpu = cpu_seconds(pid) - cpu_start
        wall = time.monotonic() - started
        drained = wait_metric(app, "aerogrid_records_in_total", {}, produced["orders"], 120)
        sparent.send("stop")
        opened = recv_message(sparent, 30, "stalled subscribers")[1]["opened"]

        async def final() -> dict[str, Any]:
            async with GridClient(app.target) as client:
                return await client.snapshot(APP, GRID)

        server_rows = loop.run_until_complete(final())
        loop.run_until_complete(asyncio.sleep(1))
        stop_live.set()
        live.cancel()
        loop.run_until_complete(asyncio.gather(live, return_exceptions=True))
        loop.close()
        producer.join(10)
        stalled.join(10)

    expected = {p: {"units_sold": n} for p, n in produced["sums"].items()}
    half = [(s["t"], s["rss_mib"]) for s in samples if s["t"] >= wall / 2]
    result = {
        "rate": args.rate,
        "duration_s": args.duration,
        "products": args.products,
        "stalled": args.stalled,
        "restall_s": args.restall,
        "broker": broker.kind,
        "orders": produced["orders"],
        "achieved_rate": round(produced["orders"] / max(produced["seconds"], 1e-9)),
        "drained": drained,
        "server_matches_producer": server_rows == expected,
        "live_subscriber_matches_server": live_rows == server_rows,
        "stalled_subscriptions_opened": opened,
        "subscribers_dropped": samples[-1]["dropped"] if samples else 0,
        "server_cpu_percent": round(100 * cpu / wall, 1),
        "rss_mib_first_minute": max((s["rss_mib"] for s in samples if s["t"] <= 60), default=0),
        "rss_mib_peak": max((s["rss_mib"] for s in samples), default=0),
        "rss_mib_last": samples[-1]["rss_mib"] if samples else 0,
        "rss_slope_second_half_mib_per_min": round(_slope(half), 2),
        "samples": samples,
    }
    print(
        f"   RSS first minute {result['rss_mib_first_minute']} MiB, peak "
        f"{result['rss_mib_peak']} MiB, last {result['rss_mib_last']} MiB; slope over the "
        f"second half {result['rss_slope_second_half_mib_per_min']} MiB/min",
        flush=True,
    )
    print(
        f"   {result['orders']} orders at {result['achieved_rate']}/s, drained: {drained}; "
        f"server == producer: {result['server_matches_producer']}; live subscriber == "
        f"server: {result['live_subscriber_matches_server']}; stalled subscriptions opened "
        f"{opened}, dropped by the server {result['subscribers_dropped']}; server CPU "
        f"{result['server_cpu_percent']}%",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of load [1800]")
    parser.add_argument("--rate", type=int, default=3000, help="orders per second [3000]")
    parser.add_argument("--stalled", type=int, default=2, help="subscribers that never read [2]")
    parser.add_argument(
        "--restall", type=float, default=120.0, help="re-open each stalled one every N s [120]"
    )
    parser.add_argument("--products", type=int, default=1000, help="distinct products [1000]")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples [10]")
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka", help="[kafka]")
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--out", default="soak", help="results/NAME.json [soak]")
    args = parser.parse_args(argv)

    from support.brokers import ApacheKafka, TansuBroker

    broker: Any
    if args.bootstrap:
        broker = ExternalBroker(args.broker, args.bootstrap, 0)
    else:
        broker = ApacheKafka(heap="1g") if args.broker == "kafka" else TansuBroker()
    with broker:
        result = run(broker, args)
    import sys

    path = write_result(
        args.out,
        {
            "benchmark": "soak",
            "source": source_state(),
            "command": " ".join(["python -m benchmarks.soak", *(argv or sys.argv[1:])]),
            "result": result,
        },
    )
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
