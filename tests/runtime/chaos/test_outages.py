"""Broker outages: the app keeps serving, says it is degraded, stays quiet and resumes.

A frozen broker (SIGSTOP on its process group) is the hard kind of outage: connections
stay open and requests go unanswered, as behind a dead switch. Each test runs on Apache
Kafka and on the embedded broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aerogrid.client import GridClient
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker
from support.orders import converged, expected_sums, orders
from support.workspace import eventually

pytestmark = pytest.mark.timeout(300)


@contextlib.contextmanager
def frozen(broker: Broker) -> Iterator[None]:
    """The broker stopped (SIGSTOP) for the duration of the block, then continued."""
    assert broker.pid is not None
    group = os.getpgid(broker.pid)
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def reachable(app: RunningApp, name: str, value: float) -> Callable[[], Awaitable[bool]]:
    """A check that the app's broker-reachable gauge reads `value`."""

    async def check() -> bool:
        return app.metric("aerogrid_broker_reachable", {"app": name}) == value

    return check


def app_lines(app: RunningApp) -> list[str]:
    return app.log_file.read_text(errors="replace").splitlines()


async def test_outage_is_visible_quiet_and_processing_resumes(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    first, second = orders(300, seed=21), orders(300, seed=22)
    with RunningApp(path, broker.bootstrap) as app:
        await produce(broker.bootstrap, topic, first)
        want = expected_sums(first)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        assert app.metric("aerogrid_broker_reachable", {"app": unique_name}) == 1
        lines_before = len(app_lines(app))
        with frozen(broker):
            await eventually(reachable(app, unique_name, 0), "the app to notice the outage", 20)
            ready = httpx.get(f"{app.http}/readyz", timeout=5)
            # Still serving its last committed state, and saying it is degraded.
            assert ready.status_code == 200
            assert "degraded: Kafka at" in ready.text and "unreachable" in ready.text
            async with GridClient(app.target) as client:
                (summary,) = [a for a in await client.apps() if a.name == unique_name]
                assert summary.status == "running"
                assert summary.message.startswith("degraded: Kafka at"), summary.message
                assert await client.snapshot(unique_name, "product_sum") == want
                # A subscriber is told the grid is stale, with why.
                async for update in client.subscribe(unique_name, "product_sum"):
                    assert update.stale and "unreachable" in (update.stale_reason or "")
                    break
            await asyncio.sleep(6)  # aiokafka alone logged ~30 ERROR lines a second here
            outage_lines = app_lines(app)[lines_before:]
        assert len(outage_lines) <= 5, "\n".join(outage_lines)
        assert any("unreachable" in line for line in outage_lines)
        await eventually(reachable(app, unique_name, 1), "the app to notice the broker is back", 60)
        assert any("reachable again" in line for line in app_lines(app))
        assert app.metric("aerogrid_broker_outages_total", {"app": unique_name}) == 1
        assert httpx.get(f"{app.http}/readyz", timeout=5).text.strip() in (
            "ready: active",
            "ready: active; checkpointed, not exactly-once: the broker refused a transactional "
            "producer (UnknownError: [Error -1] UnknownError)",
        )
        await produce(broker.bootstrap, topic, second)
        want = expected_sums(first + second)
        assert await converged(app.target, unique_name, "product_sum", want, timeout=60) == want
        assert app.proc is not None and app.proc.poll() is None


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_sigterm_during_an_outage_exits_0_within_10_s(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    records = orders(2000, seed=23)
    app = RunningApp(path, broker.bootstrap)
    try:
        app.start()
        await produce(broker.bootstrap, topic, records[:1000])
        ports = (app.info["grpc_port"], app.info["http_port"])
        with frozen(broker):
            await eventually(reachable(app, unique_name, 0), "the app to notice the outage", 20)
            started = time.monotonic()
            code = app.terminate(timeout=15)
            took = time.monotonic() - started
        assert code == 0, app.log_tail()
        assert took < 10, f"stopping took {took:.1f} s"
        assert "Traceback" not in app.log_file.read_text(errors="replace")
        assert not any(accepts(port) for port in ports), "a listener outlived the process"
        # Nothing acknowledged was lost: a new process picks up exactly where it stopped.
        await produce(broker.bootstrap, topic, records[1000:])
        app.start()
        want = expected_sums(records)
        assert await converged(app.target, unique_name, "product_sum", want, timeout=60) == want
    finally:
        app.stop()
