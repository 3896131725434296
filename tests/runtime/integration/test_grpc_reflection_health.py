"""An app's gRPC port with the real grpcurl: no .proto files (server reflection), and the
standard health protocol as Kubernetes' gRPC probes use it: NOT_SERVING until restored,
SERVING after, NOT_SERVING again as soon as SIGTERM starts the drain."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aerogrid.server.grpc_standard import LIVENESS
from support.apps import RunningApp, produce, write_orders_app
from support.brokers import Broker, free_port
from support.grpcurl import Grpcurl, grpcurl_binary
from support.orders import converged, expected_sums, orders

GRID_SERVICE = "aerogrid.v1.GridService"
CATALOG_SERVICE = "aerogrid.v1.CatalogService"


@pytest.fixture(scope="module")
def grpcurl_path() -> Path:
    return grpcurl_binary()


async def test_grpcurl_lists_describes_and_calls_an_app(
    apache_kafka: Broker, unique_name: str, tmp_path: Path, grpcurl_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    records = orders(40, seed=5)
    want = expected_sums(records)
    with RunningApp(write_orders_app(tmp_path, unique_name, topic), apache_kafka.bootstrap) as app:
        await produce(apache_kafka.bootstrap, topic, records)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        grpcurl = Grpcurl(grpcurl_path, app.target)

        listed = grpcurl.ok("list").split()
        assert set(listed) >= {
            GRID_SERVICE,
            CATALOG_SERVICE,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        assert grpcurl.ok("list", GRID_SERVICE).split() == [
            f"{GRID_SERVICE}.ListGrids",
            f"{GRID_SERVICE}.Subscribe",
        ]
        described = grpcurl.ok("describe", GRID_SERVICE)
        assert "rpc Subscribe ( .aerogrid.v1.SubscribeRequest ) returns ( stream" in described
        assert "keys" in grpcurl.ok("describe", "aerogrid.v1.SubscribeRequest")

        (grids,) = grpcurl.call(f"{GRID_SERVICE}/ListGrids", {"app": unique_name})
        assert [g["name"] for g in grids["grids"]] == ["product_sum"]
        (apps,) = grpcurl.call(f"{CATALOG_SERVICE}/ListApps")
        assert [a["name"] for a in apps["apps"]] == [unique_name]

        events = grpcurl.stream(
            f"{GRID_SERVICE}/Subscribe",
            {"app": unique_name, "grid": "product_sum", "heartbeatIntervalMs": 200},
            seconds=1.5,
        )
        kinds = [next(iter(event)) for event in events]
        assert kinds[:2] == ["schema", "snapshot"], kinds
        assert "heartbeat" in kinds[2:], kinds  # the stream goes on: a few messages
        rows = {row["key"] for row in events[1]["snapshot"]["rows"]}
        assert rows == set(want)

        for service in ("", GRID_SERVICE, CATALOG_SERVICE, LIVENESS):
            assert grpcurl.health(service) == "SERVING", service
        assert grpcurl.health("no.such.Service") == "NOT_FOUND"


async def test_health_turns_not_serving_at_sigterm(
    apache_kafka: Broker, unique_name: str, tmp_path: Path
) -> None:
    """A `Watch` caller (an Envoy, a mesh) sees the app stop serving before it closes."""
    topic = f"{unique_name}-orders"
    with RunningApp(write_orders_app(tmp_path, unique_name, topic), apache_kafka.bootstrap) as app:
        async with aio.insecure_channel(app.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="")
            )
            first = await asyncio.wait_for(watch.read(), 5)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            assert app.proc is not None
            app.proc.send_signal(signal.SIGTERM)
            then = await asyncio.wait_for(watch.read(), 10)
            assert then.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
        assert await asyncio.to_thread(app.proc.wait, 15) == 0


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A "broker" that accepts connections and never answers: the app stays in start-up."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()


def test_health_is_not_serving_before_restore(
    silent_broker: str, unique_name: str, tmp_path: Path, grpcurl_path: Path
) -> None:
    """Before its grids are restored an app answers, but as NOT_SERVING (and /readyz 503);
    the LIVENESS service serves at once, so a startup probe does not restart it."""
    app_file = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    grpc_port, http_port = free_port(), free_port()
    command = [sys.executable, "-m", "aerogrid", "run", str(app_file), "--broker", silent_broker]
    command += ["--port", str(grpc_port), "--http-port", str(http_port)]
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        grpcurl = Grpcurl(grpcurl_path, f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 20
        while grpcurl.run("list").returncode != 0:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert grpcurl.health("") == "NOT_SERVING"
        assert grpcurl.health(GRID_SERVICE) == "NOT_SERVING"
        assert grpcurl.health(CATALOG_SERVICE) == "NOT_SERVING"
        assert grpcurl.health(LIVENESS) == "SERVING"
        ready = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=5)
        assert ready.status_code == 503
        assert proc.poll() is None, "the app left start-up: the broker was not silent enough"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    assert proc.returncode is not None
