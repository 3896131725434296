"""Ingest by record format: the example app's job on JSON values vs Avro, Protobuf, JSON Schema.

benchmarks.ingest's method, one Apache Kafka and one real schema registry (Apicurio, the test
bed's): the same orders preloaded once per format into a topic of its own (the registry
formats written by confluent-kafka's serializers, the reference client), then contenders that
each consume a whole topic from the beginning in a process of their own, repeats interleaved:

* json: examples/ordersapp/app.py under `aerogrid run` (only its app and topic names changed);
* avro / protobuf / json-schema: the same app with `format=...` on its topic and
  AEROGRID_SCHEMA_REGISTRY set, nothing else changed;
* bare-avro: benchmarks/ingest_bare_avro.py, a bare aiokafka loop with fastavro (the floor);
* bare-json: benchmarks/ingest_bare.py with json.loads on the JSON topic (for scale).

AeroGrid is timed from outside (aerogrid_records_in_total polled every 50 ms) and its grid is
checked against the preload's sums: a wrong answer is a failure, not fast. Then AeroGrid's own
codec of each format decodes its topic's values in-process (µs per record, best of 3), the part
of the difference the format itself explains; `--profile FORMAT` adds a cProfile of one.

    .venv/bin/python -m benchmarks.ingest_formats [--records N] [--repeat R] [--only ...]

To measure a commit while the checkout changes, export it and put it first (children inherit):
`git archive HEAD runtime/src | tar -x -C DIR; PYTHONPATH=DIR/runtime/src python -m ...`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aerogrid
from benchmarks._common import REPO, write_result
from benchmarks.format_orders import FORMATS, codec_cost, encode_orders, format_app
from benchmarks.ingest import (
    QUIET_OTHERS,
    Bench,
    Run,
    _git_state,
    describe,
    make_orders,
    preloaded,
    run_aerogrid,
    run_bare,
    run_child,
    wait_for_quiet,
)
from support.brokers import ApacheKafka
from support.schema_registry import TestRegistry

CONTENDERS = ("json", "avro", "protobuf", "json-schema", "bare-avro", "bare-json")
LABELS = {
    "json": "AeroGrid, the example app, JSON values",
    "avro": "AeroGrid, the same app, format='avro'",
    "protobuf": "AeroGrid, the same app, format='protobuf'",
    "json-schema": "AeroGrid, the same app, format='json-schema'",
    "bare-avro": "bare aiokafka loop, fastavro (writer schema only)",
    "bare-json": "bare aiokafka loop, json.loads",
}
#: The topic each contender reads.
TOPIC_OF = {
    "json": "json",
    "avro": "avro",
    "protobuf": "protobuf",
    "json-schema": "json-schema",
    "bare-avro": "avro",
    "bare-json": "json",
}
#: The issue's goal: Avro values at least this share of the JSON rate.
AVRO_GOAL = 0.7
#: The ratios reported: by wall-clock rate, and by records per CPU second of the contender.
UNITS = (("wall", "s"), ("per_cpu", "cpu_s"))

Benches = dict[str, Bench]


def prepare(
    kafka: ApacheKafka,
    registry: TestRegistry,
    formats: set[str],
    records: int,
    partitions: int,
    workdir: Path,
) -> tuple[Benches, dict[str, list[bytes]]]:
    """One preloaded topic per format, checked, all holding the same orders (same sums);
    and each topic's values (for the in-process codec cost)."""
    orders, expected = make_orders(records)
    benches: Benches = {}
    written: dict[str, list[bytes]] = {}
    for fmt in ("json", *FORMATS):
        if fmt not in formats:
            continue
        topic = f"bench-orders-{fmt}-{uuid.uuid4().hex[:6]}"
        values = orders if fmt == "json" else encode_orders(fmt, orders, registry.url, topic)
        env = {} if fmt == "json" else {"AEROGRID_SCHEMA_REGISTRY": registry.url}
        benches[fmt] = preloaded(kafka, topic, values, expected, partitions, workdir, env)
        written[fmt] = [v for _, v in values]
    return benches, written


