"""Fan-out: many live subscribers of one busy grid, on one machine, over loopback.

The product issue asks: 1,000 subscribers, 10,000 rows, 10,000 row updates per second;
p50/p99 latency from produce to subscriber, server CPU and memory, updates merged by
conflation; goal p99 < 250 ms and every subscriber converging on the final state.

What runs (all real processes, all on 127.0.0.1):

* the server: `python -m aerogrid run benchmarks/apps/ticker.py` (a grid `quotes` of
  price + sent_at per key) against Apache Kafka (exactly-once) or the embedded broker;
* a producer process: aiokafka, paced at `--rate` records/s for `--duration` s, keys
  uniform over `--keys`; every record carries `sent_at = time.time()`;
* `--procs` client processes, each one asyncio loop with its share of the subscribers
  as native gRPC streams over `--channels` channels.

A Python client cannot decode every row of 1,000 streams on 2 cores, and here the
clients share the server's cores, so they are made as cheap as honesty allows. Every
subscriber receives raw bytes (no deserializer on the call) and fingerprints each
message (length + CRC-32); a message whose fingerprint its process has not seen is
decoded once with protobuf and cached, and every subscriber applies the decoded rows
to its own state dict. So every subscriber keeps a real replica of the grid built only
from the bytes it received: at the end each replica's digest is compared with the
server's snapshot (GridClient.snapshot), and that snapshot with the producer's last
value of every key (exactly-once check). *Probes* (`--probes`) also record, for every
upserted row they receive, receive time − sent_at (`--full-decode`: probes decode every
message themselves, as a real client would); every subscriber records, per message,
receive time − the oldest sent_at in it. A connect storm (`--storm`) then opens that
many subscriptions at once on an idle grid.

Everything runs on the same cores as the server, so the CPU of each party is reported
(server, broker, clients, producer, other processes on the machine).

    .venv/bin/python -m benchmarks.fanout                     # the issue's point + scaled points
    .venv/bin/python -m benchmarks.fanout --points 1000x10000 --duration 30
    .venv/bin/python -m benchmarks.fanout --quick --storm 0   # 2 minutes, small points
    .venv/bin/python -m benchmarks.fanout --broker tansu --points 100x10000 --append
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import multiprocessing as mp
import os
import random
import sys
import time
import traceback
import zlib
from array import array
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from benchmarks._common import REPO, ExternalBroker, recv_message, wait_metric, write_result
from benchmarks._procstats import (
    RssSampler,
    Window,
    cpu_seconds,
    mib,
    pin,
    source_state,
    wait_quiet,
)

TICKER_APP = REPO / "benchmarks" / "apps" / "ticker.py"
GRID = "quotes"
SUBSCRIBE = "/aerogrid.v1.GridService/Subscribe"


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One measured configuration."""

    subscribers: int
    rate: int
    duration: float
    keys: int = 10_000
    probes: int = 50
    #: Connect-only: every subscription at once (no ramp), no load; who got a snapshot?
    storm: bool = False

    @property
    def label(self) -> str:
        if self.storm:
            return f"{self.subscribers} subscriptions at once (connect storm, no load)"
        return f"{self.subscribers} subs x {self.rate}/s"


@dataclass(frozen=True)
class ClientConfig:
    target: str
    app: str
    first: int
    count: int
    probes: int
    channels: int
    ready_timeout: float
    #: At most this many subscriptions waiting for their snapshot at once (0: no limit).
    ramp: int
    #: Probes decode every message themselves instead of through the process's cache.
    full_decode: bool = False
    #: HTTP/2 stream receive window the channels announce (0: gRPC's default).
    window: int = 0
    #: CPU cores this process may run on (empty: any).
    cores: frozenset[int] = frozenset()
    #: SubscribeRequest.min_interval_ms: at most one update per interval per subscriber.
    min_interval_ms: int = 0


@dataclass(frozen=True)
class ProducerConfig:
    bootstrap: str
    topic: str
    keys: int
    rate: int  # 0: as fast as possible, each key once (prefill)
    duration: float
    seed: int = 7
    cores: frozenset[int] = frozenset()


# -- subscribers (run in client processes) ---------------------------------------------

SCHEMA, SNAPSHOT, DELTA, HEARTBEAT = 1, 2, 3, 4
_KINDS = {"schema": SCHEMA, "snapshot": SNAPSHOT, "delta": DELTA, "heartbeat": HEARTBEAT}
Row = tuple[float, float]


