"""Ingest: the example app's job, records per second from Kafka into the grid.

One Apache Kafka, one preloaded topic of orders, and contenders that each consume the
whole topic from the beginning in a process of their own, one after another, repeats
interleaved (A B C A B C) so machine drift spreads over all of them:

* aerogrid-eos / aerogrid-off: examples/ordersapp/app.py (only its app and topic names
  changed) under `aerogrid run`, exactly-once (transactions, changelog) and with
  `--exactly-once off`; timed by polling `aerogrid_records_in_total` on /metrics;
  verified by a grid snapshot through `aerogrid.client.GridClient`.
* faust: faust-streaming doing the same job as a Faust Table (benchmarks/faust_app.py)
  in a venv of its own; the agent times itself and dumps its table.
* bare-json / bare-msgspec: benchmarks/ingest_bare.py, a bare aiokafka loop summing
  into a dict: the practical limit for Python.

Every contender is checked against the sums computed at preload; one that gets them
wrong is reported as failed, never as fast. Rates are records processed between the
first observation and the N-th record, over the time between them, so start-up
(reported separately) does not count: AeroGrid's from /metrics polled every 50 ms
(so +-50 ms at each end, a few per cent at 200k records), Faust's and the bare loop's
from their own clocks (CLOCK_MONOTONIC, shared by every process). CPU % of the
contender, the broker and everything else comes from CPU seconds sampled every 50 ms
over the same window: a run that shared the machine with other jobs shows it.

    .venv/bin/python -m benchmarks.ingest [--records N] [--partitions P] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner

from benchmarks._common import REPO, write_result

# _common put tests/ on sys.path: the repository's own Kafka launcher and app runner.
from support.apps import EXAMPLE_APP, RunningApp
from support.brokers import ApacheKafka

FAUST_VERSION = "0.15.3"
CACHE = Path(os.environ.get("AEROGRID_CACHE") or Path.home() / ".cache" / "aerogrid")
FAUST_VENV = CACHE / "bench" / "faust-venv"
FAUST_APP = REPO / "benchmarks" / "faust_app.py"
PRODUCTS = 100
POLL_SECONDS = 0.05
#: A run is "quiet" when everything else on the machine used less than this CPU %.
QUIET_OTHERS = 25.0

#: What a Faust user tuning one worker for throughput would set: an in-memory table
#: store, no web server or standby replicas (one worker), a short commit interval, and
#: a batching producer for the table's changelog (Faust's default sends each
#: changelog record without linger in 16 KB batches). The stream buffer was swept on
#: this machine (200k orders, one run each, records/s): 131,072 (what Faust's docs
#: suggest for throughput) 4.7k, 16,384 3.8k, 4,096 (default) 6.6-6.9k, 1,024 7.4k,
#: 256 7.2k; without the producer settings, 4,096 gave 3.7k. The best is used.
FAUST_SETTINGS: dict[str, Any] = {
    "store": "memory://",
    "web_enabled": False,
    "table_standby_replicas": 0,
    "stream_buffer_maxsize": 1_024,
    "broker_commit_interval": 1.0,
    "broker_commit_every": 10_000,
    "producer_linger": 0.01,
    "producer_max_batch_size": 1_048_576,
    "consumer_max_fetch_size": 4_194_304,
}

CONTENDERS = ("aerogrid-eos", "aerogrid-off", "faust", "bare-json", "bare-msgspec")
LABELS = {
    "aerogrid-eos": "AeroGrid, --exactly-once on",
    "aerogrid-off": "AeroGrid, --exactly-once off",
    "faust": f"Faust {FAUST_VERSION} Table",
    "bare-json": "bare aiokafka loop, json.loads",
    "bare-msgspec": "bare aiokafka loop, msgspec",
}


@dataclass
class Run:
    """One contender's pass over the topic."""

    contender: str
    repeat: int
    ok: bool = False
    error: str | None = None
    records_per_s: float | None = None
    window_s: float | None = None
    startup_s: float | None = None
    cpu_percent: float | None = None
    broker_cpu_percent: float | None = None
    others_cpu_percent: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- preload -------------------------------------------------------------------------


