"""Several `aerogrid run` processes of one app (its replicas), their subscribers, and a feed.

`ReplicaSet` runs the processes on ports fixed for their whole life, so a process started
again is found where it was (as a Service name finds a pod again) and a client given
every target can come back to it. `Subscriber` is one `GridClient` subscription in a task,
with its copy of the grid and how often it moved. `OrderFeed` produces orders at a steady
pace until stopped; `StreamLosses` records every stream a client lost, and on which
address, so a test can say that only streams of dying processes broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
from aiokafka import AIOKafkaProducer

from aerogrid.client import ClientRow, GridClient, ResumeKind
from support.apps import RunningApp
from support.brokers import free_port
from support.orders import orders

Rows = dict[str, ClientRow]


class ReplicaSet:
    """`count` processes of one app, `AEROGRID_REPLICA_ID` = `r0`, `r1`, ..."""

    def __init__(
        self,
        app_file: Path,
        bootstrap: str,
        count: int,
        *,
        env: dict[str, str] | None = None,
        extra_args: Sequence[tuple[str, ...]] = (),
    ) -> None:
        self.apps: list[RunningApp] = []
        for k in range(count):
            ports = ("--port", str(free_port()), "--http-port", str(free_port()))
            more = extra_args[k] if k < len(extra_args) else ()
            self.apps.append(
                RunningApp(
                    app_file,
                    bootstrap,
                    extra_args=(*ports, *more),
                    env={**(env or {}), "AEROGRID_REPLICA_ID": f"r{k}"},
                )
            )

    @property
    def targets(self) -> list[str]:
        return [app.target for app in self.apps]

    async def start(self, *apps: RunningApp, timeout: float = 90.0) -> None:
        """Start `apps` (default: all, the first alone so that it is the active) and wait
        until each is ready and knows the active (serve-only ones: ready)."""
        todo = list(apps) or self.apps
        if not apps:
            await self._start(todo[0], timeout)
            todo = todo[1:]
        await asyncio.gather(*(self._start(app, timeout) for app in todo))

    async def _start(self, app: RunningApp, timeout: float) -> None:
        serve_only = "--serve-only" in app.extra_args
        try:
            await asyncio.to_thread(app.start, timeout, wait_active=not serve_only)
        except RuntimeError as exc:
            # A replica that cannot join waits on the others: say what they were doing.
            others = "\n".join(
                f"--- {other.info.get('replica', '?')} ---\n{other.log_tail(25)}"
                for other in self.apps
                if other is not app
            )
            raise RuntimeError(f"{exc}\nthe other replicas' logs:\n{others}") from None

    def alive(self) -> list[RunningApp]:
        return [app for app in self.apps if app.proc is not None and app.proc.poll() is None]

    def role(self, app: RunningApp) -> str | None:
        """The process's role as its `/replica` says (None: it does not answer)."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return str(app.replica()["role"])
        return None

    async def wait_for_active(
        self, *, not_: RunningApp | None = None, timeout: float = 30.0
    ) -> RunningApp:
        """The process that says it is the active (other than `not_`), once one does."""
        deadline = time.monotonic() + timeout
        while True:
            for app in self.alive():
                if app is not not_ and await asyncio.to_thread(self.role, app) == "active":
                    return app
            if time.monotonic() > deadline:
                roles = {app.info.get("replica"): self.role(app) for app in self.alive()}
                raise AssertionError(f"no active replica within {timeout:.0f} s: {roles}")
            await asyncio.sleep(0.1)

    def by_target(self, target: str | None) -> RunningApp:
        (found,) = [app for app in self.apps if app.target == target]
        return found

    def stop(self) -> None:
        for app in self.apps:
            app.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for app in self.apps:
            app.__exit__(exc_type, exc, tb)


class Subscriber:
    """One subscription through its own `GridClient`, followed in a task."""

    def __init__(
        self,
        targets: Sequence[str],
        app: str,
        grid: str,
        *,
        token: str | None = None,
        **options: Any,
    ) -> None:
        self.client = GridClient(list(targets), token=token, reconnect_delay=0.1, reconnect_max=1.0)
        self.rows: Rows = {}
        self.epoch = ""
        self.seq = 0
        self.updates = 0
        self._task = asyncio.create_task(self._follow(app, grid, options))

    async def _follow(self, app: str, grid: str, options: dict[str, Any]) -> None:
        async with self.client:
            async for update in self.client.subscribe(app, grid, **options):
                self.rows = update.apply_to(self.rows)
                self.epoch, self.seq = update.epoch, update.seq
                self.updates += 1

    @property
    def endpoint(self) -> str | None:
        return self.client.endpoint

    @property
    def moves(self) -> tuple[int, Counter[ResumeKind]]:
        """(failovers, resumes by kind) so far: unchanged means never disconnected."""
        return self.client.failovers, Counter(self.client.resumes)

    def check(self) -> None:
        """Raise what ended the subscription, if it ended (it never should)."""
        if self._task.done():
            self._task.result()
            raise AssertionError(f"the subscription on {self.endpoint} ended")

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def until(
    condition: Callable[[], bool],
    what: Callable[[], str] | str,
    timeout: float,
    *,
    subscribers: Sequence[Subscriber] = (),
) -> float:
    """Wait for `condition` (seconds waited), checking `subscribers` are still going."""
    started = time.monotonic()
    while not condition():
        for subscriber in subscribers:
            subscriber.check()
        if time.monotonic() - started > timeout:
            said = what if isinstance(what, str) else what()
            raise AssertionError(f"not within {timeout:.0f} s: {said}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


class OrderFeed:
    """Orders for the example app, `per_tick` every `tick` seconds, until `stop()`.

    `sent` holds the orders the broker acknowledged (all of them once stopped).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        per_tick: int = 20,
        tick: float = 0.1,
        products: int = 25,
        seed: int = 1,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self.per_tick, self.tick = per_tick, tick
        self.products, self.seed = products, seed
        self.sent: list[tuple[bytes | None, bytes | None]] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            tick = 0
            while not self._stopping.is_set():
                batch = orders(
                    self.per_tick, seed=self.seed * 100_000 + tick, products=self.products
                )
                futures = [await producer.send(self.topic, key=k, value=v) for k, v in batch]
                await asyncio.gather(*futures)
                self.sent.extend(batch)
                tick += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.tick)
        finally:
            await producer.stop()

    async def stop(self) -> None:
        """Stop after the batch in flight; raises what failed the feed, if anything did."""
        self._stopping.set()
        if self._task is not None:
            await self._task


class StreamLosses(logging.Handler):
    """Every stream a `GridClient` lost (its log says so), and whether it was expected.

    A loss is expected on an address in `dying` (a process being killed or stopped, or
    already gone); any other is kept in `unexpected`.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.dying: set[str] = set()
        self.codes: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self._logger = logging.getLogger("aerogrid.client")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if " lost on " not in str(record.msg) or len(args) < 4:
            return
        address, code = str(args[2]), str(args[3])
        self.codes[code] += 1
        if address not in self.dying:
            self.unexpected.append(record.getMessage())

    def __enter__(self) -> Self:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
