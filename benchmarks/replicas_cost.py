"""The cost of replication: what a standby and a serve-only process cost next to the active.

Two measures, on Apache Kafka (exactly-once), with the orders app (`ReplicaSet`):

1. **Steady state.** An active, a standby and a serve-only process of one app; orders
   at `--rates` (1,000 and 10,000/s) over `--products` products, no subscribers. CPU
   (user + system seconds over the window) and RSS of each process, and each relative
   to the active's. A standby's work follows the changelog, so it scales with the rows
   changed per cycle, not with the orders: the figures say so for this grid.
2. **Ingest with replicas running.** `benchmarks.ingest`'s measure (records/s of the
   active from `aerogrid_records_in_total`, polled every 50 ms, against its bare aiokafka
   json loop on the same orders), with 1 process and with 3 (the active and two standbys
   following its changelogs on the same two cores). The standbys must be up before the
   orders can be read, so the orders are written in one transaction after the processes
   are ready and the active reads them (read_committed) once it commits: the same start
   for 1 and 3 processes. Repeats interleaved; every run checked against the sums.

    .venv/bin/python -m benchmarks.replicas_cost                      # about 6 minutes
    .venv/bin/python -m benchmarks.replicas_cost --skip-ingest --rates 10000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from benchmarks._common import REPO, write_result
from benchmarks._procstats import RssSampler, Window, mib, source_state
from benchmarks._replicas import Feed, FeedConfig, ReplicaSet, grid_rows, result_name, wait_exact
from benchmarks.ingest import (
    POLL_SECONDS,
    Bench,
    CpuSampler,
    Run,
    _records_in,
    describe,
    execute,
    make_orders,
    prepare,
    send_batched,
)

ROLES = ("active", "standby", "serve-only")


# -- 1. steady state -------------------------------------------------------------------


def steady(broker: Any, folder: Path, rate: int, products: int, duration: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    app = f"cost{uuid.uuid4().hex[:6]}"
    warmup = 5.0
    print(f"\n== steady {rate:,} orders/s over {products:,} products", flush=True)
    with ReplicaSet(folder, broker.bootstrap, app) as replicas:
        members = [replicas.add(), replicas.add(), replicas.add(serve_only=True)]
        roles = [replicas.role(m) for m in members]
        if roles != list(ROLES):
            raise RuntimeError(f"roles {roles}, expected {ROLES}")
        feed = Feed(
            ctx, FeedConfig(broker.bootstrap, replicas.topic, rate, warmup + duration, products)
        ).start()
        pids = {role: [m.proc.pid] for role, m in zip(ROLES, members, strict=True) if m.proc}
        idle = RssSampler(pids)
        idle.sample()
        feed.go()
        time.sleep(warmup)
        sampler = RssSampler(pids)
        sampler.start()
        window = Window({**pids, "broker": [broker.pid] if broker.pid else []})
        window.start()
        time.sleep(duration)
        window.stop()
        sampler.stop()
        lags = {m.replica()["role"]: m.replica()["grids"] for m in members}
        produced = feed.result()
        exact = {
            role: wait_exact(m.target, app, produced["sums"], 60)
            for role, m in zip(ROLES, members, strict=True)
        }
        changelog_rows = members[0].metric("aerogrid_batch_seconds_count", {"app": app})
    cpu = window.percent()
    result = {
        "rate": rate,
        "products": products,
        "achieved_rate": produced["rate"],
        "cpu_percent": cpu,
        "cpu_relative_to_active": {r: round(cpu[r] / max(cpu["active"], 1e-9), 2) for r in ROLES},
        "rss_mib_peak": {r: mib(v) for r, v in sampler.peak.items()},
        "rss_mib_before_load": {r: mib(v) for r, v in idle.last.items()},
        "rss_relative_to_active": {
            r: round(sampler.peak[r] / max(sampler.peak["active"], 1), 2) for r in ROLES
        },
        "lag_at_end_of_window": lags,
        "active_cycles_total": changelog_rows,
        "exact": exact,
        "machine_cpu_percent_of_all_cores": window.machine(),
        "window_s": round(window.wall, 1),
    }
    print(f"   {result}", flush=True)
    return result


# -- 2. ingest with 1 or 3 processes ---------------------------------------------------


async def produce_in_one_transaction(
    bootstrap: str, topic: str, orders: list[tuple[bytes, bytes]]
) -> float:
    """Write `orders` in one transaction; the monotonic time of its commit."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        transactional_id=f"bench-load-{uuid.uuid4().hex[:8]}",
        acks="all",
        linger_ms=100,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    try:
        every = sorted(await producer.partitions_for(topic))
        await producer.begin_transaction()
        await send_batched(producer, topic, orders, every)
        await producer.commit_transaction()
        return time.monotonic()
    finally:
        await producer.stop()


