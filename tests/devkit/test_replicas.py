"""`[apps.NAME] replicas = N` on a desktop: the file, the supervisor and the local endpoint.

The supervisor runs N real `aerogrid run` processes of an app (each with its own ports,
ready file and AEROGRID_REPLICA_ID) and restarts one that is killed; the local endpoint
spreads subscribers over the ready replicas and, when the replica under a subscription
is SIGKILLed, the client resumes through the same endpoint on another one and ends with
the exact grid, on Apache Kafka and on the embedded broker (a SIGKILL, unlike a pause,
is exact on both).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families

from aerogrid.client import ClientRow, GridClient
from aerogrid.errors import ConfigurationError
from aerogrid.net import LOOPBACK_HOST
from aerogrid_devkit.app_process import AppProcess, ReplicaProcess
from aerogrid_devkit.dev_loop_commands import replica_lines
from aerogrid_devkit.local_server.members import Member, Spreader
from aerogrid_devkit.replica_probe import readiness_detail
from aerogrid_devkit.supervisor import Supervisor, http_get
from aerogrid_devkit.workspace import Workspace
from support.apps import produce, write_orders_app
from support.brokers import Broker
from support.workspace import supervised_endpoint, wait_for

pytestmark = pytest.mark.timeout(300)

GRID = "product_sum"
Rows = dict[str, ClientRow]
Records = list[tuple[bytes | None, bytes | None]]


# -- aerogrid.toml ------------------------------------------------------------------------


def workspace(folder: Path, apps: str) -> Workspace:
    for name in ("shop", "prices"):
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "app.py").write_text("import aerogrid\n")
    (folder / "aerogrid.toml").write_text(apps)
    return Workspace.load(folder)


def test_replicas_are_read_per_app_with_one_by_default(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "[apps.shop]\nreplicas = 3\n\n[apps.prices]\n")
    assert ws.replicas == {"shop": 3, "prices": 1}


@pytest.mark.parametrize("value", ["0", "17", "-1", '"two"', "1.5"])
def test_replicas_out_of_range_is_one_sentence_naming_where(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        workspace(tmp_path, f"[apps.shop]\nreplicas = {value}\n")
    message = str(error.value)
    assert "[apps.shop] replicas" in message and "must be a whole number from 1 to 16" in message
    assert "at apps.shop.replicas" in message


def test_aerogrid_dev_names_the_replicas_of_each_replicated_app(tmp_path: Path) -> None:
    ws = workspace(tmp_path, "[apps.shop]\nreplicas = 3\n\n[apps.prices]\n")
    assert replica_lines(ws) == [
        "shop runs 3 replicas: shop-1, shop-2, shop-3 (one active, the others standby)"
    ]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("ready: active", ""),
        ("ready: standby, lag 12", ""),
        ("ready: active; degraded: Kafka unreachable", "degraded: Kafka unreachable"),
        ("ready: checkpointed, not exactly-once: x", "checkpointed, not exactly-once: x"),
        ("ready", ""),
    ],
)
def test_the_apps_health_is_what_readyz_says_beyond_the_role(body: str, detail: str) -> None:
    assert readiness_detail(body) == detail


def test_new_subscriptions_go_to_the_serving_replica_with_fewest_ties_in_turn() -> None:
    def member(index: int, status: str = "running") -> Member:
        replica = ReplicaProcess("shop", index, status=status)
        return Member(replica, port=index, channel=cast(aio.Channel, object()))

    one, two, three, down = member(1), member(2), member(3), member(4, "crashed")
    spreader = Spreader()
    picked = []
    for _ in range(6):
        chosen = spreader.pick([one, two, three, down])
        assert chosen is not None
        chosen.subscriptions += 1
        picked.append(chosen.replica.id)
    assert sorted(picked) == ["shop-1", "shop-1", "shop-2", "shop-2", "shop-3", "shop-3"]
    two.subscriptions = 0  # its subscribers left: the next ones go there
    assert spreader.pick([one, two, three]) is two
    assert spreader.pick([down]) is None


# -- the supervisor -----------------------------------------------------------------------


def environment(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")


async def test_supervisor_runs_each_replica_and_restarts_a_killed_one(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    app_file = write_orders_app(tmp_path, f"{unique_name}-shop", f"{unique_name}-orders")
    lines: list[str] = []
    supervisor = Supervisor(
        {"shop": app_file},
        tansu.bootstrap,
        replicas={"shop": 2},
        on_log=lambda app, line: lines.append(line),
        backoff_start=0.2,
    )
    app = supervisor.apps["shop"]
    await supervisor.start()
    try:
        await wait_for(lambda: len(app.running()) == 2, 90)
        first, second = app.replicas
        assert [first.id, second.id] == ["shop-1", "shop-2"]
        assert first.ports["grpc"] != second.ports["grpc"]
        for replica in app.replicas:
            assert replica.process is not None
            assert f"AEROGRID_REPLICA_ID={replica.id}".encode() in environment(replica.process.pid)
            assert (supervisor.workdir / f"{replica.id}.ready.json").exists()
        assert first.process is not None and second.process is not None
        kept, killed = first.process.pid, second.process.pid

        os.killpg(killed, signal.SIGKILL)
        await wait_for(lambda: second.restarts == 1 and second.status == "running", 90)
        assert second.process.pid != killed
        assert first.process.pid == kept and first.restarts == 0 and app.restarts == 1
        assert any(line.startswith("[aerogrid dev] shop-2 exited with -9") for line in lines)
    finally:
        await supervisor.stop()
    assert [r.status for r in app.replicas] == ["stopped", "stopped"]
    assert all(r.process is not None and r.process.returncode is not None for r in app.replicas)
    assert not supervisor.workdir.exists()


# -- the local endpoint -------------------------------------------------------------------


def orders(prefix: str, count: int) -> Records:
    return [
        (
            f"{prefix}-o{i}".encode(),
            json.dumps({"product": f"p{i % 4}", "quantity": i % 5 + 1}).encode(),
        )
        for i in range(count)
    ]


def totals(records: Records) -> Rows:
    rows: Rows = {}
    for _, value in records:
        assert value is not None
        order = json.loads(value)
        row = rows.setdefault(order["product"], {"units_sold": 0, "orders": 0})
        row["units_sold"] += order["quantity"]
        row["orders"] += 1
    return rows


def roles(app: AppProcess) -> list[str]:
    return sorted(r.role for r in app.replicas)


async def settled(
    app: AppProcess, condition: Callable[[], bool], what: str, timeout: float
) -> None:
    """`wait_for`, failing with each replica's state and the app's last lines."""
    try:
        await wait_for(condition, timeout)
    except AssertionError:
        states = [(r.id, r.status, r.role, r.lag, r.restarts) for r in app.replicas]
        tail = "\n".join(list(app.logs)[-30:])
        raise AssertionError(f"not within {timeout:.0f} s: {what}; {states}\n{tail}") from None


async def subscribers_of(replica: ReplicaProcess) -> float:
    """The replica's open subscriptions (its `aerogrid_subscribers` gauge)."""
    text = await http_get(LOOPBACK_HOST, replica.ports["http"], "/metrics")
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "aerogrid_subscribers"
        for sample in family.samples
    )


