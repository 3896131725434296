"""State: memory per grid row at 1,000,000 rows, and the time to restore them.

The product issue asks for both numbers. How they are measured:

* Memory, in fresh processes (one per measurement, so nothing else is resident): rows
  of a realistic shape (price float, qty int, venue str, key `pos-0000001`) go through
  the real restore path (changelog.encode_row → decode_row → Grid.load), so every cell
  is its own object as after a restore. Bytes per row = tracemalloc's live-bytes delta
  (exact Python allocations) and the RSS delta (what the OS sees), for the Grid and for
  the obvious baseline, a `dict[str, dict]` decoded from the same JSON. The same
  process then times a subscriber's first snapshot of that grid (the hub encodes it).
* Restore: a 1,000,000-row changelog in the runtime's own format is written to Apache
  Kafka (parallel aiokafka producers), then `aerogrid run` of an app owning that grid
  is started and timed from process start to `/readyz` 200; `aerogrid_restore_seconds`
  comes from its /metrics. An app with an empty changelog gives the start-up floor.
  Then the restore is taken apart in-process: reading the topic with aiokafka alone,
  decoding alone, and the engine's `_restore` under cProfile.

    .venv/bin/python -m benchmarks.state                 # 1,000,000 rows
    .venv/bin/python -m benchmarks.state --rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import multiprocessing as mp
import os
import pstats
import random
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

from benchmarks._common import REPO, write_result
from benchmarks._procstats import mib, rss_bytes, source_state

POSITIONS_APP = REPO / "benchmarks" / "apps" / "positions.py"
GRID = "positions"
COLUMNS = ("price", "qty", "venue")
VENUES = ("XNAS", "XNYS", "BATS", "ARCX", "XLON", "XPAR", "XETR", "XAMS")


def row_source(count: int, seed: int = 3) -> Iterator[tuple[str, tuple[float, int, str]]]:
    """`count` distinct rows: key, (price, qty, venue)."""
    rng = random.Random(seed)
    for i in range(count):
        yield (
            f"pos-{i:07d}",
            (round(rng.uniform(1, 500), 4), rng.randrange(1, 1_000_000), rng.choice(VENUES)),
        )


# -- memory (each measurement in its own process) ---------------------------------------


def _measure(kind: str, rows: int, traced: bool) -> dict[str, Any]:
    from aerogrid.engine import changelog
    from aerogrid.grids import Grid

    grid = Grid("bench", GRID, list(COLUMNS))
    baseline: dict[str, dict[str, Any]] = {}
    decode = changelog._decoder.decode
    encoded = [
        (changelog.encode_key(key), changelog.encode_row(grid, row))
        for key, row in row_source(rows)
    ]
    gc.collect()
    if traced:
        tracemalloc.start()
    before_traced = tracemalloc.get_traced_memory()[0] if traced else 0
    before_rss = rss_bytes(os.getpid())
    started = time.perf_counter()
    if kind == "grid":
        for key_bytes, value in encoded:
            grid.load(changelog.decode_key(key_bytes), changelog.decode_row(grid, value))
    else:
        for key_bytes, value in encoded:
            baseline[decode(key_bytes)] = decode(value or b"null")
    build_seconds = time.perf_counter() - started
    gc.collect()
    live = (tracemalloc.get_traced_memory()[0] - before_traced) if traced else 0
    rss = rss_bytes(os.getpid()) - before_rss
    result: dict[str, Any] = {
        "kind": kind,
        "rows": rows,
        ("build_seconds_under_tracemalloc" if traced else "build_seconds"): round(build_seconds, 2),
    }
    if traced:
        result["traced_bytes_per_row"] = round(live / rows, 1)
        tracemalloc.stop()
    else:
        result["rss_bytes_per_row"] = round(rss / rows, 1)
        result["process_rss_mib"] = mib(rss_bytes(os.getpid()))
    if kind == "grid" and not traced:
        result["snapshot"] = _snapshot_cost(grid)
    return result


def _snapshot_cost(grid: Any) -> dict[str, Any]:
    """What one subscriber's first snapshot of this grid costs the server (hub + encoding)."""
    from aerogrid.server.hub import SNAPSHOT_CHUNK_ROWS, GridChannel

    channel = GridChannel("bench", grid, epoch="e")
    grid.ready = True
    before = rss_bytes(os.getpid())
    started = time.perf_counter()
    chunks = channel.shared_snapshot(SNAPSHOT_CHUNK_ROWS)
    seconds = time.perf_counter() - started
    peak = rss_bytes(os.getpid()) - before
    grid["one-more"] = next(iter(grid.values()))  # a change, so the next one is rebuilt
    channel.publish(grid.drain_changes())
    started = time.perf_counter()
    channel.shared_snapshot(SNAPSHOT_CHUNK_ROWS)
    again = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "next_subscriber_after_a_change_seconds": round(again, 3),
        "chunks": len(chunks),
        "bytes": sum(len(c) for c in chunks),
        "rss_growth_mib": mib(peak),
        "note": (
            "the first subscriber builds the grid's wire image (the server yields to other"
            " subscribers every 20,000 rows);"
            " later ones join encoded rows"
        ),
    }


