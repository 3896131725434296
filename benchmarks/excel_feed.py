"""Excel feed: from a Kafka produce to the add-in's =AEROGRID.GRID result, p50/p99.

The product issue asks: from a Kafka produce to the function's result in the harness,
p50 and p99 at 1,000 row updates per second on a 10,000-row grid with 250 ms
conflation; bytes per result; client CPU. Goal: p99 under 400 ms.

What runs (all real processes, all on 127.0.0.1):

* the server: `python -m aerogrid run benchmarks/apps/ticker.py` (a grid `quotes` of
  price + sent_at per key) on Apache Kafka (exactly-once) or the embedded broker;
* a producer process (aiokafka): preloads 10,000 rows keyed r00000..r09999, then sends
  `--rate` updates/s to uniformly random rows, paced evenly (50 every 50 ms at 1,000/s);
  every record carries `sent_at = time.time()`, which the app stores in the row;
* the add-in: `node excel/test-live/bench_feed.mjs` loads the BUILT add-in (the
  single-file bundle `excel/dist/addin/functions.js`, the file Excel loads) and calls
  `FUNCTIONS.GRID(app, "quotes", "", "interval=N", invocation)` over its own connect-web
  transport, as Excel would, with a stand-in invocation. On every result (a 10,001-row
  matrix) each row whose sent_at changed since the previous result is a row update the
  cell now shows; its latency is the result's time minus sent_at (one machine, one wall
  clock);
* side by side on the same feed at the same time, a native Python subscriber
  (`aerogrid.client.GridClient.subscribe`, gRPC) records receive time − sent_at of
  every row it receives: the raw stream, no conflation, the floor the add-in sits on.
  A second native subscription asks the server to conflate
  (`min_interval_ms` = the add-in's interval), for comparison.

One phase per `--intervals` value (the add-in's conflation interval; 0 turns conflation
off, so the add-in's own path, transport and a 10,000-row matrix per delta, shows apart
from the interval's share), `--repeat` times interleaved, on one broker and one app.
CPU % is of one core; the machine's 2 cores are shared by the server, the Kafka JVM, the
producer, Node and the native subscriber.

    .venv/bin/python -m benchmarks.excel_feed       # 250, 100, 0 ms; 30 s each; 3 times
    .venv/bin/python -m benchmarks.excel_feed --intervals 250 --repeat 1 --duration 10
    .venv/bin/python -m benchmarks.excel_feed --broker tansu --out excel_feed_tansu
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

from benchmarks._common import REPO, ExternalBroker, recv_message, wait_metric, write_result
from benchmarks._procstats import RssSampler, Window, mib, source_state, wait_quiet

TICKER_APP = REPO / "benchmarks" / "apps" / "ticker.py"
EXCEL = REPO / "excel"
BENCH_FEED = EXCEL / "test-live" / "bench_feed.mjs"
GRID = "quotes"


# -- the producer (its own process, for the whole run) -----------------------------------


@dataclass(frozen=True)
class FeedConfig:
    bootstrap: str
    topic: str
    rows: int
    rate: int
    tick_ms: int
    seed: int = 7


def row_key(i: int) -> str:
    return f"r{i:05d}"


async def _produce(config: FeedConfig, conn: Connection) -> None:
    """Preload every row once, then feed on command: ("feed", seconds) ... ("quit",)."""
    import msgspec
    from aiokafka import AIOKafkaProducer

    encode = msgspec.json.Encoder().encode
    producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, acks=1, linger_ms=0)
    await producer.start()
    try:
        keys = [row_key(i).encode() for i in range(config.rows)]
        rng = random.Random(config.seed)
        price = 0.0
        futures: list[asyncio.Future[Any]] = []

        async def send(indices: list[int]) -> None:
            nonlocal price
            batch = producer.create_batch()
            for i in indices:
                price += 1.0
                value = encode({"price": price, "sent_at": time.time()})
                if batch.append(key=keys[i], value=value, timestamp=None) is None:
                    batch.close()
                    futures.append(await producer.send_batch(batch, config.topic, partition=0))
                    batch = producer.create_batch()
                    batch.append(key=keys[i], value=value, timestamp=None)
            if batch.record_count():
                batch.close()
                futures.append(await producer.send_batch(batch, config.topic, partition=0))

        for start in range(0, config.rows, 500):
            await send(list(range(start, min(start + 500, config.rows))))
        for future in futures:
            await future
        futures.clear()
        conn.send(("preloaded", config.rows))

        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, conn.recv)
            if command[0] != "feed":
                return
            seconds = float(command[1])
            total = int(config.rate * seconds)
            tick = config.tick_ms / 1000
            cpu_before = time.process_time()
            started = time.monotonic()
            sent = late_ticks = ticks = 0
            while sent < total:
                ticks += 1
                due = min(total, int((time.monotonic() - started) * config.rate)) - sent
                if due > 0:
                    await send([rng.randrange(config.rows) for _ in range(due)])
                    sent += due
                    if due > 2 * config.rate * tick:
                        late_ticks += 1
                # sleep to the next tick boundary (no drift)
                await asyncio.sleep(max(0.0, started + ticks * tick - time.monotonic()))
            produced_in = time.monotonic() - started
            for future in futures:
                await future
            futures.clear()
            conn.send(
                (
                    "fed",
                    {
                        "records": sent,
                        "seconds": round(produced_in, 3),
                        "rate": round(sent / max(produced_in, 1e-9), 1),
                        "late_ticks": late_ticks,
                        "cpu_seconds": round(time.process_time() - cpu_before, 3),
                    },
                )
            )
    finally:
        await producer.stop()


def producer_main(config: FeedConfig, conn: Connection) -> None:
    try:
        asyncio.run(_produce(config, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# -- the native subscriber (its own process, one per phase) ------------------------------


@dataclass(frozen=True)
class NativeConfig:
    target: str
    app: str
    rows: int
    #: One subscription per value: 0 is the raw stream, N asks the server for
    #: at most one update per N ms (SubscribeRequest.min_interval_ms).
    min_intervals: tuple[int, ...]


async def _native(config: NativeConfig, conn: Connection) -> None:
    from aerogrid.client import GridClient

    state = {"measuring": False}
    ready = {mi: False for mi in config.min_intervals}
    stats: dict[int, dict[str, Any]] = {
        mi: {"updates": 0, "rows": 0, "conflated": 0, "latency_ms": []}
        for mi in config.min_intervals
    }
    errors: list[str] = []
    settled = asyncio.Event()  # every subscription has its snapshot, or one failed

    async def follow(client: GridClient, mi: int) -> None:
        stat = stats[mi]
        latency: list[float] = stat["latency_ms"]
        try:
            async for update in client.subscribe(config.app, GRID, min_interval_ms=mi):
                received = time.time()
                if update.snapshot:
                    ready[mi] = len(update.upserts) >= config.rows
                    if all(ready.values()):
                        settled.set()
                    continue
                if not state["measuring"]:
                    continue
                stat["updates"] += 1
                stat["rows"] += len(update.upserts)
                stat["conflated"] += update.conflated
                latency.extend(
                    [1000 * (received - row["sent_at"]) for row in update.upserts.values()]
                )
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:300])
            settled.set()

    loop = asyncio.get_running_loop()
    async with GridClient(config.target) as client:
        tasks = [asyncio.create_task(follow(client, mi)) for mi in config.min_intervals]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(settled.wait(), 120)
        conn.send(("ready", all(ready.values()), errors[:3]))
        command = await loop.run_in_executor(None, conn.recv)
        assert command == "start", command
        cpu_before, wall_before = time.process_time(), time.monotonic()
        state["measuring"] = True
        command = await loop.run_in_executor(None, conn.recv)
        assert command == "stop", command
        state["measuring"] = False
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    conn.send(
        (
            "result",
            {
                "seconds": round(wall, 1),
                "cpu_percent_all_subscriptions": round(100 * cpu / max(wall, 1e-9), 1),
                "errors": errors[:5],
                "subscriptions": {
                    mi: {
                        "updates": s["updates"],
                        "updates_per_s": round(s["updates"] / max(wall, 1e-9), 1),
                        "rows_received": s["rows"],
                        "rows_received_per_s": round(s["rows"] / max(wall, 1e-9), 1),
                        "rows_conflated_by_server": s["conflated"],
                        "latency_ms": percentiles(s["latency_ms"]),
                    }
                    for mi, s in stats.items()
                },
            },
        )
    )


def native_main(config: NativeConfig, conn: Connection) -> None:
    try:
        asyncio.run(_native(config, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# -- the add-in, in Node -------------------------------------------------------------------


class NodeFeed:
    """`node excel/test-live/bench_feed.mjs` in its own process group, spoken to on stdio."""

    def __init__(self, node: str, args: list[str]) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="excel-feed-"))
        self._stderr = self._dir / "stderr.txt"
        with self._stderr.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [node, str(BENCH_FEED), *args],
                cwd=EXCEL,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout: IO[str] | None = self.proc.stdout
        assert stdout is not None
        for line in stdout:
            self._lines.put(line)
        self._lines.put(None)

    def event(self, name: str, timeout: float) -> dict[str, Any]:
        """The next JSON line with {"event": name} (raises on exit or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                what = f"no {name} from node in {timeout:.0f}s:\n{self.stderr()}"
                raise TimeoutError(what) from None
            if line is None:
                raise RuntimeError(f"node exited ({self.proc.wait(5)}):\n{self.stderr()}")
            with contextlib.suppress(ValueError):
                message: dict[str, Any] = json.loads(line)
                if message.get("event") == name:
                    return message

    def send(self, command: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(command + "\n")
        stdin.flush()

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            return self._stderr.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """Close stdin (the driver cancels and exits), then SIGTERM/SIGKILL its group."""
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        tail = self.stderr().strip()
        if tail:
            print(f"   node stderr: {tail[-1000:]}", flush=True)
        shutil.rmtree(self._dir, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of latencies in ms (empty dict without samples)."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return round(ordered[min(n - 1, int(q * n))], 1)

    return {
        "samples": n,
        "p50": at(0.50),
        "p90": at(0.90),
        "p99": at(0.99),
        "max": round(ordered[-1], 1),
        "min": round(ordered[0], 1),
    }


def _stop_process(proc: Any) -> None:
    """Join a multiprocessing child; terminate, then kill, when it does not end."""
    proc.join(5)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


def addin_build() -> dict[str, str]:
    """Which build of the add-in the driver loads (the bundle when built), and its hash."""
    import hashlib

    for path in (EXCEL / "dist" / "addin" / "functions.js", EXCEL / "dist" / "functions.js"):
        if path.exists():
            data = path.read_bytes()
            built = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(path.stat().st_mtime))
            return {
                "file": str(path.relative_to(REPO)),
                "built_utc": built,
                "sha256": hashlib.sha256(data).hexdigest()[:16],
            }
    return {}


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("excel_feed: node is not on PATH")
    if not (EXCEL / "node_modules" / "@connectrpc" / "connect-web").exists():
        raise SystemExit("excel_feed: excel/node_modules is missing: run `make excel`")
    if (
        not (EXCEL / "dist" / "functions.js").exists()
        and not (EXCEL / "dist" / "addin" / "functions.js").exists()
    ):
        raise SystemExit("excel_feed: the add-in is not built: `cd excel && npm run build`")
    return node


# -- one phase: one conflation interval, the add-in and the native subscriber side by side --


@dataclass(frozen=True)
class Settings:
    rows: int
    rate: int
    duration: float
    warmup: float
    drain: float


def run_phase(
    ctx: Any,
    node: str,
    app: Any,
    app_name: str,
    broker: Any,
    producer: tuple[Any, Connection],
    interval: int,
    settings: Settings,
    label: str,
) -> dict[str, Any]:
    print(f"\n== {label}: add-in interval={interval} ms, {settings.duration:.0f} s", flush=True)
    assert app.proc is not None
    server_pid = app.proc.pid
    proc, pconn = producer
    feed: NodeFeed | None = None
    native: Any = None
    build = addin_build()
    try:
        feed = NodeFeed(
            node,
            [
                "--base-url",
                app.http,
                "--app",
                app_name,
                "--grid",
                GRID,
                "--options",
                f"interval={interval}",
                "--expect-rows",
                str(settings.rows),
                "--timeout",
                str(int(settings.warmup + settings.duration + 300)),
            ],
        )
        nparent, nchild = ctx.Pipe()
        native_config = NativeConfig(
            app.target, app_name, settings.rows, (0, interval) if interval else (0,)
        )
        native = ctx.Process(target=native_main, args=(native_config, nchild), daemon=True)
        native.start()
        started = time.monotonic()
        ready = feed.event("ready", 120)
        native_ready = recv_message(nparent, 120, "native subscriber")
        if not native_ready[1]:
            raise RuntimeError(f"native subscriber not ready: {native_ready[2]}")
        print(
            f"   add-in ({ready['source']}) shows {ready['rows']} rows "
            f"({ready['json_chars']:,} JSON chars) after {time.monotonic() - started:.1f} s",
            flush=True,
        )
        quiet = wait_quiet([server_pid, *([broker.pid] if broker.pid else [])], timeout=20)

        pids = {
            "server": [server_pid],
            "broker": [broker.pid] if broker.pid else [],
            "add-in (node)": [feed.proc.pid],
            "native subscriber": [native.pid],
            "producer": [proc.pid],
            "bench": [os.getpid()],
        }
        sampler = RssSampler({"server": [server_pid]})
        pconn.send(("feed", settings.warmup + settings.duration))
        time.sleep(settings.warmup)
        window = Window(pids)
        sampler.start()
        window.start()
        feed.send("start")
        nparent.send("start")
        fed = recv_message(pconn, settings.duration + 120, "producer")[1]
        time.sleep(settings.drain)  # the last updates reach the cell
        feed.send("stop")
        nparent.send("stop")
        window.stop()
        sampler.stop()
        addin = feed.event("result", 60)
        native_result = recv_message(nparent, 60, "native subscriber")[1]
    finally:
        if feed is not None:
            feed.stop()
        if native is not None:
            _stop_process(native)

    cpu = window.percent()
    machine = window.machine()
    ours = sum(cpu.values())
    raw = native_result["subscriptions"][0]
    served = native_result["subscriptions"].get(interval) if interval else None
    a_lat, r_lat = addin["latency_ms"], raw["latency_ms"]
    summary: dict[str, Any] = {
        "label": label,
        "interval_ms": interval,
        "broker": broker.kind,
        "produce": {"target_rate": settings.rate, **fed},
        "addin": addin,
        "addin_build": build,
        "native": native_result,
        "addin_p50_minus_raw_p50_ms": _minus(a_lat.get("p50"), r_lat.get("p50")),
        "addin_p99_minus_raw_p99_ms": _minus(a_lat.get("p99"), r_lat.get("p99")),
        "addin_p99_over_raw_p99": _ratio(a_lat.get("p99"), r_lat.get("p99")),
        "goal_p99_under_400_ms": a_lat.get("p99") is not None and a_lat["p99"] < 400,
        "cpu_percent": cpu,
        "machine_cpu_percent_of_all_cores": machine,
        "other_processes_cpu_percent": round(
            max(0.0, machine["busy"] * (os.cpu_count() or 1) - ours), 1
        ),
        "other_processes_cores_before_start": quiet,
        "server_rss_mib_peak": mib(sampler.peak["server"]),
        "window_s": round(window.wall, 1),
    }
    print(
        f"   produced {fed['rate']:.0f}/s ({fed['late_ticks']} late ticks); add-in: "
        f"{addin['results_per_s']} results/s, p50/p99/max {a_lat.get('p50')}/{a_lat.get('p99')}/"
        f"{a_lat.get('max')} ms over {a_lat.get('samples')} rows, "
        f"{addin['json_bytes_per_result']:,} B/result, wire {addin['wire_bytes_per_s']:,} B/s, "
        f"CPU {addin['cpu_percent']}% (node {cpu['add-in (node)']}%), "
        f"RSS {addin['rss_mib_peak']} MiB",
        flush=True,
    )
    print(
        f"   native raw: p50/p99/max {r_lat.get('p50')}/{r_lat.get('p99')}/{r_lat.get('max')} ms "
        f"({raw['rows_received_per_s']} rows/s)"
        + (
            f"; native min_interval_ms={interval}: p50/p99 "
            f"{served['latency_ms'].get('p50')}/{served['latency_ms'].get('p99')} ms"
            if served
            else ""
        )
        + f"; server CPU {cpu['server']}%, broker {cpu['broker']}%, machine busy "
        f"{machine['busy']}%, others {summary['other_processes_cpu_percent']}%",
        flush=True,
    )
    if addin["errors"] or native_result["errors"]:
        print(f"   errors: {addin['errors']} {native_result['errors']}", flush=True)
    return summary


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def summarize(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per interval, the median and the spread of the key figures over the repeats."""
    out: dict[str, Any] = {}
    for interval in sorted({p["interval_ms"] for p in phases if "error" not in p}, reverse=True):
        done = [p for p in phases if p.get("interval_ms") == interval and "error" not in p]

        def figures(get: Any, done: list[dict[str, Any]] = done) -> dict[str, Any]:
            values = [v for v in (get(p) for p in done) if v is not None]
            if not values:
                return {}
            return {
                "median": round(statistics.median(values), 1),
                "min": min(values),
                "max": max(values),
            }

        out[f"interval={interval}"] = {
            "runs": len(done),
            "addin_p50_ms": figures(lambda p: p["addin"]["latency_ms"].get("p50")),
            "addin_p99_ms": figures(lambda p: p["addin"]["latency_ms"].get("p99")),
            "raw_p50_ms": figures(
                lambda p: p["native"]["subscriptions"][0]["latency_ms"].get("p50")
            ),
            "raw_p99_ms": figures(
                lambda p: p["native"]["subscriptions"][0]["latency_ms"].get("p99")
            ),
            "native_min_interval_p50_ms": figures(lambda p: _served(p, "p50")),
            "native_min_interval_p99_ms": figures(lambda p: _served(p, "p99")),
            "addin_results_per_s": figures(lambda p: p["addin"]["results_per_s"]),
            "addin_cpu_percent": figures(lambda p: p["addin"]["cpu_percent"]),
            "addin_rss_mib_peak": figures(lambda p: p["addin"]["rss_mib_peak"]),
            "server_cpu_percent": figures(lambda p: p["cpu_percent"]["server"]),
            "json_bytes_per_result": figures(lambda p: p["addin"]["json_bytes_per_result"]),
            "wire_bytes_per_s": figures(lambda p: p["addin"]["wire_bytes_per_s"]),
        }
    return out


def _served(phase: dict[str, Any], q: str) -> float | None:
    """A percentile of the native subscription the server conflated (None without one)."""
    if not phase["interval_ms"]:
        return None
    value: float | None = phase["native"]["subscriptions"][phase["interval_ms"]]["latency_ms"].get(
        q
    )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="measured s per phase [30]")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured s of load first")
    parser.add_argument("--rate", type=int, default=1000, help="row updates/s [1000]")
    parser.add_argument("--rows", type=int, default=10_000, help="grid rows [10000]")
    parser.add_argument("--tick-ms", type=int, default=50, help="producer pacing tick [50]")
    parser.add_argument(
        "--intervals",
        default="250,100,0",
        help="the add-in's conflation intervals, ms; 0: no conflation [250,100,0]",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="run the intervals N times, interleaved [3]"
    )
    parser.add_argument("--broker", choices=["kafka", "tansu"], default="kafka", help="[kafka]")
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--broker-pid", type=int, default=0, help="its pid, for its CPU")
    parser.add_argument("--out", default="excel_feed", help="results/NAME.json [excel_feed]")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every process started here is stopped on the way out.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    intervals = [int(x) for x in args.intervals.split(",") if x.strip()]
    node = node_binary()

    from support.apps import RunningApp
    from support.brokers import ApacheKafka, TansuBroker

    ctx = mp.get_context("spawn")
    app_name = f"excelfeed-{os.getpid()}"
    topic = f"{app_name}.ticks"
    env = {"BENCH_APP": app_name, "BENCH_TOPIC": topic, "BENCH_PARTITIONS": "1"}
    broker: Any
    if args.bootstrap:
        broker = ExternalBroker(args.broker, args.bootstrap, args.broker_pid)
    else:
        broker = ApacheKafka(heap="1g") if args.broker == "kafka" else TansuBroker()
    phases: list[dict[str, Any]] = []
    producer: Any = None
    with broker:
        print(f"broker: {broker.kind} at {broker.bootstrap}", flush=True)
        extra = ("--log-level", "WARNING")
        with RunningApp(TICKER_APP, broker.bootstrap, env=env, extra_args=extra) as app:
            pparent, pchild = ctx.Pipe()
            config = FeedConfig(broker.bootstrap, topic, args.rows, args.rate, args.tick_ms)
            producer = ctx.Process(target=producer_main, args=(config, pchild), daemon=True)
            producer.start()
            try:
                recv_message(pparent, 120, "producer (preload)")
                labels = {"app": app_name, "grid": GRID}
                if not wait_metric(app, "aerogrid_grid_rows", labels, args.rows, 60):
                    raise RuntimeError(f"preload not applied:\n{app.log_tail()}")
                print(f"preloaded {args.rows:,} rows into {app_name}/{GRID}", flush=True)
                for repeat in range(1, args.repeat + 1):
                    for interval in intervals:
                        label = f"run {repeat}/{args.repeat}, interval={interval}"
                        phase_settings = Settings(
                            args.rows,
                            args.rate,
                            args.duration,
                            args.warmup,
                            drain=interval / 1000 + 0.5,
                        )
                        try:
                            phases.append(
                                run_phase(
                                    ctx,
                                    node,
                                    app,
                                    app_name,
                                    broker,
                                    (producer, pparent),
                                    interval,
                                    phase_settings,
                                    label,
                                )
                            )
                        except Exception as exc:
                            traceback.print_exc()
                            phases.append(
                                {"label": label, "interval_ms": interval, "error": repr(exc)}
                            )
            finally:
                with contextlib.suppress(OSError, ValueError):
                    pparent.send(("quit",))
                _stop_process(producer)
    summary = summarize(phases)
    path = write_result(
        args.out,
        {
            "benchmark": "excel_feed",
            "source": source_state(),
            "command": " ".join(["python -m benchmarks.excel_feed", *(argv or sys.argv[1:])]),
            "settings": {**vars(args), "intervals": intervals},
            "summary": summary,
            "phases": phases,
        },
    )
    print("\nsummary (median [min..max] over the runs):", flush=True)
    for name, s in summary.items():
        print(
            f"   {name}: add-in p50 {_spread(s['addin_p50_ms'])} p99 {_spread(s['addin_p99_ms'])}"
            f" ms; raw p50 {_spread(s['raw_p50_ms'])} p99 {_spread(s['raw_p99_ms'])} ms; add-in"
            f" CPU {_spread(s['addin_cpu_percent'])}%",
            flush=True,
        )
    print(f"\nwrote {path.relative_to(REPO)}")
    return 1 if any("error" in p for p in phases) else 0


def _spread(f: dict[str, Any]) -> str:
    if not f:
        return "-"
    return f"{f['median']} [{f['min']}..{f['max']}]"


if __name__ == "__main__":
    sys.exit(main())