def make_orders(records: int, seed: int = 7) -> tuple[list[tuple[bytes, bytes]], dict[str, int]]:
    """The orders (str keys, JSON values) and the sums a correct contender must reach."""
    rng = random.Random(seed)
    orders: list[tuple[bytes, bytes]] = []
    sums: dict[str, int] = {}
    for i in range(records):
        product = f"p{rng.randrange(PRODUCTS)}"
        quantity = rng.randint(1, 9)
        sums[product] = sums.get(product, 0) + quantity
        value = json.dumps({"product": product, "quantity": quantity}).encode()
        orders.append((f"order-{i}".encode(), value))
    return orders, sums


async def preload(
    bootstrap: str, topic: str, partitions: int, orders: list[tuple[bytes, bytes]]
) -> float:
    """Create the topic and write the orders as full 1 MB batches; returns seconds.

    Batches are built by hand (keys hashed with Kafka's default partitioner) and sent
    concurrently, so preloading takes a second or two instead of dominating the run.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=100,
        max_batch_size=1 << 20,
        max_request_size=8 << 20,
    )
    await producer.start()
    began = time.perf_counter()
    try:
        await send_batched(producer, topic, orders, list(range(partitions)))
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def send_batched(
    producer: AIOKafkaProducer,
    topic: str,
    orders: Sequence[tuple[bytes, bytes]],
    partitions: list[int],
) -> None:
    """Send `orders` in full batches, each key where Kafka's default partitioner puts it."""
    partitioner = DefaultPartitioner()
    batches = {p: producer.create_batch() for p in partitions}
    sends: list[asyncio.Future[Any]] = []
    for key, value in orders:
        p = partitioner(key, partitions, partitions)
        if batches[p].append(key=key, value=value, timestamp=None) is None:
            sends.append(await producer.send_batch(batches[p], topic, partition=p))
            batches[p] = producer.create_batch()
            batches[p].append(key=key, value=value, timestamp=None)
    for p, batch in batches.items():
        if batch.record_count():
            sends.append(await producer.send_batch(batch, topic, partition=p))
    await asyncio.gather(*sends)


async def topic_size(bootstrap: str, topic: str) -> int:
    """Records in the topic (sum of end offsets), to check the preload."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        numbers = consumer.partitions_for_topic(topic)
        while not numbers:
            await consumer._client.force_metadata_update()
            numbers = consumer.partitions_for_topic(topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in numbers])
        return sum(ends.values())
    finally:
        await consumer.stop()


# -- measuring from the outside ------------------------------------------------------


class CpuSampler(threading.Thread):
    """Samples the cumulative CPU seconds of named processes every 50 ms.

    CPU over any window (even one a child timed itself, on the same monotonic clock)
    is then interpolated from the samples: one method for every contender.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._halt = threading.Event()

    def _read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, proc in self.procs.items():
            try:
                times = proc.cpu_times()
                values[name] = float(times.user + times.system)
            except psutil.Error:
                values[name] = float("nan")
        machine = psutil.cpu_times()
        values["machine"] = float(sum(machine) - machine.idle - getattr(machine, "iowait", 0.0))
        return values

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.monotonic(), self._read()))
            self._halt.wait(POLL_SECONDS)
        self.samples.append((time.monotonic(), self._read()))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def _at(self, name: str, when: float) -> float | None:
        before = [(t, v[name]) for t, v in self.samples if t <= when]
        after = [(t, v[name]) for t, v in self.samples if t >= when]
        if not before or not after:
            return None
        (t0, v0), (t1, v1) = before[-1], after[0]
        return v0 if t1 == t0 else v0 + (v1 - v0) * (when - t0) / (t1 - t0)

    def percent(self, name: str, start: float, end: float) -> float | None:
        """CPU% of `name` between two monotonic times (100 = one core all the time)."""
        a, b = self._at(name, start), self._at(name, end)
        if a is None or b is None or end <= start or a != a or b != b:
            return None
        return round(100.0 * (b - a) / (end - start), 1)


def check_sums(found: dict[str, int], expected: dict[str, int]) -> str | None:
    """None when the sums match; otherwise what differs."""
    if found == expected:
        return None
    wrong = sorted(k for k in expected.keys() | found.keys() if found.get(k) != expected.get(k))
    sample = ", ".join(f"{k}: {found.get(k)} != {expected.get(k)}" for k in wrong[:3])
    return f"{len(wrong)} wrong sums ({sample})"


# -- contenders ----------------------------------------------------------------------


