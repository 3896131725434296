"""`aerogrid demo`: the product in one command, on a machine with neither Docker nor Java.

A private embedded broker, the design's orders app (shipped inside the devkit, the same
file as `examples/ordersapp/app.py`) under the supervisor, the local endpoint, and a feed
of realistic orders with the odd malformed one (dead-lettered, never counted). The grid
is read back through the local endpoint, exactly as Excel would read it, and at the end
it is checked against what the feed sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer

from aerogrid.client import GridClient, GridClientError
from aerogrid_devkit.dev_loop import DevLoop, bundled_python
from aerogrid_devkit.embedded import EmbeddedBroker, port_is_free

if TYPE_CHECKING:
    from aerogrid_devkit.tui.app import AeroGridApp

#: The orders app of the design, to the letter: a copy of examples/ordersapp (the one
#: source) as package data, so the wheel and the binary ship it; tests/devkit/test_demo.py
#: fails when the two differ.
ORDERS_APP = Path(__file__).resolve().parent / "examples" / "ordersapp" / "app.py"
APP, GRID, TOPIC = "ordersapp", "product_sum", "orders"

#: A café's menu with how often each item is ordered: a grid worth watching.
MENU = {
    "espresso": 30,
    "flat white": 24,
    "cappuccino": 20,
    "latte": 16,
    "tea": 10,
    "croissant": 12,
    "bagel": 8,
    "muffin": 7,
    "orange juice": 5,
}
#: Every this-many-th order is malformed on purpose (quantity "lots"): dead-lettered.
MALFORMED_EVERY = 97

Rows = dict[str, dict[str, Any]]


@dataclass
class OrderFeed:
    """Produces orders at a steady rate and remembers what the grid must add up to."""

    bootstrap: str
    rate: float = 50.0
    seed: int | None = None
    sent: int = 0
    malformed: int = 0
    expected: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        products, weights = list(MENU), list(MENU.values())
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            started = time.monotonic()
            while not stop.is_set():
                number = self.sent + 1
                product = rng.choices(products, weights)[0]
                if number % MALFORMED_EVERY == 0:
                    value: dict[str, Any] = {"product": product, "quantity": "lots"}
                else:
                    value = {
                        "product": product,
                        "quantity": rng.choices([1, 2, 3, 4, 6], [60, 20, 10, 6, 4])[0],
                    }
                await producer.send_and_wait(
                    TOPIC, key=f"order-{number:06d}".encode(), value=json.dumps(value).encode()
                )
                self.sent = number
                if isinstance(value["quantity"], int):
                    self.expected[product] = self.expected.get(product, 0) + value["quantity"]
                else:
                    self.malformed += 1
                # Paced against the clock, so a slow send does not lower the rate.
                delay = started + self.sent / self.rate - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
        finally:
            await producer.stop()

    def expected_rows(self) -> Rows:
        return {product: {"units_sold": units} for product, units in self.expected.items()}


def format_grid(rows: Rows, title: str) -> str:
    total = sum(int(row["units_sold"]) for row in rows.values())
    lines = [f"-- {GRID}  {title}  ({len(rows)} products, {total} units)"]
    widest = max((int(row["units_sold"]) for row in rows.values()), default=1) or 1
    for key in sorted(rows, key=lambda k: (-int(rows[k]["units_sold"]), k)):
        units = int(rows[key]["units_sold"])
        lines.append(f"   {key:<14} {units:>7}  {'█' * max(1, round(40 * units / widest))}")
    return "\n".join(lines)


@dataclass
class DemoOptions:
    headless: bool = False
    duration: float | None = None
    as_json: bool = False
    rate: float = 50.0
    endpoint_port: int = 50051
    seed: int | None = None


class Demo:
    """Everything the demo runs, started and stopped in order."""

    def __init__(
        self,
        options: DemoOptions,
        echo: Callable[[str], None] = print,
        *,
        run_tui: Callable[[AeroGridApp], Awaitable[object]] | None = None,
    ) -> None:
        self.options = options
        self.echo = echo
        #: How the TUI runs (tests run it headless under Textual's pilot).
        self.run_tui = run_tui or (lambda tui: tui.run_async())
        self.started = time.monotonic()
        self.first_update: float | None = None
        self.rows: Rows = {}
        #: Set on every grid update the demo's own subscriber receives.
        self.updated = asyncio.Event()

    async def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="aerogrid-demo-") as tmp:
            broker = EmbeddedBroker(0, log_file=Path(tmp) / "broker.log", private=True).start()
            try:
                return await self._run_on(broker)
            finally:
                broker.stop()

    async def _run_on(self, broker: EmbeddedBroker) -> int:
        port = self.options.endpoint_port
        if port and not port_is_free(port):
            self.echo(f"port {port} is taken (another aerogrid dev?): using a free port")
            port = 0
        loop = DevLoop(
            {APP: ORDERS_APP}, broker.bootstrap, endpoint_port=port, python_for=bundled_python
        )
        self.echo(f"embedded broker on {broker.bootstrap} (in memory, no Docker, no Java)")
        async with loop:
            self.echo(f"local endpoint on {loop.local_server.url}: point Excel here")
            self.echo(loop.local_server.addin_status())
            if not await self._wait_running(loop):
                return 1
            feed = OrderFeed(broker.bootstrap, self.options.rate, self.options.seed)
            stop = asyncio.Event()
            feeder = asyncio.create_task(feed.run(stop), name="feed")
            if self.options.headless:
                watcher = await self._headless(loop)
            else:
                watcher = await self._tui(loop)
            stop.set()
            await feeder  # every order sent is counted before the grid is checked
            if self.options.duration is None:
                watcher.cancel()
                return 0
            return await self._finish(loop, feed, watcher)

    async def _wait_running(self, loop: DevLoop, timeout: float = 90.0) -> bool:
        app = loop.supervisor.apps[APP]
        deadline = time.monotonic() + timeout
        while app.status != "running":
            if app.restarts or time.monotonic() > deadline:
                self.echo(f"the orders app did not start ({app.status}); its last lines:")
                for line in list(app.logs)[-20:]:
                    self.echo(f"  {line}")
                return False
            await asyncio.sleep(0.05)
        return True

    async def _headless(self, loop: DevLoop) -> asyncio.Task[None]:
        """Print the grid as it changes (at most once a second) until the time is up."""
        self.echo(f"feeding ~{self.options.rate:.0f} orders/s; Ctrl-C stops")
        watcher = asyncio.create_task(self._watch(loop.address), name="watch")
        interrupted = asyncio.Event()
        event_loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            event_loop.add_signal_handler(sig, interrupted.set)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupted.wait(), self.options.duration)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                event_loop.remove_signal_handler(sig)
        return watcher

    async def _tui(self, loop: DevLoop) -> asyncio.Task[None]:
        from aerogrid_devkit.tui.app import AeroGridApp

        tui = AeroGridApp(loop, open_grid=(APP, GRID), title="AeroGrid demo")
        loop.say(f"demo: the orders app, fed ~{self.options.rate:.0f} orders/s")
        watcher = asyncio.create_task(self._watch(loop.address, quiet=True), name="watch")
        timer = (
            asyncio.get_running_loop().call_later(self.options.duration, tui.exit)
            if self.options.duration is not None
            else None
        )
        try:
            await self.run_tui(tui)
        finally:
            if timer is not None:
                timer.cancel()
        return watcher

    async def _watch(self, address: str, *, quiet: bool = False) -> None:
        last_print = 0.0
        async with GridClient(address) as client:
            async for update in client.subscribe(APP, GRID, min_interval_ms=250):
                self.rows = update.apply_to(self.rows)
                self.updated.set()
                if self.first_update is None and self.rows:
                    self.first_update = time.monotonic()
                    if not quiet:
                        elapsed = self.first_update - self.started
                        self.echo(f"first grid update {elapsed:.2f}s after start")
                if not quiet and time.monotonic() - last_print >= 1.0 and self.rows:
                    self.echo(format_grid(self.rows, f"seq {update.seq}"))
                    last_print = time.monotonic()

    async def _finish(self, loop: DevLoop, feed: OrderFeed, watcher: asyncio.Task[None]) -> int:
        """Wait for the grid to take in every order sent, then print it (and check it)."""
        expected = feed.expected_rows()
        deadline = time.monotonic() + 30
        while self.rows != expected and not watcher.done():
            self.updated.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.updated.wait(), remaining)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, GridClientError):
            await watcher
        async with GridClient(loop.address) as client:
            final = await client.snapshot(APP, GRID)
        app = loop.supervisor.apps[APP]
        self.echo(format_grid(final, "final"))
        self.echo(
            f"{feed.sent} orders sent ({feed.malformed} malformed, dead-lettered: "
            f"{app.stats.dead_lettered:.0f} counted by the app); "
            f"{sum(int(r['units_sold']) for r in final.values())} units in the grid"
        )
        ok = final == expected
        if not ok:
            self.echo("error: the grid does not add up to the orders sent")
        if self.options.as_json:
            self.echo(json.dumps({GRID: final}, sort_keys=True))
        return 0 if ok else 1


def run_demo(options: DemoOptions) -> int:
    def echo(line: str) -> None:
        print(line, flush=True)

    try:
        return asyncio.run(Demo(options, echo).run())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - `aerogrid demo` is the way in
    sys.exit(run_demo(DemoOptions(headless=True, duration=10)))
