"""The guarantee is never weakened silently.

Before, an app whose Apache Kafka was slow to answer InitProducerId for 15 s logged one
warning and ran checkpointed on a broker that has transactions. A coordinator that
cannot load its log stands in for a slow one here: a single broker told to replicate
`__transaction_state` twice answers COORDINATOR_NOT_AVAILABLE to every InitProducerId.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aerogrid.client import GridClient
from support.apps import RunningApp, write_orders_app
from support.brokers import ApacheKafka, Broker
from support.ci import unavailable

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def slow_coordinator() -> Iterator[ApacheKafka]:
    reason = ApacheKafka.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    with ApacheKafka(extra_config={"transaction.state.log.replication.factor": "2"}) as kafka:
        yield kafka


async def test_a_slow_transaction_coordinator_is_waited_for_not_taken_as_no_transactions(
    slow_coordinator: ApacheKafka, unique_name: str, tmp_path: Path
) -> None:
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    ready_file = tmp_path / "ready.json"
    log_file = tmp_path / "app.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aerogrid", "run", str(path), "--port", "0", "--http-port",
             "0", "--broker", slow_coordinator.bootstrap, "--ready-file", str(ready_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        # The old start gave up after 15 s and ran checkpointed; this one keeps waiting.
        deadline = time.monotonic() + 22
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_file.read_text()
            assert not ready_file.exists(), "the app started without its guarantee"
            await asyncio.sleep(0.5)
        text = log_file.read_text()
        assert "for the transaction coordinator" in text and "still trying" in text, text
        assert "using checkpoints" not in text
        # A stop while it waits is clean.
        started = time.monotonic()
        proc.terminate()
        assert proc.wait(15) == 0, log_file.read_text()
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_a_downgrade_is_stated_everywhere(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    """The embedded broker refuses transactions outright: `auto` downgrades, visibly."""
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    with RunningApp(path, tansu.bootstrap) as app:
        assert app.info["guarantee"] == "checkpointed"
        ready = httpx.get(f"{app.http}/readyz", timeout=5)
        assert ready.status_code == 200
        assert "checkpointed, not exactly-once: the broker refused" in ready.text
        labels = {"app": unique_name, "guarantee": "checkpointed"}
        assert app.metric("aerogrid_guarantee", labels) == 1
        async with GridClient(app.target) as client:
            (summary,) = [a for a in await client.apps() if a.name == unique_name]
        assert summary.message.startswith("checkpointed, not exactly-once"), summary.message


def test_exactly_once_on_refuses_a_broker_without_transactions(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    app = RunningApp(path, tansu.bootstrap, extra_args=("--exactly-once", "on"))
    with pytest.raises(RuntimeError, match="exited with 1") as failed:
        app.start(timeout=60)
    assert "exactly-once (--exactly-once on) needs Kafka transactions" in str(failed.value)
    assert "Traceback" not in str(failed.value)
