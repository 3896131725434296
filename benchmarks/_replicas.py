"""What the replica benchmarks share: a replica set of the orders app, and a paced feed.

A replica set is N real `python -m aerogrid run` processes of one app on one broker
(`tests/support/apps.RunningApp`), started one after another so the first is the active.
The feed is a process of its own sending orders at a steady rate and keeping the sums a
correct grid must end at, so every benchmark can check the replicas ended exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from benchmarks._common import RESULTS, recv_message

# _common put tests/ on sys.path: the repository's app runner.
from support.apps import RunningApp, write_orders_app

GRID = "product_sum"
#: Quantities 1..9: a product's units_sold and orders identify exactly which orders counted.
MAX_QUANTITY = 9


def result_name(name: str) -> str:
    """The replica benchmarks' results go to benchmarks/results/replicas/NAME.json."""
    (RESULTS / "replicas").mkdir(parents=True, exist_ok=True)
    return f"replicas/{name}"


def broker_min_session_ms(broker: Any) -> int | None:
    """The broker's `group.min.session.timeout.ms` (None: unknown, an external broker)."""
    properties = getattr(broker, "server_properties", None)
    if properties is None:
        return None
    with contextlib.suppress(Exception):
        return int(properties()["group.min.session.timeout.ms"])
    return 6000  # Apache Kafka's default when the config does not set it


class ReplicaSet:
    """N processes of one orders app: index 0 is started first and is the active."""

    def __init__(
        self,
        folder: Path,
        bootstrap: str,
        app: str,
        *,
        partitions: int = 3,
        env: dict[str, str] | None = None,
        extra_args: tuple[str, ...] = ("--log-level", "WARNING"),
    ) -> None:
        self.app = app
        self.topic = f"{app}.orders"
        self.bootstrap = bootstrap
        self.file = write_orders_app(folder, app, self.topic, partitions=partitions)
        self.env = env or {}
        self.extra_args = extra_args
        self.members: list[RunningApp] = []

    def add(
        self, *, serve_only: bool = False, extra_args: tuple[str, ...] = (), timeout: float = 60
    ) -> RunningApp:
        """Start one more process; it returns once ready (and, unless serve-only, once it
        knows the active)."""
        index = len(self.members)
        args = (*self.extra_args, *extra_args, *(("--serve-only",) if serve_only else ()))
        env = {**self.env, "AEROGRID_REPLICA_ID": f"{self.app}-{index}"}
        member = RunningApp(self.file, self.bootstrap, extra_args=args, env=env)
        self.members.append(member)
        member.start(timeout, wait_active=not serve_only)
        return member

    @property
    def targets(self) -> list[str]:
        return [m.target for m in self.members]

    def pids(self) -> list[int]:
        return [m.proc.pid for m in self.members if m.proc is not None]

    def role(self, member: RunningApp) -> str:
        with contextlib.suppress(Exception):
            return str(member.replica().get("role"))
        return "gone"

    def stop(self) -> None:
        for member in self.members:
            with contextlib.suppress(Exception):
                member.stop()
            with contextlib.suppress(Exception):
                member.__exit__(None, None, None)

    def __enter__(self) -> ReplicaSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# -- the feed: orders at a steady rate, in a process of its own ------------------------


@dataclass(frozen=True)
class FeedConfig:
    bootstrap: str
    topic: str
    rate: int
    duration: float
    products: int = 100
    seed: int = 11
    #: Records per send_batch call at most (one tick's share at high rates).
    tick: float = 0.005


async def _feed(config: FeedConfig, conn: Connection) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    encode = msgspec.json.Encoder().encode
    producer = AIOKafkaProducer(
        bootstrap_servers=config.bootstrap, acks="all", enable_idempotence=True, linger_ms=0
    )
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(config.topic))
        rng = random.Random(config.seed)
        sums: dict[str, list[int]] = {}
        futures: list[asyncio.Future[Any]] = []
        sent = 0
        conn.send(("ready", os.getpid()))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        total = int(config.rate * config.duration)
        started = time.monotonic()
        while sent < total and not conn.poll():  # until its duration, or told to stop
            due = min(total, int((time.monotonic() - started) * config.rate)) - sent
            if due > 0:
                batches = {p: producer.create_batch() for p in partitions}
                for i in range(sent, sent + due):
                    product = f"p{rng.randrange(config.products):05d}"
                    quantity = rng.randint(1, MAX_QUANTITY)
                    row = sums.setdefault(product, [0, 0])
                    row[0] += quantity
                    row[1] += 1
                    key, value = (
                        f"o{i}".encode(),
                        encode({"product": product, "quantity": quantity}),
                    )
                    part = partitions[i % len(partitions)]
                    if batches[part].append(key=key, value=value, timestamp=None) is None:
                        futures.append(
                            await producer.send_batch(batches[part], config.topic, partition=part)
                        )
                        batches[part] = producer.create_batch()
                        batches[part].append(key=key, value=value, timestamp=None)
                for part, batch in batches.items():
                    if batch.record_count():
                        futures.append(
                            await producer.send_batch(batch, config.topic, partition=part)
                        )
                sent += due
                futures = [f for f in futures if not f.done()]
            await asyncio.sleep(config.tick)
        seconds = time.monotonic() - started
        await asyncio.gather(*futures)
        return {
            "records": sent,
            "seconds": round(seconds, 3),
            "rate": round(sent / max(seconds, 1e-9), 1),
            "sums": {k: (v[0], v[1]) for k, v in sums.items()},
        }
    finally:
        await producer.stop()


def feed_main(config: FeedConfig, conn: Connection) -> None:
    try:
        conn.send(("result", asyncio.run(_feed(config, conn))))
    except Exception:
        conn.send(("error", traceback.format_exc()))


class Feed:
    """The feed process: `start()` returns once connected, `go()` starts the clock."""

    def __init__(self, ctx: Any, config: FeedConfig) -> None:
        self.config = config
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=feed_main, args=(config, child), daemon=True)

    def start(self) -> Feed:
        self.proc.start()
        recv_message(self._conn, 60, "feed")
        return self

    def go(self) -> None:
        self._conn.send("go")

    def stop(self) -> None:
        """End the feed now (before its duration)."""
        self._conn.send("stop")

    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = recv_message(self._conn, self.config.duration + 120, "feed")[1]
        self.proc.join(10)
        return result


async def grid_rows(target: str, app: str, timeout: float = 30) -> dict[str, tuple[int, int]]:
    """The grid of one replica, as product -> (units_sold, orders)."""
    from aerogrid.client import GridClient

    async with GridClient(target) as client:
        rows = await client.snapshot(app, GRID, timeout=timeout)
    return {k: (int(v["units_sold"]), int(v["orders"])) for k, v in rows.items()}


def wait_exact(target: str, app: str, expected: dict[str, tuple[int, int]], timeout: float) -> bool:
    """Whether the replica at `target` reaches exactly `expected` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if asyncio.run(grid_rows(target, app)) == expected:
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