def run_bare_avro(bench: Bench, run: Run) -> None:
    """benchmarks/ingest_bare_avro.py in a process of its own."""
    result = bench.workdir / f"{run.contender}-{run.repeat}-{uuid.uuid4().hex[:4]}.json"
    registry = bench.aerogrid_env["AEROGRID_SCHEMA_REGISTRY"]
    argv = [sys.executable, "-m", "benchmarks.ingest_bare_avro", bench.kafka.bootstrap]
    argv += [bench.topic, str(bench.records), str(result), registry]
    run_child(bench, run, argv, {}, result, REPO)


def runner(contender: str, exactly_once: str) -> Callable[[Bench, Run], None]:
    if contender == "json":
        return lambda bench, run: run_aerogrid(bench, run, exactly_once)
    if contender in FORMATS:
        make = format_app(contender)
        return lambda bench, run: run_aerogrid(bench, run, exactly_once, make)
    if contender == "bare-avro":
        return run_bare_avro
    return lambda bench, run: run_bare(bench, run, "json")


def execute(benches: Benches, run: Run, exactly_once: str, quiet_wait: float) -> None:
    """One contender's pass; any exception makes the run a failure, never a crash."""
    if quiet_wait > 0:
        run.extra["machine_busy_before"] = wait_for_quiet(quiet_wait)
    try:
        bench = benches[TOPIC_OF[run.contender]]
        runner(run.contender, exactly_once)(bench, run)
    except Exception as exc:
        run.ok, run.error = False, f"{type(exc).__name__}: {exc}"


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per contender: the median over verified repeats (and over the quiet ones), and CPU."""
    summary: dict[str, dict[str, Any]] = {}
    for name in CONTENDERS:
        mine = [r for r in runs if r.contender == name]
        if not mine:
            continue
        good = [r for r in mine if r.ok and r.records_per_s]
        quiet = [r for r in good if (r.others_cpu_percent or 0) < QUIET_OTHERS]
        # Records per CPU second of the contender's own process: what a record costs, which
        # holds still when other jobs take CPU from the run (the wall rate does not).
        per_cpu: list[float | None] = [
            r.records_per_s / (r.cpu_percent / 100)
            for r in good
            if r.cpu_percent and r.records_per_s
        ]
        summary[name] = {
            "label": LABELS[name],
            "ok": len(good) == len(mine),
            "errors": [r.error for r in mine if not r.ok],
            "records_per_s": _median([r.records_per_s for r in good]),
            "records_per_s_quiet": _median([r.records_per_s for r in quiet]),
            "records_per_cpu_s": _median(per_cpu),
            "each": [r.records_per_s for r in mine],
            "each_others_cpu_percent": [r.others_cpu_percent for r in mine],
            "cpu_percent": _median([r.cpu_percent for r in good]),
            "broker_cpu_percent": _median([r.broker_cpu_percent for r in good]),
            "startup_s": _median([r.startup_s for r in good]),
        }
    return summary


def ratios_vs_json(summary: dict[str, dict[str, Any]], key: str) -> dict[str, float | None]:
    """Each contender's `key` (records_per_s or records_per_cpu_s) over the JSON app's."""
    base = summary.get("json", {}).get(key)
    return {
        name: round(s[key] / base, 2) if base and s[key] else None for name, s in summary.items()
    }


def markdown(summary: dict[str, dict[str, Any]], ratio: dict[str, dict[str, float | None]]) -> str:
    lines = [
        "| contender | records/s (median) | quiet runs' median | each (others CPU %) "
        "| CPU % | broker CPU % | vs JSON | records per CPU s | vs JSON |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        rate = f"{s['records_per_s']:,.0f}" if s["ok"] and s["records_per_s"] else "FAILED"
        quiet = f"{q:,.0f}" if (q := s["records_per_s_quiet"]) else "-"
        each = ", ".join(
            ("failed" if v is None else f"{v:,.0f}") + f" ({o})"
            for v, o in zip(s["each"], s["each_others_cpu_percent"], strict=True)
        )
        lines.append(
            f"| {s['label']} | {rate} | {quiet} | {each} | {s['cpu_percent']} | "
            f"{s['broker_cpu_percent']} | {ratio['wall'].get(name) or '-'} | "
            f"{s['records_per_cpu_s'] or 0:,.0f} | {ratio['per_cpu'].get(name) or '-'} |"
        )
    for kind, what in (("wall", "records/s"), ("per_cpu", "records per CPU second")):
        if (avro := ratio[kind].get("avro")) is not None:
            met = "met" if avro >= AVRO_GOAL else "NOT met"
            lines.append(f"\nAvro / JSON, {what}: {avro} (goal >= {AVRO_GOAL}: {met})")
    for name, s in summary.items():
        lines += [f"\n{name} failed: {error}" for error in s["errors"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="orders per topic")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of each topic")
    parser.add_argument("--repeat", type=int, default=3, help="passes of every contender")
    parser.add_argument("--only", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--exactly-once", choices=("on", "off"), default="on")
    parser.add_argument("--quiet-wait", type=float, default=2.0, help="seconds to wait for idle")
    parser.add_argument("--profile", choices=("json", *FORMATS), help="cProfile that decode")
    parser.add_argument("--name", default="ingest_formats", help="benchmarks/results/NAME")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="aerogrid-bench-formats-"))
    formats = {TOPIC_OF[c] for c in args.only}
    runs: list[Run] = []
    registry = TestRegistry(persistent=False)
    try:
        registry.start()
        with ApacheKafka(heap="1g") as kafka:
            benches, values = prepare(
                kafka, registry, formats, args.records, args.partitions, workdir
            )
            print(
                f"Kafka {kafka.bootstrap}, registry {registry.url}: {args.records:,} orders "
                + ", ".join(f"{f} preloaded in {b.preload_s:.1f} s" for f, b in benches.items()),
                flush=True,
            )
            for name in args.only:  # warm-up: the broker's first transactions, imports
                warm = Run(name, 0)
                execute(benches, warm, args.exactly_once, 0)
                print(f"  [warm-up] {name:<12} {describe(warm)}", flush=True)
            for repeat in range(1, args.repeat + 1):
                for name in args.only:
                    run = Run(name, repeat)
                    execute(benches, run, args.exactly_once, args.quiet_wait)
                    runs.append(run)
                    print(f"  [{repeat}/{args.repeat}] {name:<12} {describe(run)}", flush=True)
            topics = {f: b.topic for f, b in benches.items()}
            try:
                cost, profile = codec_cost(values, registry.url, topics, args.profile)
            except Exception as exc:  # the rates above still count: say why this is missing
                cost, profile = {}, f"codec cost failed: {type(exc).__name__}: {exc}"
            kafka_version = kafka.version
    finally:
        registry.close()
        shutil.rmtree(workdir, ignore_errors=True)

    summary = summarize(runs)
    ratio = {key: ratios_vs_json(summary, f"records_per_{unit}") for key, unit in UNITS}
    path = write_result(
        args.name,
        {
            "benchmark": "ingest_formats",
            "records": args.records,
            "partitions": args.partitions,
            "repeat": args.repeat,
            "exactly_once": args.exactly_once,
            "kafka": kafka_version,
            "registry": "Apicurio Registry 2.4.2.Final (in-memory)",
            "serializers": f"confluent-kafka {version('confluent-kafka')}",
            "fastavro": version("fastavro"),
            "git": _git_state(),
            # Which aerogrid ran (PYTHONPATH may put an exported commit before the checkout).
            "aerogrid_path": str(Path(aerogrid.__file__).parent),
            "summary": summary,
            "ratio_vs_json": ratio,
            "avro_goal": AVRO_GOAL,
            "codec_us_per_record": cost,
            "profile": profile or None,
            "runs": [asdict(r) for r in runs],
        },
    )
    print()
    print(markdown(summary, ratio))
    print(
        "\nAeroGrid's decode alone, µs per record: "
        + ", ".join(f"{k} {v}" for k, v in cost.items())
    )
    if profile:
        print(profile)
    print(f"\nwritten {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