async def test_endpoint_spreads_subscribers_and_resumes_a_killed_replicas_on_the_other(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    name, topic = f"{unique_name}-shop", f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, name, topic, partitions=2)
    async with supervised_endpoint(
        {"shop": app_file}, broker.bootstrap, running=["shop"], replicas={"shop": 2}
    ) as (supervisor, endpoint):
        app = supervisor.apps["shop"]
        await settled(app, lambda: len(app.running()) == 2, "both replicas run", 90)
        # Each replica's role, from its GET /replica: one active, one standby.
        await settled(app, lambda: roles(app) == ["active", "standby"], "roles", 60)
        sent = orders("a", 40)
        await produce(broker.bootstrap, topic, sent)

        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(GridClient(endpoint.address)) for _ in range(4)
            ]
            views: list[Rows] = [{} for _ in clients]

            async def follow(index: int) -> None:
                async for update in clients[index].subscribe(name, GRID):
                    views[index] = update.apply_to(views[index])

            tasks = [asyncio.create_task(follow(i)) for i in range(len(clients))]

            def holds(want: Rows) -> bool:
                for task in tasks:
                    if task.done():
                        raise AssertionError(f"a subscription ended: {task.exception()!r}")
                return all(view == want for view in views)

            try:
                want = totals(sent)
                await settled(app, lambda: holds(want), "converged", 60)
                # Spread: two subscriptions on each replica.
                counts = [await subscribers_of(r) for r in app.replicas]
                assert counts == [2, 2], counts

                (active,) = [r for r in app.replicas if r.role == "active"]
                assert active.process is not None
                os.killpg(active.process.pid, signal.SIGKILL)
                more = orders("b", 40)
                await produce(broker.bootstrap, topic, more)
                want = totals(sent + more)
                await settled(app, lambda: holds(want), "failed over", 90)
                # The two on the killed replica resumed on the other from (epoch, seq): deltas.
                resumes = sum((c.resumes for c in clients), start=Counter[str]())
                assert resumes["delta"] >= 2 and resumes["snapshot"] == 0, resumes
                # The survivor took over, and the killed one came back as a standby.
                await settled(app, lambda: roles(app) == ["active", "standby"], "roles again", 60)
                assert active.restarts == 1
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
