"""Fan-out with replicas: the fan-out benchmark's points served by 1, 2 and 3 processes.

The same load as `benchmarks.fanout` (its ticker app, paced producer, client processes
and convergence check, imported from there), but the app runs as a replica set of
`--servers` processes (the active and standbys, each serving its own copy) and the
subscribers are split evenly over them: client process i subscribes at server i % N.
The machine has two cores shared by every process, so the total cannot scale with the
servers here; what is reported is what does: rows delivered per second **per server
core** (rows received by all subscribers / the server processes' CPU seconds), which is
what a deployment with each replica on its own machine multiplies by its cores.

Every subscriber's copy is compared with its server's snapshot, every server's with the
producer's last values (exact), as in `benchmarks.fanout`.

    .venv/bin/python -m benchmarks.replicas_fanout                       # about 12 minutes
    .venv/bin/python -m benchmarks.replicas_fanout --points 1000x10000 --servers 1,3
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sys
import time
import traceback
from array import array
from dataclasses import asdict
from typing import Any

from benchmarks._common import REPO, recv_message, wait_metric, write_result
from benchmarks._procstats import RssSampler, Window, cpu_seconds, mib, source_state, wait_quiet
from benchmarks._replicas import result_name
from benchmarks.fanout import (
    GRID,
    TICKER_APP,
    ClientConfig,
    Point,
    ProducerConfig,
    _grid_seq,
    _produce_sync,
    _server_state,
    client_main,
    digest,
    parse_points,
    percentiles,
    producer_main,
)

DEFAULT_POINTS = "300x10000,1000x1000,1000x10000"


def _start_servers(count: int, bootstrap: str, env: dict[str, str]) -> list[Any]:
    from support.apps import RunningApp

    servers = []
    for index in range(count):
        server = RunningApp(
            TICKER_APP,
            bootstrap,
            env={**env, "AEROGRID_REPLICA_ID": f"{env['BENCH_APP']}-{index}"},
            extra_args=("--log-level", "WARNING"),
        )
        servers.append(server)
        server.start()
    return servers


def _wait_seq(servers: list[Any], app: str, seq: int, timeout: float) -> bool:
    """Whether every server's grid reaches `seq` (standbys follow the active's cycles)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(asyncio.run(_grid_seq(s.target, app)) >= seq for s in servers):
            return True
        time.sleep(0.2)
    return False