@dataclass(slots=True)
class Parsed:
    """A decoded SubscribeResponse, reduced to what a replica needs."""

    kind: int
    seq: int = 0
    rows: dict[str, Row] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    complete: bool = False
    conflated: int = 0
    oldest: float = math.inf  # the smallest sent_at among the rows


def parse(data: bytes) -> Parsed:
    from aerogrid.v1 import grid_pb2

    message = grid_pb2.SubscribeResponse.FromString(data)
    kind = _KINDS[message.WhichOneof("event") or "heartbeat"]
    if kind == DELTA:
        delta = message.delta
        rows = {r.key: (r.cells[0].float_value, r.cells[1].float_value) for r in delta.upserts}
        return Parsed(
            DELTA,
            delta.seq,
            rows,
            list(delta.deletes),
            conflated=delta.conflated,
            oldest=min((v[1] for v in rows.values()), default=math.inf),
        )
    if kind == SNAPSHOT:
        snap = message.snapshot
        rows = {r.key: (r.cells[0].float_value, r.cells[1].float_value) for r in snap.rows}
        return Parsed(SNAPSHOT, snap.seq, rows, complete=snap.complete)
    if kind == SCHEMA:
        columns = [c.name for c in message.schema.columns]
        if columns != ["price", "sent_at"]:
            raise RuntimeError(f"unexpected schema {columns}")
        return Parsed(SCHEMA)
    return Parsed(HEARTBEAT, message.heartbeat.seq)


def digest(state: dict[str, Row]) -> str:
    """A digest of a replica: equal digests, equal grids (keys and exact float cells)."""
    return hashlib.sha256(repr(sorted(state.items())).encode()).hexdigest()[:16]


@dataclass(slots=True)
class Subscriber:
    index: int
    probe: bool
    state: dict[str, Row] = field(default_factory=dict)
    pending: dict[str, Row] = field(default_factory=dict)
    seq: int = -1
    messages: int = 0
    deltas: int = 0
    rows: int = 0
    conflated: int = 0
    snapshots: int = 0
    bytes: int = 0
    out_of_order: int = 0
    first_snapshot_s: float = 0.0
    error: str = ""


