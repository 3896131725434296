"""The runtime end to end: `aerogrid run` as a real process against real brokers.

Every test runs on Apache Kafka and on the embedded broker unless the feature it checks
does not exist there (transactions): then it says so and runs on Kafka only.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from aerogrid.client import GridClient, GridClientError
from support.apps import EXAMPLE_APP, RunningApp, produce, read_topic, write_orders_app
from support.brokers import Broker
from support.orders import converged, expected_sums, orders

pytestmark = pytest.mark.timeout(600)


async def test_example_app_runs_unchanged(broker: Broker) -> None:
    """The design's example app, to the letter, consuming real orders."""
    records = orders(500, seed=11)
    records += [(b"bad-1", b"not json"), (b"bad-2", b'{"product": "p1", "quantity": "3"}')]
    with RunningApp(EXAMPLE_APP, broker.bootstrap) as app:
        await produce(broker.bootstrap, "orders", records)
        want = {p: {"units_sold": r["units_sold"]} for p, r in expected_sums(records).items()}
        assert await converged(app.target, "ordersapp", "product_sum", want) == want
        # the same through the command line
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "aerogrid",
                "watch",
                "ordersapp",
                "product_sum",
                "--target",
                app.target,
                "--once",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(out.stdout.strip().splitlines()[-1]) == want
        dead = await read_topic(broker.bootstrap, "ordersapp.dlq", 2)
        assert sorted(m.key for m in dead) == [b"bad-1", b"bad-2"]
        headers = {m.key: dict(m.headers) for m in dead}
        assert headers[b"bad-2"]["aerogrid-error-field"] == b"$.quantity"
        assert headers[b"bad-1"]["aerogrid-source-topic"] == b"orders"
        assert app.metric("aerogrid_records_in_total", {"topic": "orders"}) == 502
        assert app.metric("aerogrid_decode_errors_total", {"topic": "orders"}) == 2
        assert app.metric("aerogrid_dead_lettered_total", {"topic": "orders"}) == 2
        assert app.metric("aerogrid_grid_rows", {"grid": "product_sum"}) == len(want)
        assert httpx.get(f"{app.http}/readyz").status_code == 200
        assert httpx.get(f"{app.http}/healthz").status_code == 200
        assert app.terminate() == 0