@dataclass
class Bench:
    """What every contender run shares."""

    kafka: ApacheKafka
    topic: str
    records: int
    partitions: int
    expected: dict[str, int]
    workdir: Path
    timeout: float
    preload_s: float = 0.0
    #: Environment for the AeroGrid processes (--aerogrid-src puts another tree first).
    aerogrid_env: dict[str, str] = field(default_factory=dict)


def aerogrid_app(bench: Bench, app_name: str) -> Path:
    """examples/ordersapp/app.py with only its app and topic names changed."""
    text = EXAMPLE_APP.read_text()
    for old, new in (
        ("aerogrid.App('ordersapp'", f"aerogrid.App({app_name!r}"),
        ("app.topic('orders'", f"app.topic({bench.topic!r}"),
    ):
        if text.count(old) != 1:
            raise RuntimeError(f"{EXAMPLE_APP} changed: expected {old!r} once")
        text = text.replace(old, new)
    path = bench.workdir / f"{app_name}.py"
    path.write_text(text)
    return path


async def grid_sums(target: str, app_name: str, expected: dict[str, int]) -> dict[str, int]:
    """The grid's units_sold per product, retried briefly until the last commit shows."""
    from aerogrid.client import GridClient

    sums: dict[str, int] = {}
    deadline = time.monotonic() + 15
    async with GridClient(target) as client:
        while True:
            rows = await client.snapshot(app_name, "product_sum", timeout=15)
            sums = {str(k): int(row["units_sold"]) for k, row in rows.items()}
            if sums == expected or time.monotonic() > deadline:
                return sums
            await asyncio.sleep(0.2)


def run_aerogrid(
    bench: Bench,
    run: Run,
    exactly_once: str,
    make_app: Callable[[Bench, str], Path] = aerogrid_app,
) -> None:
    """`aerogrid run` on the example app (or `make_app`'s); records_in polled every 50 ms."""
    app_name = f"bench_{run.contender.replace('-', '_')}_{run.repeat}_{uuid.uuid4().hex[:6]}"
    app_file = make_app(bench, app_name)
    spawned = time.monotonic()
    app = RunningApp(
        app_file,
        bench.kafka.bootstrap,
        extra_args=("--exactly-once", exactly_once),
        env=bench.aerogrid_env,
    ).start()
    try:
        assert app.proc is not None
        guarantee = app.info.get("guarantee")
        if (guarantee == "exactly-once") != (exactly_once == "on"):
            raise RuntimeError(f"app runs {guarantee} with --exactly-once {exactly_once}")
        sampler = CpuSampler(
            {"app": app.proc.pid, "broker": bench.kafka.pid or 0, "bench": os.getpid()}
        )
        sampler.start()
        client = httpx.Client(timeout=5)
        first: tuple[float, float] | None = None
        last: tuple[float, float] = (0.0, 0.0)
        deadline = time.monotonic() + bench.timeout
        try:
            while True:
                count = _records_in(client, app.http, app_name)
                now = time.monotonic()
                if count > 0 and first is None:
                    first = (now, count)
                last = (now, count)
                if count >= bench.records:
                    break
                if now > deadline or app.proc.poll() is not None:
                    raise RuntimeError(f"saw {count} of {bench.records} records\n{app.log_tail()}")
                time.sleep(POLL_SECONDS)
        finally:
            client.close()
            sampler.stop()
        assert first is not None
        sums = asyncio.run(grid_sums(app.target, app_name, bench.expected))
        _finish(run, bench, first, last, spawned, sums, int(last[1]), sampler, "app")
        run.extra["guarantee"] = guarantee
    finally:
        app.stop()
        shutil.rmtree(app.ready_file.parent, ignore_errors=True)  # RunningApp's temp dir