class ClientProcess:
    """One process's subscribers, their shared decode cache and their measurements."""

    CACHE_LIMIT = 512

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.subs = [
            Subscriber(config.first + i, probe=i < config.probes) for i in range(config.count)
        ]
        self.cache: dict[tuple[int, int], Parsed] = {}
        self.decoded = 0
        self.hits = 0
        #: receive time − sent_at of every upserted row a probe received (seconds).
        self.row_latency = array("d")
        #: per delta message, any subscriber: receive time − the oldest sent_at in it.
        self.message_age = array("d")
        self.measuring = False
        self.snapshot_ready = 0
        self.connecting = asyncio.Semaphore(config.ramp) if config.ramp else None

    def decoded_once(self, data: bytes) -> Parsed:
        key = (len(data), zlib.crc32(data))
        parsed = self.cache.get(key)
        if parsed is not None:
            self.hits += 1
            return parsed
        parsed = parse(data)
        self.decoded += 1
        self.cache[key] = parsed
        if len(self.cache) > self.CACHE_LIMIT:
            del self.cache[next(iter(self.cache))]
        return parsed

    def apply(self, sub: Subscriber, parsed: Parsed, received: float) -> None:
        if parsed.kind == DELTA:
            if parsed.seq <= sub.seq:
                sub.out_of_order += 1
            sub.state.update(parsed.rows)
            for key in parsed.deletes:
                sub.state.pop(key, None)
            sub.seq = parsed.seq
            sub.deltas += 1
            sub.rows += len(parsed.rows)
            sub.conflated += parsed.conflated
            if self.measuring and parsed.rows:
                self.message_age.append(received - parsed.oldest)
                if sub.probe:
                    self.row_latency.extend([received - v[1] for v in parsed.rows.values()])
        elif parsed.kind == SNAPSHOT:
            sub.pending.update(parsed.rows)
            if parsed.complete:
                sub.state, sub.pending = sub.pending, {}
                sub.seq = parsed.seq
                sub.snapshots += 1

    async def subscribe(self, sub: Subscriber, channel: Any) -> None:
        from aerogrid.v1 import grid_pb2

        method = channel.unary_stream(
            SUBSCRIBE,
            request_serializer=grid_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=None,
        )
        if self.connecting is not None:
            await self.connecting.acquire()
        connecting = self.connecting is not None
        started = time.monotonic()
        call = method(
            grid_pb2.SubscribeRequest(
                app=self.config.app, grid=GRID, min_interval_ms=self.config.min_interval_ms
            )
        )
        try:
            async for data in call:
                received = time.time()
                sub.messages += 1
                sub.bytes += len(data)
                full = sub.probe and self.config.full_decode
                parsed = parse(data) if full else self.decoded_once(data)
                self.apply(sub, parsed, received)
                if parsed.kind == SNAPSHOT and parsed.complete and sub.snapshots == 1:
                    sub.first_snapshot_s = time.monotonic() - started
                    self.snapshot_ready += 1
                    if connecting and self.connecting is not None:
                        self.connecting.release()
                        connecting = False
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception as exc:
            sub.error = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            if connecting and self.connecting is not None:
                self.connecting.release()

    async def run(self, conn: Connection) -> None:
        from grpc import aio

        loop = asyncio.get_running_loop()
        options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.use_local_subchannel_pool", 1),  # one TCP connection per channel
            *((("grpc.http2.lookahead_bytes", self.config.window),) if self.config.window else ()),
        ]
        channels = [
            aio.insecure_channel(self.config.target, options=options)
            for _ in range(self.config.channels)
        ]
        tasks = [
            asyncio.create_task(self.subscribe(sub, channels[i % len(channels)]))
            for i, sub in enumerate(self.subs)
        ]
        deadline = time.monotonic() + self.config.ready_timeout
        while time.monotonic() < deadline:
            failed = sum(1 for s in self.subs if s.error and not s.snapshots)
            if self.snapshot_ready + failed >= len(self.subs):
                break
            await asyncio.sleep(0.05)
        conn.send(("ready", self.snapshot_ready, [s.error for s in self.subs if s.error][:3]))
        command, final_seq = await loop.run_in_executor(None, conn.recv)
        assert command == "measure"
        self.measuring = True
        command, final_seq = await loop.run_in_executor(None, conn.recv)
        assert command == "finish"
        self.measuring = False
        finish_started = time.monotonic()
        while time.monotonic() - finish_started < 120:
            if all(s.seq >= final_seq or s.error for s in self.subs):
                break
            await asyncio.sleep(0.05)
        converge_wait = time.monotonic() - finish_started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close(grace=None)
        conn.send(("result", self.result(converge_wait)))

    def result(self, converge_wait: float) -> dict[str, Any]:
        digests: list[str] = []
        known: list[tuple[dict[str, Row], str]] = []
        for sub in self.subs:
            found = next((d for state, d in known if state == sub.state), None)
            if found is None:
                found = digest(sub.state)
                known = [(sub.state, found), *known[:7]]
            digests.append(found)
        subs = []
        for sub, sub_digest in zip(self.subs, digests, strict=True):
            record = {
                k: getattr(sub, k)
                for k in (
                    "index",
                    "probe",
                    "seq",
                    "messages",
                    "deltas",
                    "rows",
                    "conflated",
                    "snapshots",
                    "bytes",
                    "out_of_order",
                    "first_snapshot_s",
                    "error",
                )
            }
            record["digest"] = sub_digest
            record["rows_in_state"] = len(sub.state)
            subs.append(record)
        return {
            "subs": subs,
            "row_latency": self.row_latency.tobytes(),
            "message_age": self.message_age.tobytes(),
            "decoded": self.decoded,
            "cache_hits": self.hits,
            "converge_wait_s": round(converge_wait, 2),
        }


