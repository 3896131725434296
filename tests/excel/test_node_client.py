"""The browser path end to end: a real Node client (connect-es) streams a grid from a
real `aerogrid run` process consuming a real broker, over Connect and gRPC-Web."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker
from support.node import STREAM_GRID

pytestmark = pytest.mark.node


@pytest.mark.parametrize("protocol", ["connect", "grpcweb"])
async def test_node_client_streams_a_live_grid(
    node: str, tansu: Broker, unique_name: str, tmp_path: Path, protocol: str
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    first = [
        (f"a{i}".encode(), json.dumps({"product": f"p{i % 4}", "quantity": 1}).encode())
        for i in range(40)
    ]
    later = [
        (f"b{i}".encode(), json.dumps({"product": "p9", "quantity": 5}).encode()) for i in range(10)
    ]
    with RunningApp(path, tansu.bootstrap) as app:
        await produce(tansu.bootstrap, topic, first)
        await asyncio.sleep(1.0)
        client = await asyncio.create_subprocess_exec(
            node,
            str(STREAM_GRID),
            "--base-url",
            app.http,
            "--app",
            unique_name,
            "--grid",
            "product_sum",
            "--until-rows",
            "5",
            # p9's whole total: its 10 orders may be committed in more than one batch.
            "--until-cell",
            "p9.units_sold=50",
            "--timeout-ms",
            "30000",
            "--protocol",
            protocol,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        await asyncio.sleep(1.5)  # the client has the snapshot (4 rows) and waits for a 5th
        await produce(tansu.bootstrap, topic, later)
        stdout, stderr = await asyncio.wait_for(client.communicate(), 40)
    assert client.returncode == 0, stderr.decode()
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    assert result["rows"] == {
        **{f"p{k}": {"units_sold": 10, "orders": 10} for k in range(4)},
        "p9": {"units_sold": 50, "orders": 10},
    }
    assert result["updates"] >= 1  # p9 arrived as a live delta, not in the snapshot


async def test_node_client_refused_without_a_token(
    node: str, tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"good": {"subject": "ann", "tenants": ["default"]}}))
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    env = {"AEROGRID_REQUIRE_AUTH": "1"}
    with RunningApp(
        path, tansu.bootstrap, extra_args=("--tokens-file", str(tokens)), env=env
    ) as app:
        base = [
            node,
            str(STREAM_GRID),
            "--base-url",
            app.http,
            "--app",
            unique_name,
            "--grid",
            "product_sum",
            "--timeout-ms",
            "5000",
        ]
        refused = subprocess.run(
            [*base, "--token", "bad"], capture_output=True, text=True, timeout=60
        )
        allowed = subprocess.run(
            [*base, "--token", "good"], capture_output=True, text=True, timeout=60
        )
    assert refused.returncode == 1 and "unauthenticated" in refused.stderr.lower()
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["rows"] == {}