def _records_in(client: httpx.Client, http: str, app_name: str) -> float:
    total = 0.0
    for line in client.get(f"{http}/metrics").text.splitlines():
        if line.startswith("aerogrid_records_in_total{") and f'app="{app_name}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _finish(
    run: Run,
    bench: Bench,
    first: tuple[float, float],
    last: tuple[float, float],
    spawned: float,
    sums: dict[str, int],
    count: int,
    sampler: CpuSampler,
    who: str,
) -> None:
    """Rate over [first, last], CPU over the same window, and the verdict."""
    window = last[0] - first[0]
    run.window_s = round(window, 3)
    run.records_per_s = round((last[1] - first[1]) / window) if window > 0 else None
    run.startup_s = round(first[0] - spawned, 2)
    run.cpu_percent = sampler.percent(who, first[0], last[0])
    run.broker_cpu_percent = sampler.percent("broker", first[0], last[0])
    machine = sampler.percent("machine", first[0], last[0])
    own = sampler.percent("bench", first[0], last[0])
    mine, broker = run.cpu_percent, run.broker_cpu_percent
    if machine is not None and own is not None and mine is not None and broker is not None:
        # Everything else on the machine (other jobs, not this script's polling): high
        # values mean the run shared the CPUs and its rate is less trustworthy.
        run.others_cpu_percent = round(machine - own - mine - broker, 1)
    problem = check_sums(sums, bench.expected)
    if count != bench.records:
        problem = f"processed {count} records, expected {bench.records}"
    elif run.records_per_s is None:
        problem = "all records arrived between two observations: raise --records"
    run.ok = problem is None
    run.error = problem


def faust_python() -> Path:
    """The Python of a venv holding faust-streaming (created once, pinned).

    Faust gets its own venv because its dependency pins are not ours; it gets the
    same aiokafka version as ours, so every contender uses the same Kafka client.
    """
    python = FAUST_VENV / "bin" / "python"
    marker = FAUST_VENV / f".faust-streaming-{FAUST_VERSION}-aiokafka-{version('aiokafka')}"
    if marker.exists():
        return python
    base = shutil.which("python3.11") or sys.executable
    print(f"creating {FAUST_VENV} (faust-streaming {FAUST_VERSION})", flush=True)
    subprocess.run([base, "-m", "venv", "--clear", str(FAUST_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"faust-streaming=={FAUST_VERSION}",
            f"aiokafka=={version('aiokafka')}",
        ],
        check=True,
    )
    marker.touch()
    return python


def run_child(
    bench: Bench, run: Run, argv: list[str], env: dict[str, str], result: Path, cwd: Path
) -> None:
    """A contender that times itself and writes `result`; SIGKILLed once it has.

    SIGKILL because Faust can ignore SIGTERM for minutes; the bare loop exits itself.
    """
    log_path = bench.workdir / f"{run.contender}-{run.repeat}.log"
    log = log_path.open("wb")
    spawned = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    sampler = CpuSampler({"child": proc.pid, "broker": bench.kafka.pid or 0, "bench": os.getpid()})
    sampler.start()
    try:
        deadline = time.monotonic() + bench.timeout
        while not result.exists():
            if proc.poll() is not None:
                # The bare loop writes its result and exits: look once more.
                if result.exists():
                    break
                raise RuntimeError(f"exited with {proc.returncode}: {_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no result in {bench.timeout:.0f} s: {_tail(log_path)}")
            time.sleep(POLL_SECONDS)
    finally:
        sampler.stop()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        log.close()
    data = json.loads(result.read_text())
    first = (float(data["first"]), float(data.get("first_count", 1)))
    last = (float(data["last"]), float(data["count"]))
    sums = {str(k): int(v) for k, v in data["sums"].items()}
    _finish(run, bench, first, last, spawned, sums, int(data["count"]), sampler, "child")


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def run_faust(bench: Bench, run: Run) -> None:
    """benchmarks/faust_app.py as a Faust worker under a fresh app id."""
    app_id = f"bench-faust-{run.repeat}-{uuid.uuid4().hex[:6]}"
    result = bench.workdir / f"{app_id}.json"
    cwd = bench.workdir / app_id  # Faust keeps its data dir in the working directory
    cwd.mkdir()
    env = {
        "BENCH_BOOTSTRAP": bench.kafka.bootstrap,
        "BENCH_TOPIC": bench.topic,
        "BENCH_APP": app_id,
        "BENCH_RECORDS": str(bench.records),
        "BENCH_PARTITIONS": str(bench.partitions),
        "BENCH_RESULT": str(result),
        "BENCH_FAUST_SETTINGS": json.dumps(FAUST_SETTINGS),
    }
    argv = [str(faust_python()), str(FAUST_APP), "worker", "--loglevel", "warn"]
    run_child(bench, run, argv, env, result, cwd)


def run_bare(bench: Bench, run: Run, decoder: str) -> None:
    """benchmarks/ingest_bare.py in a process of its own."""
    result = bench.workdir / f"{run.contender}-{run.repeat}.json"
    argv = [
        sys.executable,
        "-m",
        "benchmarks.ingest_bare",
        bench.kafka.bootstrap,
        bench.topic,
        str(bench.records),
        str(result),
        "--decoder",
        decoder,
    ]
    run_child(bench, run, argv, {}, result, REPO)


RUNNERS: dict[str, Callable[[Bench, Run], None]] = {
    "aerogrid-eos": lambda bench, run: run_aerogrid(bench, run, "on"),
    "aerogrid-off": lambda bench, run: run_aerogrid(bench, run, "off"),
    "faust": run_faust,
    "bare-json": lambda bench, run: run_bare(bench, run, "json"),
    "bare-msgspec": lambda bench, run: run_bare(bench, run, "msgspec"),
}


# -- profiling -----------------------------------------------------------------------


def profile_aerogrid(bench: Bench, out: Path) -> str:
    """Run the exactly-once contender once under cProfile; the top of the profile."""
    app_name = f"bench_profile_{uuid.uuid4().hex[:6]}"
    app_file = aerogrid_app(bench, app_name)
    ready = bench.workdir / f"{app_name}.ready"
    log_path = bench.workdir / f"{app_name}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cProfile",
            "-o",
            str(out),
            "-m",
            "aerogrid",
            "run",
            str(app_file),
            "--broker",
            bench.kafka.bootstrap,
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--exactly-once",
            "on",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **bench.aerogrid_env},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + bench.timeout
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"profiled app did not start: {_tail(log_path)}")
            time.sleep(POLL_SECONDS)
        http = f"http://127.0.0.1:{json.loads(ready.read_text())['http_port']}"
        with httpx.Client(timeout=5) as client:
            while _records_in(client, http, app_name) < bench.records:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"profiled app did not finish: {_tail(log_path)}")
                time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # cProfile writes its file on a clean exit
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()
    buffer = io.StringIO()
    stats = pstats.Stats(str(out), stream=buffer)
    stats.sort_stats("tottime").print_stats(25)
    return buffer.getvalue()