def run_point(
    broker: Any, point: Point, count: int, run: int, procs: int, warmup: float
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    app_name = f"rfan{run}-{os.getpid()}"
    topic = f"{app_name}.ticks"
    env = {"BENCH_APP": app_name, "BENCH_TOPIC": topic, "BENCH_PARTITIONS": "1"}
    print(f"\n== {point.label} over {count} serving process(es)", flush=True)
    servers = _start_servers(count, broker.bootstrap, env)
    try:
        server_pids = [s.proc.pid for s in servers]
        prefill = _produce_sync(
            ctx, ProducerConfig(broker.bootstrap, topic, point.keys, rate=0, duration=0)
        )
        labels = {"app": app_name, "grid": GRID}
        for server in servers:
            if not wait_metric(server, "aerogrid_grid_rows", labels, point.keys, 60):
                raise RuntimeError(f"prefill not applied:\n{server.log_tail()}")
        quiet_others = wait_quiet([*server_pids, *([broker.pid] if broker.pid else [])])
        clients = []
        per = [point.subscribers // procs + (i < point.subscribers % procs) for i in range(procs)]
        probes = [point.probes // procs + (i < point.probes % procs) for i in range(procs)]
        first = 0
        for i, (n, probe_count) in enumerate(zip(per, probes, strict=True)):
            parent, child = ctx.Pipe()
            config = ClientConfig(
                servers[i % count].target, app_name, first, n, min(probe_count, n), 2, 300.0, 10
            )
            proc = ctx.Process(target=client_main, args=(config, child), daemon=True)
            proc.start()
            clients.append((proc, parent, i % count))
            first += n
        ready = [recv_message(conn, 330, f"client {proc.pid}")[1] for proc, conn, _ in clients]
        pparent, pchild = ctx.Pipe()
        producer = ctx.Process(
            target=producer_main,
            args=(
                ProducerConfig(
                    broker.bootstrap, topic, point.keys, point.rate, warmup + point.duration
                ),
                pchild,
            ),
            daemon=True,
        )
        producer.start()
        recv_message(pparent, 60, "producer")
        assert producer.pid is not None
        names = {f"server{i}": [pid] for i, pid in enumerate(server_pids)}
        pids = {
            **names,
            "broker": [broker.pid] if broker.pid else [],
            "clients": [proc.pid for proc, _, _ in clients],
        }
        pparent.send("go")
        time.sleep(warmup)
        sampler = RssSampler(names)
        sampler.start()
        window = Window(pids)
        producer_cpu_before = cpu_seconds(producer.pid)
        window.start()
        for _, conn, _ in clients:
            conn.send(("measure", 0))
        produced = recv_message(pparent, warmup + point.duration + 120, "producer")[1]
        producer.join(10)
        total_in = point.keys + produced["records"]
        drained = wait_metric(
            servers[0], "aerogrid_records_in_total", {"app": app_name}, total_in, 120
        )
        window.stop()
        sampler.stop()
        final_seq = asyncio.run(_grid_seq(servers[0].target, app_name))
        followed = _wait_seq(servers, app_name, final_seq, 60)
        for _, conn, _ in clients:
            conn.send(("finish", final_seq))
        results = [recv_message(conn, 300, f"client {proc.pid}")[1] for proc, conn, _ in clients]
        for proc, _, _ in clients:
            proc.join(10)
        states = [asyncio.run(_server_state(s.target, app_name)) for s in servers]
    finally:
        for server in servers:
            server.stop()
            server.__exit__(None, None, None)

    expected = {k: (float(v[0]), float(v[1])) for k, v in prefill["last"].items()}
    expected.update({k: (float(v[0]), float(v[1])) for k, v in produced["last"].items()})
    digests = [digest(state) for state in states]
    converged = 0
    subs_total = 0
    rows_total = 0
    row_latency: array[float] = array("d")
    errors: set[str] = set()
    for (_, _, server_index), result in zip(clients, results, strict=True):
        row_latency.frombytes(result["row_latency"])
        for sub in result["subs"]:
            subs_total += 1
            rows_total += sub["rows"]
            converged += sub["digest"] == digests[server_index] and not sub["error"]
            if sub["error"]:
                errors.add(sub["error"])
    cpu = window.percent()
    servers_cpu = sum(cpu[name] for name in names)
    rows_per_s = rows_total / window.wall
    summary = {
        "point": asdict(point),
        "serving_processes": count,
        "client_processes": procs,
        "subscribers_ready": sum(ready),
        "produce_rate": produced["rate"],
        "latency_row_probe": percentiles(row_latency),
        "rows_received": rows_total,
        "rows_received_per_s": round(rows_per_s),
        "servers_cpu_percent": round(servers_cpu, 1),
        "cpu_percent": {
            **cpu,
            "producer": round(
                100
                * (produced["cpu_seconds"] - producer_cpu_before)
                / max(produced["seconds"] - warmup, 1e-9),
                1,
            ),
        },
        "rows_per_s_per_server_core": round(rows_per_s / max(servers_cpu / 100, 1e-9)),
        "machine_cpu_percent_of_all_cores": window.machine(),
        "rss_mib_peak": {k: mib(v) for k, v in sampler.peak.items()},
        "server_drained": drained,
        "standbys_reached_final_seq": followed,
        "servers_equal": len(set(digests)) == 1,
        "servers_match_producer": all(state == expected for state in states),
        "converged": f"{converged}/{subs_total}",
        "errors": sorted(errors)[:3],
        "other_processes_cores_before_start": quiet_others,
        "load_wall_s": round(window.wall, 1),
    }
    print(
        f"   {count} server(s): rows/s {summary['rows_received_per_s']:,}, servers CPU "
        f"{summary['servers_cpu_percent']}% ({ {k: cpu[k] for k in names} }), rows/s per server "
        f"core {summary['rows_per_s_per_server_core']:,}, p50/p99 "
        f"{summary['latency_row_probe'].get('p50_ms')}/{summary['latency_row_probe'].get('p99_ms')}"
        f" ms, converged {summary['converged']}, exact {summary['servers_match_producer']}",
        flush=True,
    )
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--points", default=DEFAULT_POINTS, help=f"SUBSxRATE,... [{DEFAULT_POINTS}]"
    )
    parser.add_argument("--servers", default="1,2,3", help="serving processes per point [1,2,3]")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of load per point")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument(
        "--procs", type=int, default=6, help="client processes (divisible by 1,2,3)"
    )
    parser.add_argument("--out", default="fanout", help="results/replicas/NAME.json")
    args = parser.parse_args(argv)
    points = parse_points(args.points, args.duration, 10_000, 50)
    counts = [int(c) for c in args.servers.split(",")]

    from support.brokers import ApacheKafka

    results: list[dict[str, Any]] = []
    run = 0
    with ApacheKafka(heap="1g") as broker:
        for point in points:
            for count in counts:
                run += 1
                try:
                    results.append(run_point(broker, point, count, run, args.procs, args.warmup))
                except Exception as exc:
                    traceback.print_exc()
                    results.append(
                        {"point": asdict(point), "serving_processes": count, "error": repr(exc)}
                    )
    path = write_result(
        result_name(args.out),
        {
            "benchmark": "replicas_fanout",
            "source": source_state(),
            "broker": "Apache Kafka, exactly-once",
            "command": " ".join(["python -m benchmarks.replicas_fanout", *(argv or sys.argv[1:])]),
            "results": results,
        },
    )
    print(f"\nwrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