def run_replicas_ingest(bench: Bench, run: Run, processes: int) -> None:
    """N processes of a fresh app on an empty topic, then the orders in one transaction."""
    app = f"ing{processes}_{run.repeat}_{uuid.uuid4().hex[:6]}"
    orders, expected = make_orders(bench.records)
    spawned = time.monotonic()
    with ReplicaSet(bench.workdir, bench.kafka.bootstrap, app, partitions=bench.partitions) as rs:
        members = [rs.add() for _ in range(processes)]
        active = members[0]
        assert active.proc is not None
        pids = {f"p{i}": m.proc.pid for i, m in enumerate(members) if m.proc}
        sampler = CpuSampler({**pids, "broker": bench.kafka.pid or 0, "bench": os.getpid()})
        sampler.start()
        committed = asyncio.run(produce_in_one_transaction(bench.kafka.bootstrap, rs.topic, orders))
        client = httpx.Client(timeout=5)
        first: tuple[float, float] | None = None
        last = (0.0, 0.0)
        deadline = time.monotonic() + bench.timeout
        try:
            while True:
                count = _records_in(client, active.http, app)
                now = time.monotonic()
                if count > 0 and first is None:
                    first = (now, count)
                last = (now, count)
                if count >= bench.records or now > deadline:
                    break
                time.sleep(POLL_SECONDS)
        finally:
            client.close()
            sampler.stop()
        if first is None or last[1] != bench.records:
            raise RuntimeError(f"saw {last[1]} of {bench.records} records")
        window = last[0] - first[0]
        run.records_per_s = round((last[1] - first[1]) / window) if window > 0 else None
        run.window_s = round(window, 3)
        run.startup_s = round(committed - spawned, 2)
        run.cpu_percent = sampler.percent("p0", first[0], last[0])
        run.broker_cpu_percent = sampler.percent("broker", first[0], last[0])
        run.extra["standbys_cpu_percent"] = [
            sampler.percent(f"p{i}", first[0], last[0]) for i in range(1, processes)
        ]
        run.extra["first_record_after_commit_s"] = round(first[0] - committed, 3)
        ours = [sampler.percent(name, first[0], last[0]) for name in (*pids, "broker", "bench")]
        machine = sampler.percent("machine", first[0], last[0])
        if machine is not None and None not in ours:
            run.others_cpu_percent = round(machine - sum(v or 0.0 for v in ours), 1)
        problems = []
        for i, member in enumerate(members):
            sums = _units(asyncio.run(grid_rows(member.target, app)))
            deadline = time.monotonic() + 20
            while sums != expected and time.monotonic() < deadline:
                time.sleep(0.2)
                sums = _units(asyncio.run(grid_rows(member.target, app)))
            if sums != expected:
                problems.append(f"process {i}: wrong sums")
        run.ok = not problems and run.records_per_s is not None
        run.error = "; ".join(problems) or None


def _per_cpu_second(runs: list[Run]) -> float | None:
    """Median records per CPU second of the consuming process over the verified runs."""
    values = [
        r.records_per_s / (r.cpu_percent / 100)
        for r in runs
        if r.ok and r.records_per_s and r.cpu_percent
    ]
    return round(statistics.median(values)) if values else None


def _units(rows: dict[str, tuple[int, int]]) -> dict[str, int]:
    return {k: v[0] for k, v in rows.items()}