def _memory_child(kind: str, rows: int, traced: bool, conn: Connection) -> None:
    conn.send(_measure(kind, rows, traced))


def measure_memory(rows: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {}
    for kind in ("grid", "dict"):
        merged: dict[str, Any] = {}
        for traced in (False, True):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_memory_child, args=(kind, rows, traced, child))
            proc.start()
            if not parent.poll(900):
                proc.kill()
                raise TimeoutError(f"memory measurement {kind} did not finish")
            merged.update(parent.recv())
            proc.join(30)
        out[kind] = merged
        print(f"   {kind}: {merged}", flush=True)
    grid, base = out["grid"], out["dict"]
    out["dict_over_grid_traced"] = round(
        base["traced_bytes_per_row"] / grid["traced_bytes_per_row"], 2
    )
    out["dict_over_grid_rss"] = round(base["rss_bytes_per_row"] / grid["rss_bytes_per_row"], 2)
    return out


# -- restore ---------------------------------------------------------------------------


async def _create_changelog(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        await admin.close()


async def _write_slice(bootstrap: str, topic: str, rows: int, part: int, parts: int) -> int:
    from aiokafka import AIOKafkaProducer

    from aerogrid.engine import changelog
    from aerogrid.grids import Grid

    grid = Grid("bench", GRID, list(COLUMNS))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks=1, max_batch_size=1024 * 1024, linger_ms=5
    )
    await producer.start()
    try:
        futures = []
        batch = producer.create_batch()
        written = 0
        for i, (key, row) in enumerate(row_source(rows)):
            if i % parts != part:
                continue
            k, v = changelog.encode_key(key), changelog.encode_row(grid, row)
            if batch.append(key=k, value=v, timestamp=None) is None:
                batch.close()
                futures.append(await producer.send_batch(batch, topic, partition=0))
                batch = producer.create_batch()
                batch.append(key=k, value=v, timestamp=None)
            written += 1
        batch.close()
        futures.append(await producer.send_batch(batch, topic, partition=0))
        for future in futures:
            await future
        return written
    finally:
        await producer.stop()


def _writer_child(bootstrap: str, topic: str, rows: int, part: int, parts: int) -> None:
    asyncio.run(_write_slice(bootstrap, topic, rows, part, parts))


