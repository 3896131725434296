"""Run AeroGrid apps as real `python -m aerogrid run` subprocesses, and feed them.

Each app runs in its own process group on free ports, announces its ports through
`--ready-file`, and is always stopped (SIGTERM, then SIGKILL) by `stop()`. Its
temporary `aerogrid-app-*` folder (ready file, log) goes when the `with` block ends, or
when the object is collected or the test process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_APP = REPO / "examples" / "ordersapp" / "app.py"

#: The example app with its names made unique, so tests can share one broker.
ORDERS_TEMPLATE = """
import aerogrid

app = aerogrid.App({app!r}, tenant={tenant!r})

class Order(aerogrid.Record):
    product: str
    quantity: int

orders_topic = app.topic({topic!r}, key_type=str, value_type=Order, partitions={partitions},
                         config={config!r})
product_sum = app.Grid('product_sum', columns=['units_sold', 'orders'],
                       default=lambda: {{'units_sold': 0, 'orders': 0}})

@app.stream(orders_topic)
async def sum_orders(orders):
    async for order_id, order in orders.items():
        row = product_sum[order.product]
        if order.quantity < 0:
            raise ValueError('negative quantity in ' + order_id)
        product_sum[order.product] = {{'units_sold': row['units_sold'] + order.quantity,
                                      'orders': row['orders'] + 1}}
"""


def write_orders_app(
    folder: Path,
    app: str,
    topic: str,
    *,
    partitions: int = 3,
    tenant: str = "default",
    config: dict[str, str] | None = None,
) -> Path:
    """The orders app under unique names; `config`: the input topic's config when created."""
    path = folder / f"{app}.py"
    path.write_text(
        ORDERS_TEMPLATE.format(
            app=app, topic=topic, partitions=partitions, tenant=tenant, config=config or {}
        )
    )
    return path


class RunningApp:
    """`python -m aerogrid run APP --broker B --port 0` in its own process group."""

    def __init__(
        self,
        app_file: Path,
        bootstrap: str,
        *,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.app_file = app_file
        self.python = python
        self.bootstrap = bootstrap
        self.extra_args = extra_args
        self.env = env or {}
        self._dir = Path(tempfile.mkdtemp(prefix="aerogrid-app-"))
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self.ready_file = self._dir / "ready.json"
        self.log_file = self._dir / "app.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self, timeout: float = 60.0, *, wait_active: bool = True) -> Self:
        self._dir.mkdir(exist_ok=True)  # started again after its `with` block
        self.ready_file.unlink(missing_ok=True)
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [
                self.python,
                "-m",
                "aerogrid",
                "run",
                str(self.app_file),
                "--broker",
                self.bootstrap,
                "--port",
                "0",
                "--ready-file",
                str(self.ready_file),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"app not ready in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        self.info = json.loads(self.ready_file.read_text())
        if wait_active:
            self.wait_for_active(max(1.0, deadline - time.monotonic()))
        return self

    def replica(self) -> dict[str, Any]:
        """The process's `GET /replica`: its role, the active's id, each grid's epoch and seq."""
        answer: dict[str, Any] = httpx.get(f"{self.http}/replica", timeout=5).json()
        return answer

    def wait_for_active(self, timeout: float = 30.0) -> str:
        """Wait until this process knows an active replica (itself or another); its id.

        A process is ready once restored, a moment before the replica group has elected
        the active: tests that count cycles wait for processing to start.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                answer = httpx.get(f"{self.http}/replica", timeout=5)
                if answer.status_code in (401, 403):
                    # A tokens file guards /replica as it guards /metrics; /readyz is open.
                    if httpx.get(f"{self.http}/readyz", timeout=5).text.startswith("ready: active"):
                        return str(self.info.get("replica"))
                else:
                    state = answer.json()
                    active = state.get("active")
                    if active and (
                        state.get("role") != "standby" or active != self.info.get("replica")
                    ):
                        return str(active)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no active replica in {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.info['grpc_port']}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.info['http_port']}"

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample from the app's /metrics (0 when absent)."""
        text = httpx.get(f"{self.http}/metrics", timeout=5).text
        wanted = labels or {}
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in wanted.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.terminate(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 20.0) -> list[Any]:
    """Read a topic from the beginning until `expected` records arrived (or timeout)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        for _ in range(50):
            if partitions:
                break
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
            await asyncio.sleep(0.05)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or {0})])
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(found) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                found.extend(messages)
        return found
    finally:
        await consumer.stop()