# -- report --------------------------------------------------------------------------


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per contender: median records/s over verified repeats, and whether all passed."""
    summary: dict[str, dict[str, Any]] = {}
    for name in CONTENDERS:
        mine = [r for r in runs if r.contender == name]
        if not mine:
            continue
        good = [r for r in mine if r.ok and r.records_per_s]

        def median(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return round(statistics.median(present), 1) if present else None

        summary[name] = {
            "label": LABELS[name],
            "guarantee": next((r.extra["guarantee"] for r in mine if "guarantee" in r.extra), None),
            "ok": len(good) == len(mine),
            "errors": [r.error for r in mine if not r.ok],
            "records_per_s": median([r.records_per_s for r in good]) if good else None,
            # The same over the runs the machine was otherwise idle for (see Run).
            "records_per_s_quiet": median(
                [r.records_per_s for r in good if (r.others_cpu_percent or 0) < QUIET_OTHERS]
            ),
            "each": [r.records_per_s for r in mine],
            "each_others_cpu_percent": [r.others_cpu_percent for r in mine],
            "cpu_percent": median([r.cpu_percent for r in good]),
            "broker_cpu_percent": median([r.broker_cpu_percent for r in good]),
            "others_cpu_percent": median([r.others_cpu_percent for r in good]),
            "startup_s": median([r.startup_s for r in good]),
        }
    return summary


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """AeroGrid (both modes) against Faust and the bare loops, with the goals.

    Over all verified runs, and over the quiet ones only (when both sides have one).
    """
    out: dict[str, Any] = {}
    goals = {"faust": 3.0, "bare-json": 0.5, "bare-msgspec": None}
    for mine in ("aerogrid-eos", "aerogrid-off"):
        for other, goal in goals.items():
            a = summary.get(mine, {})
            b = summary.get(other, {})
            if not (a.get("ok") and b.get("ok") and a["records_per_s"] and b["records_per_s"]):
                continue
            value = round(a["records_per_s"] / b["records_per_s"], 2)
            quiet = None
            if a["records_per_s_quiet"] and b["records_per_s_quiet"]:
                quiet = round(a["records_per_s_quiet"] / b["records_per_s_quiet"], 2)
            out[f"{mine}/{other}"] = {
                "ratio": value,
                "ratio_quiet": quiet,
                "goal": goal,
                "met": None if goal is None else value >= goal,
            }
    return out


def markdown(summary: dict[str, dict[str, Any]], ratio: dict[str, Any]) -> str:
    lines = [
        "| contender | records/s (median) | quiet runs' median | each repeat (others CPU %) "
        "| CPU % | broker CPU % | start (s) |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for s in summary.values():
        rate = f"{s['records_per_s']:,.0f}" if s["ok"] else "FAILED"
        quiet = f"{q:,.0f}" if (q := s["records_per_s_quiet"]) and s["ok"] else "-"
        each = ", ".join(
            ("failed" if v is None else f"{v:,.0f}") + f" ({o})"
            for v, o in zip(s["each"], s["each_others_cpu_percent"], strict=True)
        )
        label = f"{s['label']} ({s['guarantee']})" if s["guarantee"] else s["label"]
        lines.append(
            f"| {label} | {rate} | {quiet} | {each} | {s['cpu_percent']} | "
            f"{s['broker_cpu_percent']} | {s['startup_s']} |"
        )
    lines += ["", "| ratio | value | quiet runs | goal | met |", "|---|---:|---:|---:|---|"]
    for name, r in ratio.items():
        goal = "-" if r["goal"] is None else f">= {r['goal']}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        quiet = "-" if r["ratio_quiet"] is None else r["ratio_quiet"]
        lines.append(f"| {name} | {r['ratio']} | {quiet} | {goal} | {met} |")
    for name, s in summary.items():
        for error in s["errors"]:
            lines.append(f"\n{name} failed: {error}")
    return "\n".join(lines)


def _git_state() -> dict[str, Any]:
    """Which runtime was measured (read-only git queries)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "runtime_dirty": bool(git("status", "--porcelain", "--", "runtime")),
        "runtime_diff_stat": git("diff", "--stat", "HEAD", "--", "runtime") or None,
    }