async def test_every_kind_of_bad_record_is_dead_lettered_and_counted(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    good = orders(50, seed=3)
    bad: list[tuple[bytes | None, bytes | None]] = [
        (b"null-value", None),
        (b"empty", b""),
        (b"garbage", b"\x00\xff\xfe garbage"),
        (b"array", b"[1, 2, 3]"),
        (b"missing", b'{"product": "p1"}'),
        (b"wrong-type", b'{"product": 5, "quantity": 1}'),
        (b"bool-int", b'{"product": "p1", "quantity": true}'),
        (b"raises", b'{"product": "p1", "quantity": -4}'),
        (b"\xff\xfe", b'{"product": "p1", "quantity": 1}'),  # key not UTF-8
        (None, b'{"product": "p2", "quantity": 2}'),  # no key: fine
    ]
    records = good[:25] + bad + good[25:]
    want = expected_sums([*good, (None, b'{"product": "p2", "quantity": 2}')])
    with RunningApp(path, broker.bootstrap) as app:
        await produce(broker.bootstrap, f"{unique_name}-orders", records)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        dead = await read_topic(broker.bootstrap, f"{unique_name}.dlq", 9)
        assert sorted(m.key for m in dead) == sorted(k for k, _ in bad[:-1] if k is not None)
        stages = Counter(dict(m.headers)["aerogrid-error-stage"] for m in dead)
        assert stages == {b"decode": 8, b"handler": 1}
        raised = next(m for m in dead if m.key == b"raises")
        assert b"negative quantity" in dict(raised.headers)["aerogrid-error"]
        assert raised.value == b'{"product": "p1", "quantity": -4}'  # the original bytes
        assert app.metric("aerogrid_dead_lettered_total") == 9
        assert app.metric("aerogrid_handler_errors_total") == 1
        assert app.proc is not None and app.proc.poll() is None  # still running


async def test_graceful_restart_restores_and_continues_exactly(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    first, second = orders(400, seed=5), orders(300, seed=6)
    app = RunningApp(path, broker.bootstrap)
    try:
        app.start()
        await produce(broker.bootstrap, topic, first)
        want = expected_sums(first)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        started = time.monotonic()
        assert app.terminate() == 0
        assert time.monotonic() - started < 10
        await produce(broker.bootstrap, topic, second)  # while the app is down
        app.start()
        want = expected_sums(first + second)
        assert await converged(app.target, unique_name, "product_sum", want) == want
        assert app.metric("aerogrid_restore_seconds", {"grid": "product_sum"}) > 0
    finally:
        app.stop()


async def test_sigkill_mid_stream_keeps_exact_totals(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """SIGKILL at random moments, restart, every order counted exactly once.

    Apache Kafka through transactions; the embedded broker through checkpoints.
    """
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=3)
    records = orders(20_000, seed=9, products=25)
    rng = random.Random(4)
    app = RunningApp(path, broker.bootstrap)
    try:
        app.start()
        assert app.info["guarantee"] == ("exactly-once" if broker.transactions else "checkpointed")

        async def paced_feed() -> None:
            for start in range(0, len(records), 250):
                await produce(broker.bootstrap, topic, records[start : start + 250])
                await asyncio.sleep(0.05)

        feeder = asyncio.create_task(paced_feed())
        kills_mid_stream = 0
        for _ in range(4):
            await asyncio.sleep(rng.uniform(0.3, 1.2))
            kills_mid_stream += not feeder.done()
            app.kill()
            app.start()
        assert kills_mid_stream >= 2, "the app should die while orders are still arriving"
        await feeder
        want = expected_sums(records)
        got = await converged(app.target, unique_name, "product_sum", want, timeout=90)
        assert got == want
    finally:
        app.stop()


async def test_crash_between_outputs_and_commit_counts_nothing_twice(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """The worst moment to die: changelog written, commit (or checkpoint) not yet.

    Fault injection SIGKILLs the app right there in its 3rd cycle; after a restart the
    grid must still hold every order exactly once. Without transactions (Kafka) or
    checkpoints (embedded broker) the replayed cycle would be counted twice.
    """
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=1)
    records = orders(3000, seed=17, products=5)
    crashing = RunningApp(
        path, broker.bootstrap, env={"AEROGRID_FAULT_INJECTION": "crash-after-outputs=3"}
    )
    crashing.start()
    for start in range(0, len(records), 100):
        await produce(broker.bootstrap, topic, records[start : start + 100])
        if crashing.proc is not None and crashing.proc.poll() is not None:
            break
        await asyncio.sleep(0.02)
    assert crashing.proc is not None
    assert crashing.proc.wait(30) == -9, crashing.log_tail()
    assert "fault injection" in crashing.log_tail()
    await produce(broker.bootstrap, topic, records[start + 100 :])
    with RunningApp(path, broker.bootstrap) as app:
        want = expected_sums(records)
        assert await converged(app.target, unique_name, "product_sum", want) == want


async def test_many_live_subscribers_converge_while_the_app_consumes(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)
    records = orders(3000, seed=21, products=40)
    want = expected_sums(records)

    async def follow(target: str) -> dict[str, dict[str, object]]:
        state: dict[str, dict[str, object]] = {}
        async with GridClient(target) as client:
            async for update in client.subscribe(unique_name, "product_sum"):
                state = update.apply_to(state)
                if state == want:
                    return state
        return state

    with RunningApp(path, broker.bootstrap) as app:
        followers = [asyncio.create_task(follow(app.target)) for _ in range(25)]
        await asyncio.sleep(0.5)
        await produce(broker.bootstrap, topic, records)
        states = await asyncio.wait_for(asyncio.gather(*followers), 60)
        assert all(s == want for s in states)
        assert app.metric("aerogrid_updates_sent_total", {"grid": "product_sum"}) >= 25


async def test_a_key_filtered_subscriber_gets_deltas_of_its_keys_and_heartbeats_else(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """Commits that change only other keys move it on silently, told by heartbeats."""
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic)

    def order(product: str, i: int) -> tuple[bytes, bytes]:
        return f"{product}-{i}".encode(), json.dumps({"product": product, "quantity": 1}).encode()

    updates = []
    with RunningApp(path, broker.bootstrap) as app:
        async with GridClient(app.target) as client:

            async def follow() -> None:
                async for update in client.subscribe(
                    unique_name,
                    "product_sum",
                    keys=["mine"],
                    heartbeat_interval_ms=300,
                    heartbeats=True,
                ):
                    updates.append(update)
                    if update.upserts.get("mine", {}).get("orders") == 2:
                        return

            follower = asyncio.create_task(follow())
            await produce(broker.bootstrap, topic, [order("mine", 0)])
            for batch in range(6):  # commits of other keys, more often than the heartbeat
                await produce(broker.bootstrap, topic, [order(f"other{batch}", batch)])
                await asyncio.sleep(0.15)
            await produce(broker.bootstrap, topic, [order("mine", 1)])
            await asyncio.wait_for(follower, 30)
        deltas = [u for u in updates if not u.snapshot and not u.heartbeat]
        assert deltas and all(list(u.upserts) == ["mine"] for u in deltas), deltas
        assert any(u.heartbeat for u in updates)
        assert app.metric("aerogrid_grid_rows", {"grid": "product_sum"}) == 7
    assert not app.ready_file.parent.exists()  # its temporary folder is gone with it


async def test_unknown_app_and_grid_are_not_found(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    path = write_orders_app(tmp_path, unique_name, f"{unique_name}-orders")
    with RunningApp(path, tansu.bootstrap) as app:
        async with GridClient(app.target) as client:
            for app_name, grid in [("no-such-app", "product_sum"), (unique_name, "no-such-grid")]:
                with pytest.raises(GridClientError, match="NOT_FOUND"):
                    await client.snapshot(app_name, grid, timeout=10)
            apps = await client.apps()
            assert [(a.name, a.status) for a in apps] == [(unique_name, "running")]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import aerogrid\napp = aerogrid.App('x'\n", r"broken\.py:2:\d+: SyntaxError"),
        ("import aerogrid\nfrom nowhere import thing\n", r"broken\.py:2: ModuleNotFoundError"),
        ("print('no app here')\n", r"broken\.py:1: no aerogrid\.App"),
    ],
)
def test_broken_app_file_exits_nonzero_pointing_at_the_line(
    tmp_path: Path, source: str, message: str
) -> None:
    path = tmp_path / "broken.py"
    path.write_text(source)
    done = subprocess.run(
        [sys.executable, "-m", "aerogrid", "run", str(path), "--broker", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    import re

    assert re.search(message, done.stderr), done.stderr


POLLER = """
import aerogrid

app = aerogrid.App({name!r})
status = app.Grid('status', columns=['ticks', 'source'], default={{'ticks': 0, 'source': None}})

@app.task
async def first_load():
    status['api'] = {{'ticks': status['api']['ticks'], 'source': 'loaded'}}

@app.timer(0.1)
async def poll():
    status['api'] = {{'ticks': status['api']['ticks'] + 1, 'source': 'polled'}}

@app.timer(0.1)
async def broken():
    raise RuntimeError('the upstream API is down')
"""


async def test_timers_and_tasks_push_to_grids_without_kafka_input(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "poller.py"
    path.write_text(POLLER.format(name=unique_name))
    with RunningApp(path, broker.bootstrap) as app:
        await asyncio.sleep(1.0)
        async with GridClient(app.target) as client:
            row = (await client.snapshot(unique_name, "status"))["api"]
        assert row["source"] == "polled" and row["ticks"] >= 3
        assert app.metric("aerogrid_task_errors_total", {"task": "broken"}) >= 3
        assert app.terminate() == 0
    # the ticks survive a restart: restored from the changelog, then counting on
    with RunningApp(path, broker.bootstrap) as app:
        async with GridClient(app.target) as client:
            again = (await client.snapshot(unique_name, "status"))["api"]
        assert again["ticks"] >= row["ticks"]


SENDER = """
import aerogrid

app = aerogrid.App({name!r})
source = app.topic({name!r} + '-in', key_type=str, value_type=dict)
sink = app.topic({name!r} + '-out', key_type=str, value_type=dict)
forwarded = app.Grid('forwarded', columns=['n'], default={{'n': 0}})
ticked = []

@app.stream(source)
async def forward(stream):
    async for key, value in stream.items():
        await sink.send(key, {{**value, 'via': 'stream'}})
        forwarded['all'] = {{'n': forwarded['all']['n'] + 1}}

@app.task
async def hello():
    await sink.send('task', {{'via': 'task'}})

@app.timer(0.1)
async def tick():
    if not ticked:
        ticked.append(True)
        await sink.send('timer', {{'via': 'timer'}})
"""


async def test_streams_timers_and_tasks_send_records(
    broker: Broker, unique_name: str, tmp_path: Path
) -> None:
    """What a stream, a timer and a task send is produced (with the batch of each)."""
    path = tmp_path / "sender.py"
    path.write_text(SENDER.format(name=unique_name))
    with RunningApp(path, broker.bootstrap) as app:
        await produce(broker.bootstrap, f"{unique_name}-in", [(b"a", b"{}"), (b"b", b"{}")])
        sent = await read_topic(broker.bootstrap, f"{unique_name}-out", 4)
        assert sorted((m.key, json.loads(m.value)["via"]) for m in sent) == [
            (b"a", "stream"),
            (b"b", "stream"),
            (b"task", "task"),
            (b"timer", "timer"),
        ]
        assert app.terminate() == 0


FORWARDER = """
import aerogrid

app = aerogrid.App({name!r})
source = app.topic({name!r} + '-in', key_type=str, value_type=dict)
sink = app.topic({name!r} + '-out', key_type=str, value_type=dict)

@app.stream(source)
async def forward(stream):
    async for key, value in stream.items():
        await sink.send(key, value)
"""


async def test_an_app_without_grids_runs(broker: Broker, unique_name: str, tmp_path: Path) -> None:
    """A pure forwarder (a stream, no grid) starts: restore has nothing to read."""
    path = tmp_path / "forwarder.py"
    path.write_text(FORWARDER.format(name=unique_name))
    with RunningApp(path, broker.bootstrap) as app:
        await produce(broker.bootstrap, f"{unique_name}-in", [(b"a", b'{"n": 1}')])
        sent = await read_topic(broker.bootstrap, f"{unique_name}-out", 1)
        assert [(m.key, json.loads(m.value)) for m in sent] == [(b"a", {"n": 1})]
        assert app.terminate() == 0