def ingest(broker: Any, folder: Path, records: int, repeat: int) -> dict[str, Any]:
    bench = prepare(broker, records, 3, folder, {})
    contenders: dict[str, Callable[[Run], None]] = {
        "bare-json": lambda run: execute(bench, run),
        "aerogrid-1-process": lambda run: _guarded(run, lambda: run_replicas_ingest(bench, run, 1)),
        "aerogrid-3-processes": lambda run: _guarded(
            run, lambda: run_replicas_ingest(bench, run, 3)
        ),
    }
    runs: list[Run] = []
    for index in range(repeat + 1):  # the first pass warms the broker up, unrecorded
        for name, runner in contenders.items():
            run = Run(name, index)
            runner(run)
            print(f"  [{index or 'warm-up'}] {name:<21} {describe(run)}", flush=True)
            if index:
                runs.append(run)
    summary: dict[str, Any] = {}
    for name in contenders:
        good = [r.records_per_s for r in runs if r.contender == name and r.ok and r.records_per_s]
        mine = [r for r in runs if r.contender == name]
        summary[name] = {
            "records_per_s_median": statistics.median(good) if good else None,
            "each": [r.records_per_s for r in mine],
            "ok": len(good) == len(mine),
            "errors": [r.error for r in mine if r.error],
            "cpu_percent_median": statistics.median([r.cpu_percent or 0 for r in mine]),
            # Records per CPU second of the consuming process: what other jobs on the
            # shared cores change least (they take its CPU, not its cost per record).
            "records_per_cpu_second_median": _per_cpu_second(mine),
            "others_cpu_percent": [r.others_cpu_percent for r in mine],
            "standbys_cpu_percent": [r.extra.get("standbys_cpu_percent") for r in mine],
        }
    bare = summary["bare-json"]["records_per_s_median"]
    bare_cpu = summary["bare-json"]["records_per_cpu_second_median"]
    for name in ("aerogrid-1-process", "aerogrid-3-processes"):
        mine = summary[name]["records_per_s_median"]
        summary[name]["vs_bare_json"] = round(mine / bare, 2) if mine and bare else None
        per_cpu = summary[name]["records_per_cpu_second_median"]
        summary[name]["per_cpu_second_vs_bare_json"] = (
            round(per_cpu / bare_cpu, 2) if per_cpu and bare_cpu else None
        )
    return {
        "records": records,
        "repeat": repeat,
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }


def _guarded(run: Run, body: Callable[[], None]) -> None:
    try:
        body()
    except Exception as exc:
        run.ok, run.error = False, f"{type(exc).__name__}: {exc}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="1000,10000", help="steady orders/s [1000,10000]")
    parser.add_argument("--products", type=int, default=1000, help="distinct products [1000]")
    parser.add_argument("--duration", type=float, default=20.0, help="steady window seconds")
    parser.add_argument("--records", type=int, default=200_000, help="ingest orders")
    parser.add_argument("--repeat", type=int, default=3, help="ingest repeats")
    parser.add_argument("--skip-steady", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--out", default="cost", help="results/replicas/NAME.json")
    args = parser.parse_args(argv)
    from support.brokers import ApacheKafka

    folder = Path(tempfile.mkdtemp(prefix="aerogrid-bench-cost-"))
    result: dict[str, Any] = {}
    try:
        with ApacheKafka(heap="1g") as broker:
            if not args.skip_steady:
                result["steady"] = []
                for rate in (int(r) for r in args.rates.split(",")):
                    try:
                        result["steady"].append(
                            steady(broker, folder, rate, args.products, args.duration)
                        )
                    except Exception as exc:
                        traceback.print_exc()
                        result["steady"].append({"rate": rate, "error": repr(exc)})
            if not args.skip_ingest:
                result["ingest"] = ingest(broker, folder, args.records, args.repeat)
                print(f"   {result['ingest']['summary']}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    path = write_result(
        result_name(args.out),
        {
            "benchmark": "replicas_cost",
            "source": source_state(),
            "broker": "Apache Kafka, exactly-once",
            "command": " ".join(["python -m benchmarks.replicas_cost", *(argv or sys.argv[1:])]),
            **result,
        },
    )
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
