"""A schema registry outage mid-stream loses nothing: the app pauses, says so, and resumes.

The real registry (H2 file storage, so ids survive its restart) is stopped for 20 s while
records with a writer schema id the app has not seen yet arrive; they must wait, not be
dead-lettered or skipped, and the grid must be exact once the registry is back. A `send()`
that needs a schema registered while the registry is down waits for it too.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

import aerogrid
from aerogrid.client import GridClient
from aerogrid.testing import AppTester
from support.apps import RunningApp, produce, read_topic
from support.brokers import ApacheKafka
from support.orders import converged
from support.registry_apps import AvroOrders, deserialize, write_avro_orders_app
from support.schema_registry import TestRegistry

pytestmark = pytest.mark.timeout(300)

OUTAGE_SECONDS = 20.0


async def _wait_metric(app: RunningApp, name: str, value: float, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    seen = app.metric(name)
    while seen != value and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        seen = app.metric(name)
    return seen


async def _snapshot(target: str, app: str, grid: str) -> dict[str, dict[str, object]]:
    async with GridClient(target) as client:
        return await client.snapshot(app, grid)


async def test_a_registry_outage_pauses_consumption_and_loses_nothing(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_avro_orders_app(tmp_path, unique_name, topic, f"{unique_name}-shipments")
    writer = AvroOrders(schema_registry.url, topic)
    before = writer.make(200, "v1", seed=7)
    env = {"AEROGRID_SCHEMA_REGISTRY": schema_registry.url}
    with RunningApp(path, apache_kafka.bootstrap, env=env) as app:
        await produce(apache_kafka.bootstrap, topic, before)
        first = writer.product_sums()
        assert await converged(app.target, unique_name, "product_sum", first) == first
        # Written (and registered) now; the app has never seen the v2 writer schema's id.
        during = writer.make(300, "v2", seed=8)
        schema_registry.stop()
        try:
            stopped = time.monotonic()
            await produce(apache_kafka.bootstrap, topic, during)
            assert await _wait_metric(app, "aerogrid_schema_registry_up", 0, 15) == 0
            assert app.metric("aerogrid_records_waiting_on_registry") > 0
            ready = httpx.get(f"{app.http}/readyz", timeout=5)
            assert ready.status_code == 200  # it still serves the last committed grids
            assert "degraded: schema registry unreachable" in ready.text
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
            # Paused: nothing of the new records reached the grid, nothing was dead-lettered.
            assert await _snapshot(app.target, unique_name, "product_sum") == first
            assert app.metric("aerogrid_dead_lettered_total") == 0
            assert app.metric("aerogrid_decode_errors_total") == 0
            assert app.proc is not None and app.proc.poll() is None
        finally:
            schema_registry.start()
        want = writer.product_sums()
        assert await converged(app.target, unique_name, "product_sum", want, 60) == want
        assert app.metric("aerogrid_schema_registry_up") == 1
        assert app.metric("aerogrid_records_waiting_on_registry") == 0
        assert app.metric("aerogrid_schema_registry_pauses_total") == 1
        assert app.metric("aerogrid_schema_registry_errors_total", {"kind": "unavailable"}) >= 1
        assert app.metric("aerogrid_dead_lettered_total") == 0
        assert app.metric("aerogrid_records_in_total", {"topic": topic}) == 500
        log = app.log_file.read_text()
        assert "schema registry unreachable" in log
        assert "consumption paused" in log
        assert "schema registry answers again after" in log
        assert app.terminate() == 0
    assert await read_topic(apache_kafka.bootstrap, f"{unique_name}.dlq", 1, timeout=2) == []


class Alert(aerogrid.Record):
    product: str
    level: int


async def test_send_waits_for_the_registry_and_then_sends(
    schema_registry: TestRegistry, unique_name: str
) -> None:
    """A schema first registered while the registry is down: send() waits, then sends."""
    app = aerogrid.App(unique_name)
    alerts = app.topic(f"{unique_name}-alerts", value_type=Alert, format="avro")

    @app.task
    async def alert() -> None:
        await alerts.send("k", Alert(product="p1", level=3))

    async with AppTester(app, schema_registry=schema_registry.url) as tester:
        schema_registry.stop()
        try:
            sending = asyncio.create_task(tester.run_task("alert"))
            await asyncio.sleep(3)
            assert not sending.done()
            assert tester.schemas is not None and tester.schemas.outage is not None
        finally:
            await asyncio.to_thread(schema_registry.start)
        await asyncio.wait_for(sending, 60)
        assert tester.schemas.outage is None
    (sent,) = tester.sent
    assert deserialize(schema_registry.url, alerts.name, [sent.value or b""]) == [
        {"product": "p1", "level": 3}
    ]


async def test_a_stop_while_records_wait_commits_none_of_them(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    """SIGTERM during an outage: the app exits at once (0), the waiting records are not
    committed, and the next start reads them once the registry is back."""
    topic = f"{unique_name}-orders"
    path = write_avro_orders_app(tmp_path, unique_name, topic, f"{unique_name}-shipments")
    writer = AvroOrders(schema_registry.url, topic)
    before = writer.make(50, "v1", seed=11)
    env = {"AEROGRID_SCHEMA_REGISTRY": schema_registry.url}
    app = RunningApp(path, apache_kafka.bootstrap, env=env)
    try:
        app.start()
        await produce(apache_kafka.bootstrap, topic, before)
        first = writer.product_sums()
        assert await converged(app.target, unique_name, "product_sum", first) == first
        waiting = writer.make(80, "v2", seed=12)
        schema_registry.stop()
        try:
            await produce(apache_kafka.bootstrap, topic, waiting)
            assert await _wait_metric(app, "aerogrid_schema_registry_up", 0, 15) == 0
            started = time.monotonic()
            assert app.terminate() == 0
            assert time.monotonic() - started < 10
        finally:
            schema_registry.start()
        app.start()
        want = writer.product_sums()
        assert await converged(app.target, unique_name, "product_sum", want, 60) == want
        assert app.metric("aerogrid_records_in_total", {"topic": topic}) == 80  # not before
        assert app.metric("aerogrid_dead_lettered_total") == 0
    finally:
        app.stop()