def client_main(config: ClientConfig, conn: Connection) -> None:
    """Entry point of a client process."""
    if config.cores:
        os.sched_setaffinity(0, config.cores)
    try:
        asyncio.run(ClientProcess(config).run(conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# -- the producer (its own process) ------------------------------------------------------


async def _produce(config: ProducerConfig, conn: Connection | None) -> dict[str, Any]:
    import msgspec
    from aiokafka import AIOKafkaProducer

    encode = msgspec.json.Encoder().encode
    producer = AIOKafkaProducer(bootstrap_servers=config.bootstrap, acks=1, linger_ms=0)
    await producer.start()
    try:
        partitions = sorted(await producer.partitions_for(config.topic))
        keys = [f"k{i:05d}".encode() for i in range(config.keys)]
        rng = random.Random(config.seed)
        last: dict[str, tuple[float, float]] = {}
        futures: list[asyncio.Future[Any]] = []
        sent = 0
        price = 0.0

        async def flush(indices: list[int]) -> None:
            nonlocal price
            batches = {p: producer.create_batch() for p in partitions}
            for i in indices:
                key = keys[i]
                part = partitions[i % len(partitions)]
                price += 1.0
                sent_at = time.time()
                value = encode({"price": price, "sent_at": sent_at})
                if batches[part].append(key=key, value=value, timestamp=None) is None:
                    batches[part].close()
                    futures.append(
                        await producer.send_batch(batches[part], config.topic, partition=part)
                    )
                    batches[part] = producer.create_batch()
                    batches[part].append(key=key, value=value, timestamp=None)
                last[key.decode()] = (price, sent_at)
            for part, batch in batches.items():
                if batch.record_count():
                    batch.close()
                    futures.append(await producer.send_batch(batch, config.topic, partition=part))

        if config.rate == 0:
            started = time.monotonic()
            for start in range(0, config.keys, 500):
                await flush(list(range(start, min(start + 500, config.keys))))
            sent = config.keys
        else:
            if conn is not None:
                conn.send(("ready", os.getpid()))
                await asyncio.get_running_loop().run_in_executor(None, conn.recv)
            total = int(config.rate * config.duration)
            started = time.monotonic()
            tick = 0.005
            late_ticks = 0
            while sent < total:
                elapsed = time.monotonic() - started
                due = min(total, int(elapsed * config.rate)) - sent
                if due > 0:
                    await flush([rng.randrange(config.keys) for _ in range(due)])
                    sent += due
                    if due > 2 * config.rate * tick:
                        late_ticks += 1
                await asyncio.sleep(tick)
        produced_in = time.monotonic() - started
        for future in futures:
            await future
        acked_in = time.monotonic() - started
        result: dict[str, Any] = {
            "cpu_seconds": time.process_time(),
            "records": sent,
            "seconds": round(produced_in, 3),
            "rate": round(sent / max(produced_in, 1e-9), 1),
            "acked_seconds": round(acked_in, 3),
            "last": last,
        }
        if config.rate:
            result["late_ticks"] = late_ticks
        return result
    finally:
        await producer.stop()


def producer_main(config: ProducerConfig, conn: Connection) -> None:
    if config.cores:
        os.sched_setaffinity(0, config.cores)
    try:
        conn.send(("result", asyncio.run(_produce(config, conn))))
    except Exception:
        conn.send(("error", traceback.format_exc()))


# -- orchestration -----------------------------------------------------------------------


def percentiles(values: array[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds (empty dict without samples)."""
    if not values:
        return {}
    ordered = sorted(values)
    n = len(ordered)

    def at(q: float) -> float:
        return round(1000 * ordered[min(n - 1, int(q * n))], 1)

    return {
        "samples": n,
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(1000 * ordered[-1], 1),
    }


async def _grid_seq(target: str, app: str) -> int:
    from grpc import aio

    from aerogrid.v1 import grid_pb2, grid_pb2_grpc

    async with aio.insecure_channel(target) as channel:
        stub = grid_pb2_grpc.GridServiceStub(channel)
        response = await stub.ListGrids(grid_pb2.ListGridsRequest(app=app))
        return next(int(g.seq) for g in response.grids if g.name == GRID)


async def _server_state(target: str, app: str) -> dict[str, Row]:
    from aerogrid.client import GridClient

    async with GridClient(target) as client:
        rows = await client.snapshot(app, GRID, timeout=60)
    return {k: (float(v["price"]), float(v["sent_at"])) for k, v in rows.items()}


def _server_counters(app: Any, app_name: str) -> dict[str, Any]:
    """The server's fan-out counters and its batch-time histogram, from /metrics."""
    import httpx

    text = httpx.get(f"{app.http}/metrics", timeout=10).text
    labels = f'app="{app_name}",grid="{GRID}"'
    wanted = {
        "sent": f"aerogrid_updates_sent_total{{{labels}}}",
        "conflated": f"aerogrid_rows_conflated_total{{{labels}}}",
        "batches": f'aerogrid_batch_seconds_count{{app="{app_name}"}}',
        "batch_seconds": f'aerogrid_batch_seconds_sum{{app="{app_name}"}}',
    }
    found: dict[str, Any] = dict.fromkeys(wanted, 0.0)
    buckets: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        for key, metric in wanted.items():
            if name == metric:
                found[key] = float(value)
        if name.startswith("aerogrid_batch_seconds_bucket{") and f'app="{app_name}"' in name:
            buckets[name.split('le="')[1].split('"')[0]] = float(value)
    found["buckets"] = buckets
    return found


def _bucket_quantiles(buckets: dict[str, float], qs: tuple[float, ...]) -> dict[str, str]:
    """Upper bounds (ms) of the histogram buckets that hold each quantile."""
    ordered = sorted(buckets.items(), key=lambda kv: float(kv[0]))
    total = ordered[-1][1] if ordered else 0
    out: dict[str, str] = {}
    for q in qs:
        for le, count in ordered:
            if total and count >= q * total:
                out[f"p{round(q * 100)}"] = "inf" if le == "+Inf" else f"<={float(le) * 1000:g}"
                break
    return out


def _produce_sync(ctx: Any, config: ProducerConfig) -> dict[str, Any]:
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=producer_main, args=(config, child), daemon=True)
    proc.start()
    try:
        result: dict[str, Any] = recv_message(parent, 120, "prefill producer")[1]
        return result
    finally:
        proc.join(10)


@dataclass(frozen=True)
class Options:
    """How the load is generated and measured (the same for every point)."""

    procs: int = 2
    channels: int = 2
    warmup: float = 5.0
    ramp: int = 10
    full_decode: bool = False
    window: int = 0
    #: Server alone on core 0; broker, clients and producer on the other cores.
    pin: bool = False
    min_interval_ms: int = 0


def run_point(broker: Any, point: Point, run: int, options: Options) -> dict[str, Any]:
    procs, warmup = options.procs, options.warmup
    others = frozenset(range(1, os.cpu_count() or 1)) if options.pin else frozenset()
    from support.apps import RunningApp

    ctx = mp.get_context("spawn")
    app_name = f"fanout{run}-{os.getpid()}"
    topic = f"{app_name}.ticks"
    env = {"BENCH_APP": app_name, "BENCH_TOPIC": topic, "BENCH_PARTITIONS": "1"}
    extra = ("--log-level", "WARNING")
    print(f"\n== {point.label} for {point.duration:.0f}s on {broker.kind}", flush=True)
    ramp = 0 if point.storm else options.ramp
    with RunningApp(TICKER_APP, broker.bootstrap, env=env, extra_args=extra) as app:
        assert app.proc is not None
        server_pid = app.proc.pid
        labels = {"app": app_name, "grid": GRID}
        prefill = _produce_sync(
            ctx, ProducerConfig(broker.bootstrap, topic, point.keys, rate=0, duration=0)
        )
        if not wait_metric(app, "aerogrid_grid_rows", labels, point.keys, 60):
            raise RuntimeError(f"prefill not applied:\n{app.log_tail()}")
        wait_metric(app, "aerogrid_records_in_total", {"app": app_name}, point.keys, 30)
        if others:
            pin(server_pid, {0})
            if broker.pid:
                pin(broker.pid, set(others))
        quiet_others = wait_quiet([server_pid, broker.pid] if broker.pid else [server_pid])
        idle_rss = RssSampler({"server": [server_pid]})
        idle_rss.sample()

        # Subscribers: split over processes, probes spread evenly.
        clients = []
        per = [point.subscribers // procs + (i < point.subscribers % procs) for i in range(procs)]
        probes = [point.probes // procs + (i < point.probes % procs) for i in range(procs)]
        first = 0
        subscribe_started = time.monotonic()
        for count, probe_count in zip(per, probes, strict=True):
            if not count:
                continue
            parent, child = ctx.Pipe()
            config = ClientConfig(
                app.target,
                app_name,
                first,
                count,
                min(probe_count, count),
                options.channels,
                90.0 if point.storm else 300.0,
                ramp,
                options.full_decode,
                options.window,
                others,
                options.min_interval_ms,
            )
            proc = ctx.Process(target=client_main, args=(config, child), daemon=True)
            proc.start()
            clients.append((proc, parent))
            first += count
        ready_counts = []
        for proc, conn in clients:
            message = recv_message(conn, 330, f"client {proc.pid}")
            ready_counts.append(message[1])
            if message[2]:
                print(f"   client {proc.pid} errors: {message[2]}", flush=True)
        subscribe_seconds = time.monotonic() - subscribe_started
        print(
            f"   {sum(ready_counts)}/{point.subscribers} subscribers had their snapshot "
            f"in {subscribe_seconds:.1f}s",
            flush=True,
        )
        if point.storm:
            return _finish_storm(app, app_name, clients, subscribe_seconds, point, server_pid)

        # The load window: `warmup` seconds unmeasured (JIT, caches), then `duration`.
        pparent, pchild = ctx.Pipe()
        producer = ctx.Process(
            target=producer_main,
            args=(
                ProducerConfig(
                    broker.bootstrap,
                    topic,
                    point.keys,
                    point.rate,
                    warmup + point.duration,
                    cores=others,
                ),
                pchild,
            ),
            daemon=True,
        )
        producer.start()
        recv_message(pparent, 60, "producer")
        assert producer.pid is not None
        client_pids = [proc.pid for proc, _ in clients if proc.pid is not None]
        pids = {
            "server": [server_pid],
            "broker": [broker.pid] if broker.pid else [],
            "clients": client_pids,
            "bench": [os.getpid()],
        }
        pparent.send("go")
        time.sleep(warmup)
        sampler = RssSampler({**pids, "producer": [producer.pid]})
        sampler.start()
        window = Window(pids)
        before = _server_counters(app, app_name)
        producer_cpu_before = cpu_seconds(producer.pid)
        window.start()
        for _, conn in clients:
            conn.send(("measure", 0))
        produced = recv_message(pparent, warmup + point.duration + 120, "producer")[1]
        producer.join(10)
        produced_in_window = window.began + (produced["seconds"] - warmup)
        total_in = point.keys + produced["records"]
        drained = wait_metric(app, "aerogrid_records_in_total", {"app": app_name}, total_in, 120)
        window.stop()
        drain_seconds = window.ended - produced_in_window
        sampler.stop()
        after = _server_counters(app, app_name)
        final_seq = asyncio.run(_grid_seq(app.target, app_name))
        for _, conn in clients:
            conn.send(("finish", final_seq))
        results = [recv_message(conn, 300, f"client {proc.pid}")[1] for proc, conn in clients]
        for proc, _ in clients:
            proc.join(10)
        server_state = asyncio.run(_server_state(app.target, app_name))

    # -- analysis --
    expected = {k: (float(v[0]), float(v[1])) for k, v in prefill["last"].items()}
    expected.update({k: (float(v[0]), float(v[1])) for k, v in produced["last"].items()})
    server_digest = digest(server_state)
    subs = [s for r in results for s in r["subs"]]
    converged = [s for s in subs if s["digest"] == server_digest and not s["error"]]
    row_latency: array[float] = array("d")
    message_age: array[float] = array("d")
    for r in results:
        row_latency.frombytes(r["row_latency"])
        message_age.frombytes(r["message_age"])
    cpu = window.percent()
    machine = window.machine()
    ours = sum(cpu.values())
    cpu["producer"] = round(
        100 * (produced["cpu_seconds"] - producer_cpu_before) / (produced["seconds"] - warmup), 1
    )
    sent = after["sent"] - before["sent"]
    conflated = after["conflated"] - before["conflated"]
    batches = after["batches"] - before["batches"]
    batch_buckets = {
        le: after["buckets"][le] - before["buckets"].get(le, 0) for le in after["buckets"]
    }
    published = max((s["rows"] + s["conflated"] for s in subs if s["snapshots"] == 1), default=0)
    rows_total = sum(s["rows"] for s in subs)
    load_wall = window.wall
    summary = {
        "point": asdict(point),
        "broker": broker.kind,
        "client_processes": len(clients),
        "channels_per_process": options.channels,
        "min_interval_ms": options.min_interval_ms,
        "pinned": "server on core 0, the rest on the others" if options.pin else "no",
        "probes_decode": "own protobuf decode" if options.full_decode else "shared cache",
        "produce": {
            "records": produced["records"],
            "target_rate": point.rate,
            "achieved_rate": produced["rate"],
            "late_ticks": produced.get("late_ticks", 0),
        },
        "server_drained": drained,
        "drain_after_produce_s": round(drain_seconds, 2),
        "subscribe_all_s": round(subscribe_seconds, 1),
        "first_snapshot_s_max": round(max(s["first_snapshot_s"] for s in subs), 2),
        "latency_row_probe": percentiles(row_latency),
        "latency_message_oldest_row_all": percentiles(message_age),
        "server_batches": int(batches),
        "server_batch_ms_quantiles": _bucket_quantiles(batch_buckets, (0.5, 0.9, 0.99)),
        "server_batch_mean_ms": round(
            1000 * (after["batch_seconds"] - before["batch_seconds"]) / max(batches, 1), 1
        ),
        "rows_published": published,
        "rows_merged_in_engine_batches": produced["records"] - published if published else None,
        "updates_sent": int(sent),
        "updates_sent_per_s": round(sent / load_wall, 1),
        "rows_conflated": int(conflated),
        "rows_received": rows_total,
        "rows_received_per_s": round(rows_total / load_wall, 1),
        "messages_received": sum(s["deltas"] for s in subs),
        "bytes_received_mib": mib(sum(s["bytes"] for s in subs)),
        "resnapshots": sum(max(0, s["snapshots"] - 1) for s in subs),
        "out_of_order": sum(s["out_of_order"] for s in subs),
        "errors": sorted({s["error"] for s in subs if s["error"]})[:5],
        "client_decodes": sum(r["decoded"] for r in results),
        "client_cache_hits": sum(r["cache_hits"] for r in results),
        "converge_wait_s": max(r["converge_wait_s"] for r in results),
        "converged": f"{len(converged)}/{len(subs)}",
        "all_converged": len(converged) == len(subs) == point.subscribers,
        "server_matches_producer": server_state == expected,
        "final_seq": final_seq,
        "cpu_percent": cpu,
        "machine_cpu_percent_of_all_cores": machine,
        "other_processes_cpu_percent": round(
            max(0.0, machine["busy"] * (os.cpu_count() or 1) - ours - cpu["producer"]), 1
        ),
        "other_processes_cores_before_start": quiet_others,
        "rss_mib_peak": {k: mib(v) for k, v in sampler.peak.items()},
        "server_rss_mib_before_subscribers": mib(idle_rss.peak["server"]),
        "load_wall_s": round(load_wall, 1),
    }
    _print_point(summary)
    return summary


def _finish_storm(
    app: Any,
    app_name: str,
    clients: list[tuple[Any, Connection]],
    seconds: float,
    point: Point,
    server_pid: int,
) -> dict[str, Any]:
    """End a connect-only point: who got a snapshot, who was refused and how."""
    final_seq = asyncio.run(_grid_seq(app.target, app_name))
    for _, conn in clients:
        conn.send(("measure", 0))
        conn.send(("finish", final_seq))
    results = [recv_message(conn, 300, f"client {proc.pid}")[1] for proc, conn in clients]
    for proc, _ in clients:
        proc.join(10)
    subs = [s for r in results for s in r["subs"]]
    ok = [s for s in subs if s["snapshots"] and not s["error"]]
    errors: dict[str, int] = {}
    for s in subs:
        if s["error"]:
            code = s["error"].split("status = ")[-1].split("\n")[0]
            errors[code] = errors.get(code, 0) + 1
    times = sorted(s["first_snapshot_s"] for s in ok)
    summary = {
        "point": asdict(point),
        "storm": True,
        "subscribers_with_snapshot": len(ok),
        "refused": errors,
        "seconds_until_last_answer": round(seconds, 1),
        "first_snapshot_s_p50": times[len(times) // 2] if times else None,
        "first_snapshot_s_max": times[-1] if times else None,
        "snapshots_per_s": round(len(ok) / max(times[-1], 1e-9), 1) if times else None,
        "server_cpu_seconds_total": round(cpu_seconds(server_pid), 1),
        "updates_sent": int(app.metric("aerogrid_updates_sent_total", {"grid": GRID})),
    }
    print(f"   storm: {summary}", flush=True)
    return summary


def _print_point(s: dict[str, Any]) -> None:
    lat = s["latency_row_probe"]
    age = s["latency_message_oldest_row_all"]
    print(
        f"   produce {s['produce']['achieved_rate']:.0f}/s; probe rows p50/p95/p99 "
        f"{lat.get('p50_ms')}/{lat.get('p95_ms')}/{lat.get('p99_ms')} ms "
        f"({lat.get('samples')} rows); oldest row per message p50/p99 "
        f"{age.get('p50_ms')}/{age.get('p99_ms')} ms",
        flush=True,
    )
    print(
        f"   server cpu {s['cpu_percent']['server']}% rss {s['rss_mib_peak']['server']} MiB; "
        f"clients cpu {s['cpu_percent']['clients']}%; broker {s['cpu_percent']['broker']}%; "
        f"producer {s['cpu_percent']['producer']}%; machine busy "
        f"{s['machine_cpu_percent_of_all_cores']['busy']}% of all cores; other processes "
        f"{s['other_processes_cpu_percent']}%",
        flush=True,
    )
    print(
        f"   batches {s['server_batches']} (mean {s['server_batch_mean_ms']} ms); "
        f"updates sent {s['updates_sent']}; rows conflated {s['rows_conflated']}; "
        f"rows received {s['rows_received']}; converged {s['converged']}; "
        f"server == producer: {s['server_matches_producer']}",
        flush=True,
    )


DEFAULT_POINTS = "1000x10000,300x10000,100x10000,1000x1000,1000x100"
QUICK_POINTS = "100x2000,300x1000"


def parse_points(text: str, duration: float, keys: int, probes: int) -> list[Point]:
    points = []
    for item in text.split(","):
        subs, rate = item.lower().split("x")
        points.append(Point(int(subs), int(rate), duration, keys, min(probes, int(subs))))
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--points", default=DEFAULT_POINTS, help=f"SUBSxRATE,... [{DEFAULT_POINTS}]"
    )
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per point")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument(
        "--ramp",
        type=int,
        default=10,
        help="subscriptions per client process awaiting their snapshot at once (0: all)",
    )
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--probes", type=int, default=50, help="fully decoding subscribers")
    parser.add_argument(
        "--full-decode",
        action="store_true",
        help="probes decode every message with protobuf themselves (costs client CPU)",
    )
    parser.add_argument(
        "--window", type=int, default=0, help="clients' HTTP/2 stream window (0: gRPC default)"
    )
    parser.add_argument(
        "--min-interval-ms",
        type=int,
        default=0,
        help="subscribers ask for at most one update per this many ms (0: every batch)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="server alone on core 0; broker, clients and producer on the others",
    )
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--channels", type=int, default=2, help="gRPC channels per process")
    parser.add_argument(
        "--broker", choices=["kafka", "tansu", "both"], default="kafka", help="[kafka]"
    )
    parser.add_argument(
        "--storm",
        type=int,
        default=1000,
        help="then open this many subscriptions at once, no load (0: skip) [1000]",
    )
    parser.add_argument("--bootstrap", help="use this running broker instead of starting one")
    parser.add_argument("--broker-pid", type=int, default=0, help="its pid, for its CPU")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_POINTS}, 10 s each")
    parser.add_argument("--out", default="fanout", help="results/NAME.json [fanout]")
    parser.add_argument("--append", action="store_true", help="add to that file's results")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.duration = QUICK_POINTS, 10.0
    points = parse_points(args.points, args.duration, args.keys, args.probes)
    if args.storm:
        points.append(Point(args.storm, 0, 0.0, args.keys, 0, storm=True))

    from support.brokers import ApacheKafka, TansuBroker

    kinds = ["kafka", "tansu"] if args.broker == "both" else [args.broker]
    results: list[dict[str, Any]] = []
    run = 0
    for kind in kinds:
        broker: Any
        if args.bootstrap:
            broker = ExternalBroker(kind, args.bootstrap, args.broker_pid)
        else:
            broker = ApacheKafka(heap="1g") if kind == "kafka" else TansuBroker()
        with broker:
            for point in points:
                run += 1
                try:
                    results.append(
                        run_point(
                            broker,
                            point,
                            run,
                            Options(
                                args.procs,
                                args.channels,
                                args.warmup,
                                args.ramp,
                                args.full_decode,
                                args.window,
                                args.pin,
                                args.min_interval_ms,
                            ),
                        )
                    )
                except Exception as exc:
                    traceback.print_exc()
                    results.append({"point": asdict(point), "broker": kind, "error": repr(exc)})
    if args.append:
        import json

        from benchmarks._common import RESULTS

        previous = RESULTS / f"{args.out}.json"
        if previous.exists():
            old = json.loads(previous.read_text())
            results = [*old.get("results", []), *results]
            argv = [*(argv or sys.argv[1:]), "(appended to: " + old.get("command", "") + ")"]
    path = write_result(
        args.out,
        {
            "benchmark": "fanout",
            "source": source_state(),
            "command": " ".join(["python -m benchmarks.fanout", *(argv or sys.argv[1:])]),
            "results": results,
        },
    )
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
