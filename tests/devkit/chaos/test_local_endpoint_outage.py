"""Through the devkit's local endpoint (what Excel and the TUI talk to), an outage shows.

The app's own catalog says it is degraded; the local endpoint follows each app's
WatchApps, so its catalog and its subscribers say so too, and recover with the broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from aerogrid.client import GridClient
from aerogrid_devkit.embedded import EmbeddedBroker, free_port
from support.apps import produce, write_orders_app
from support.orders import expected_sums, orders
from support.workspace import eventually, supervised_endpoint

pytestmark = pytest.mark.timeout(180)


async def messages(target: str) -> dict[str, str]:
    async with GridClient(target) as client:
        return {app.name: app.message for app in await client.apps()}


async def message_starts(target: str, app: str, prefix: str) -> bool:
    return (await messages(target))[app].startswith(prefix)


async def test_the_local_endpoint_says_an_app_is_degraded_and_then_recovered(
    unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    files = {"orders": write_orders_app(tmp_path, unique_name, topic, partitions=1)}
    broker = EmbeddedBroker(free_port(), log_file=tmp_path / "broker.log", private=True).start()
    try:
        async with supervised_endpoint(files, broker.bootstrap, running=["orders"]) as (_, ep):
            target = f"127.0.0.1:{ep.port}"
            records = orders(100, seed=51)
            await produce(broker.bootstrap, topic, records)
            async with GridClient(target) as client:
                want = expected_sums(records)
                for _ in range(100):
                    if await client.snapshot(unique_name, "product_sum") == want:
                        break
                    await asyncio.sleep(0.1)
                assert await client.snapshot(unique_name, "product_sum") == want
            assert (await messages(target))[unique_name].startswith("checkpointed")
            assert broker.proc is not None
            os.killpg(broker.proc.pid, signal.SIGSTOP)
            try:
                await eventually(
                    lambda: message_starts(target, unique_name, "degraded: Kafka at"),
                    "the local endpoint's catalog to say the app is degraded",
                    20,
                )
                async with GridClient(target) as client:
                    async for update in client.subscribe(unique_name, "product_sum"):
                        assert update.stale and update.upserts == want
                        break
            finally:
                os.killpg(broker.proc.pid, signal.SIGCONT)
            await eventually(
                lambda: message_starts(target, unique_name, "checkpointed"),
                "the app to be back (only its checkpointed notice left)",
                30,
            )
    finally:
        broker.stop()