def write_changelog(bootstrap: str, topic: str, rows: int, writers: int) -> dict[str, Any]:
    """The changelog of `rows` rows, written by `writers` processes in parallel."""
    asyncio.run(_create_changelog(bootstrap, topic))
    ctx = mp.get_context("spawn")
    started = time.monotonic()
    procs = [
        ctx.Process(target=_writer_child, args=(bootstrap, topic, rows, i, writers))
        for i in range(writers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(900)
        if proc.exitcode != 0:
            raise RuntimeError(f"changelog writer failed ({proc.exitcode})")
    seconds = time.monotonic() - started
    return {"rows": rows, "seconds": round(seconds, 1), "rows_per_s": round(rows / seconds)}


def timed_start(bootstrap: str, app_name: str, rows: int) -> dict[str, Any]:
    """Start `aerogrid run` of the positions app; time process start → /readyz 200."""
    import httpx

    from support.apps import RunningApp
    from support.brokers import free_port

    grpc_port, http_port = free_port(), free_port()
    env = {"BENCH_APP": app_name, "BENCH_TOPIC": f"{app_name}.trades"}
    app = RunningApp(
        POSITIONS_APP,
        bootstrap,
        env=env,
        extra_args=("--port", str(grpc_port), "--http-port", str(http_port)),
    )
    ready_at: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=1) as client:
            while not stop.is_set():
                try:
                    if client.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200:
                        ready_at.append(time.monotonic())
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    started = time.monotonic()
    poller.start()
    try:
        app.start(timeout=900)
        poller.join(60)
        assert app.proc is not None
        labels = {"app": app_name, "grid": GRID}
        result = {
            "rows_expected": rows,
            "rows_restored": int(app.metric("aerogrid_grid_rows", labels)),
            "process_start_to_readyz_s": round(ready_at[0] - started, 2) if ready_at else None,
            "restore_seconds_metric": round(app.metric("aerogrid_restore_seconds", labels), 2),
            "rss_mib_ready": mib(rss_bytes(app.proc.pid)),
        }
    finally:
        stop.set()
        app.stop()
    return result


async def _read_only(bootstrap: str, topic: str, rows: int) -> dict[str, Any]:
    """aiokafka alone: read the changelog as the engine does, decode nothing."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from aerogrid.engine.follower import READER_OPTIONS

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **READER_OPTIONS)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        started = time.perf_counter()
        seen = 0
        raw: list[tuple[bytes | None, bytes | None]] = []
        while seen < rows:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for messages in batch.values():
                seen += len(messages)
                raw.extend((m.key, m.value) for m in messages)
        read_seconds = time.perf_counter() - started
    finally:
        await consumer.stop()
    from aerogrid.engine import changelog
    from aerogrid.grids import Grid

    grid = Grid("bench", GRID, list(COLUMNS))
    started = time.perf_counter()
    for key, value in raw:
        grid.load(changelog.decode_key(key), changelog.decode_row(grid, value))
    decode_seconds = time.perf_counter() - started
    return {
        "aiokafka_read_seconds": round(read_seconds, 2),
        "aiokafka_read_rows_per_s": round(seen / read_seconds),
        "decode_and_load_seconds": round(decode_seconds, 2),
        "decode_and_load_rows_per_s": round(seen / decode_seconds),
    }


async def _engine_restore(bootstrap: str, app_name: str) -> float:
    from aerogrid.engine.follower import ChangelogFollower
    from aerogrid.runner.loader import load_app
    from aerogrid.settings import BrokerSettings

    os.environ["BENCH_APP"] = app_name
    os.environ["BENCH_TOPIC"] = f"{app_name}.trades"
    app = load_app(POSITIONS_APP)
    follower = ChangelogFollower(
        app,
        BrokerSettings.parse(bootstrap),
        checkpointed=False,
        publish=lambda grid, changes, seq: None,
        state_lock=asyncio.Lock(),
    )
    started = time.perf_counter()
    try:
        await follower.restore()
    finally:
        await follower.close()
    return time.perf_counter() - started


def profile_restore(bootstrap: str, app_name: str, top: int = 18) -> dict[str, Any]:
    """The engine's own restore (`ChangelogFollower.restore`) in this process, under cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    seconds = asyncio.run(_engine_restore(bootstrap, app_name))
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    rows = []
    for (file, line, func), (_, calls, tottime, cumtime, _) in sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: item[1][2],
        reverse=True,
    )[:top]:
        where = f"{file.split('site-packages/')[-1].split('src/')[-1]}:{line}({func})"
        rows.append(
            {
                "function": where,
                "calls": calls,
                "self_s": round(tottime, 2),
                "self_pct": round(100 * tottime / total, 1),
                "cum_s": round(cumtime, 2),
            }
        )
    return {"seconds_under_profile": round(seconds, 2), "top_self_time": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--writers", type=int, default=2, help="changelog writer processes")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-restore", action="store_true")
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile pass")
    parser.add_argument("--bootstrap", help="use this running Apache Kafka")
    parser.add_argument("--out", default="state", help="results/NAME.json [state]")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "state",
        "source": source_state(),
        "command": " ".join(["python -m benchmarks.state", *(argv or sys.argv[1:])]),
        "rows": args.rows,
        "row_shape": "key 'pos-0000001'; price float, qty int, venue str (4 chars)",
    }
    if not args.skip_memory:
        print(f"== memory per row at {args.rows} rows", flush=True)
        result["memory"] = measure_memory(args.rows)
    if not args.skip_restore:
        from support.brokers import ApacheKafka

        broker: Any = None
        bootstrap = args.bootstrap
        if not bootstrap:
            broker = ApacheKafka(heap="1g").start()
            bootstrap = broker.bootstrap
        try:
            app_name = f"state{os.getpid()}"
            topic = f"{app_name}.{GRID}.changelog"
            print(f"== restore of {args.rows} rows on {bootstrap}", flush=True)
            restore: dict[str, Any] = {"broker": "Apache Kafka"}
            restore["write"] = write_changelog(bootstrap, topic, args.rows, args.writers)
            print(f"   changelog written: {restore['write']}", flush=True)
            restore["empty_start"] = timed_start(bootstrap, f"{app_name}-empty", 0)
            print(f"   empty app: {restore['empty_start']}", flush=True)
            restore["start"] = timed_start(bootstrap, app_name, args.rows)
            start = restore["start"]
            start["restore_rows_per_s"] = round(
                args.rows / max(start["restore_seconds_metric"], 1e-9)
            )
            print(f"   {args.rows}-row app: {start}", flush=True)
            restore["parts"] = asyncio.run(_read_only(bootstrap, topic, args.rows))
            print(f"   taken apart: {restore['parts']}", flush=True)
            if not args.no_profile:
                restore["profile"] = profile_restore(bootstrap, app_name)
                for row in restore["profile"]["top_self_time"][:12]:
                    print(f"   {row['self_pct']:5.1f}% {row['self_s']:6.2f}s {row['function']}")
            result["restore"] = restore
        finally:
            if broker is not None:
                broker.stop()
    path = write_result(args.out, result)
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