def prepare(
    kafka: ApacheKafka,
    records: int,
    partitions: int,
    workdir: Path,
    aerogrid_env: dict[str, str],
) -> Bench:
    """A fresh topic preloaded with `records` orders, checked, and its expected sums."""
    orders, expected = make_orders(records)
    topic = f"bench-orders-{uuid.uuid4().hex[:6]}"
    return preloaded(kafka, topic, orders, expected, partitions, workdir, aerogrid_env)


def preloaded(
    kafka: ApacheKafka,
    topic: str,
    values: list[tuple[bytes, bytes]],
    expected: dict[str, int],
    partitions: int,
    workdir: Path,
    aerogrid_env: dict[str, str],
) -> Bench:
    """`values` produced to `topic`, their count checked on the broker: the run's Bench."""
    preload_s = asyncio.run(preload(kafka.bootstrap, topic, partitions, values))
    size = asyncio.run(topic_size(kafka.bootstrap, topic))
    if size != len(values):
        raise SystemExit(f"preload of {topic} wrote {size} records, expected {len(values)}")
    return Bench(
        kafka=kafka,
        topic=topic,
        records=len(values),
        partitions=partitions,
        expected=expected,
        workdir=workdir,
        timeout=60 + len(values) / 1000,
        preload_s=preload_s,
        aerogrid_env=aerogrid_env,
    )


def machine_busy(seconds: float = 0.5) -> float:
    """CPU% of the whole machine over `seconds` (200 = both cores of a 2-core box)."""

    def busy() -> float:
        times = psutil.cpu_times()
        return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))

    before = busy()
    time.sleep(seconds)
    return 100.0 * (busy() - before) / seconds


def wait_for_quiet(limit: float, threshold: float = 40.0) -> float:
    """Wait up to `limit` seconds for the machine to be idle; its last busy % is returned.

    The machine may be shared (other jobs, tests): a run that starts while something
    else is busy measures that job too. The "others CPU %" of each run says how well
    this worked.
    """
    deadline = time.monotonic() + limit
    while True:
        busy = machine_busy()
        if busy < threshold or time.monotonic() > deadline:
            return round(busy, 1)


def execute(bench: Bench, run: Run, quiet_wait: float = 0.0) -> None:
    """Run one contender; any exception makes the run a failure, never a crash."""
    if quiet_wait > 0:
        run.extra["machine_busy_before"] = wait_for_quiet(quiet_wait)
    try:
        RUNNERS[run.contender](bench, run)
    except Exception as exc:
        run.ok, run.error = False, f"{type(exc).__name__}: {exc}"


def describe(run: Run) -> str:
    status = f"{run.records_per_s or 0:,.0f} records/s" if run.ok else f"FAILED {run.error}"
    return (
        f"{status}  (cpu {run.cpu_percent}%, broker {run.broker_cpu_percent}%, "
        f"others {run.others_cpu_percent}%, start {run.startup_s} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="orders to preload")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of the topic")
    parser.add_argument("--repeat", type=int, default=3, help="passes of every contender")
    parser.add_argument(
        "--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS), help="contenders"
    )
    parser.add_argument(
        "--profile", action="store_true", help="then profile the exactly-once app (cProfile)"
    )
    parser.add_argument(
        "--warmup", type=int, default=50_000, help="orders of the unrecorded warm-up pass (0: none)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="seconds to wait before each run for the machine to go idle (0: none)",
    )
    parser.add_argument(
        "--aerogrid-src",
        type=Path,
        help="measure the aerogrid package in this directory instead (e.g. another checkout's "
        "runtime/src, exported with `git archive`)",
    )
    parser.add_argument("--name", default="ingest", help="result file benchmarks/results/NAME")
    args = parser.parse_args()

    if "faust" in args.only:
        faust_python()  # before the broker starts: a first run installs it
    workdir = Path(tempfile.mkdtemp(prefix="aerogrid-bench-ingest-"))
    aerogrid_env: dict[str, str] = {}
    if args.aerogrid_src:
        src = str(args.aerogrid_src.resolve())
        aerogrid_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (src, os.environ.get("PYTHONPATH")) if p
        )
    runs: list[Run] = []
    profile_text = ""
    with ApacheKafka(heap="1g") as kafka:
        if args.warmup:
            # A fresh broker creates its transaction and offsets topics and compiles
            # its hot paths on first use: one unrecorded pass of every contender over
            # a small topic keeps that cost out of whichever contender runs first.
            warm = prepare(kafka, args.warmup, args.partitions, workdir, aerogrid_env)
            for name in args.only:
                run = Run(name, 0)
                execute(warm, run)
                print(f"  [warm-up] {name:<13} {describe(run)}", flush=True)
        bench = prepare(kafka, args.records, args.partitions, workdir, aerogrid_env)
        print(
            f"Kafka {kafka.bootstrap}: {args.records:,} orders in {args.partitions} "
            f"partitions preloaded in {bench.preload_s:.1f} s",
            flush=True,
        )
        for repeat in range(1, args.repeat + 1):
            for name in args.only:
                run = Run(name, repeat)
                execute(bench, run, args.quiet_wait)
                runs.append(run)
                print(f"  [{repeat}/{args.repeat}] {name:<13} {describe(run)}", flush=True)
        if args.profile:
            out = Path(tempfile.gettempdir()) / f"{args.name}-aerogrid.prof"
            profile_text = profile_aerogrid(bench, out)
            print(profile_text)
            print(f"profile: {out} (python -m pstats {out})")

    summary = summarize(runs)
    ratio = ratios(summary)
    path = write_result(
        args.name,
        {
            "benchmark": "ingest",
            "records": args.records,
            "partitions": args.partitions,
            "repeat": args.repeat,
            "products": PRODUCTS,
            "preload_seconds": round(bench.preload_s, 2),
            "warmup_records": args.warmup,
            "kafka": kafka.version,
            "faust_version": FAUST_VERSION,
            "faust_settings": FAUST_SETTINGS,
            "aiokafka": version("aiokafka"),
            "git": _git_state(),
            "aerogrid_src": str(args.aerogrid_src) if args.aerogrid_src else None,
            "method": (
                "Each contender consumes the whole preloaded topic from the beginning in "
                "its own process, one after another, repeats interleaved. records/s = "
                "records processed between the first and the last observation / elapsed "
                "(AeroGrid: aerogrid_records_in_total polled every 50 ms; Faust and the "
                "bare loop time themselves). CPU % from the processes' CPU seconds "
                "sampled every 50 ms over the same window. Every run is checked against "
                "the preload's sums (AeroGrid: a grid snapshot via GridClient)."
            ),
            "summary": summary,
            "ratios": ratio,
            "runs": [asdict(r) for r in runs],
            "profile_top": profile_text or None,
        },
    )
    print()
    print(markdown(summary, ratio))
    print(f"\nwritten {path.relative_to(REPO)}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
