"""Failover gap: how long subscribers go without an update when a process of an app dies.

Issue 14's measure, on Apache Kafka: three `aerogrid run` processes of the orders app
(`tests/support/apps.ORDERS_TEMPLATE`), orders at `--rate` (1,000/s) over 100 products,
`--subscribers` `GridClient` subscriptions (90), each its own client given all three
targets, so they spread over the processes the way real clients do (a random start).
Then:

1. SIGKILL the active. For subscribers on the two surviving processes: the longest time
   any goes without an update (the gap spanning the kill), and how many lost their
   stream (must be 0). For those on the killed one: time to their next update.
   The server side: time until a survivor reports itself active (`GET /replica`).
2. SIGKILL the standby. Its subscribers reconnect (GridClient moves to the next target at
   once) and resume from (epoch, seq): time to their next update, and whether the
   resume was served from deltas or a snapshot.
3. Side by side, one process today: SIGKILL and restart at once on the same ports (what
   a supervisor does, with no backoff), its subscribers retrying with GridClient's
   backoff: the gap until they get updates again, restore included.

Each at `AEROGRID_FAILOVER_SECONDS` 3 (the default) and 2 (`--failover`). At the end
every replica's grid is compared with the feed's sums (exact: nothing lost or counted
twice) and every subscriber's copy with its server's.

    .venv/bin/python -m benchmarks.failover                 # about 10 minutes
    .venv/bin/python -m benchmarks.failover --failover 3 --repeat 1 --skip-single
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, write_result
from benchmarks._procstats import source_state, wait_quiet
from benchmarks._replicas import (
    Feed,
    FeedConfig,
    ReplicaSet,
    broker_min_session_ms,
    grid_rows,
    result_name,
    wait_exact,
)
from benchmarks._watchers import WatchConfig, Watchers, check_copies, summarize_kill

# -- runs ------------------------------------------------------------------------------


def _wait_role(members: list[Any], role: str, since: float, timeout: float) -> float | None:
    """Seconds from `since` until one of `members` reports `role` (GET /replica)."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        for member in members:
            try:
                if member.replica().get("role") == role:
                    return round(time.monotonic() - since, 3)
            except Exception:
                pass
        time.sleep(0.02)
    return None


def run_replicas(broker: Any, options: Options, failover: float, folder: Path) -> dict[str, Any]:
    """Three processes: SIGKILL the active, then the standby."""
    ctx = mp.get_context("spawn")
    app = f"fo{uuid.uuid4().hex[:6]}"
    env = {"AEROGRID_FAILOVER_SECONDS": str(failover)}
    print(f"\n== 3 processes, AEROGRID_FAILOVER_SECONDS={failover:g}", flush=True)
    with ReplicaSet(folder, broker.bootstrap, app, env=env) as replicas:
        for _ in range(3):
            replicas.add()
        after_active = failover + options.settle
        feed = Feed(ctx, FeedConfig(broker.bootstrap, replicas.topic, options.rate, 300))
        feed.start()
        feed.go()
        watchers = Watchers(ctx, WatchConfig(tuple(replicas.targets), app, options.subscribers))
        spread = watchers.start()
        time.sleep(options.warmup)
        roles = [replicas.role(m) for m in replicas.members]
        failovers_before = sum(_failovers(m) for m in replicas.members)
        active = roles.index("active")
        kill1 = time.monotonic()
        replicas.members[active].kill()
        survivors = [m for i, m in enumerate(replicas.members) if i != active]
        elected_after = _wait_role(survivors, "active", kill1, after_active + 10)
        time.sleep(max(0.0, kill1 + after_active - time.monotonic()))
        roles2 = [
            replicas.role(m) if i != active else "killed" for i, m in enumerate(replicas.members)
        ]
        standby = roles2.index("standby")
        kill2 = time.monotonic()
        replicas.members[standby].kill()
        time.sleep(options.settle)
        end2 = time.monotonic()
        feed.stop()
        produced = feed.result()
        last = next(m for i, m in enumerate(replicas.members) if i not in (active, standby))
        exact = wait_exact(last.target, app, produced["sums"], 60)
        time.sleep(1.5)
        subs = watchers.stop()
        server = asyncio.run(grid_rows(last.target, app))
    result = {
        "processes": 3,
        "failover_seconds": failover,
        "spread_over_processes": [spread.count(i) for i in range(3)],
        "roles_at_first_kill": roles,
        "roles_at_second_kill": roles2,
        "failovers_before_first_kill": failovers_before,
        "feed": {k: v for k, v in produced.items() if k != "sums"},
        "kill_active": {
            "new_active_reported_after_s": elected_after,
            **summarize_kill(subs, active, kill1, kill2),
        },
        "kill_standby": summarize_kill(subs, standby, kill2, end2),
        "grid_exact": exact,
        **check_copies(subs, server),
        "machine_load_1m_at_end": round(os.getloadavg()[0], 1),
    }
    print(f"   {result}", flush=True)
    return result


def _failovers(member: Any) -> int:
    """How often this process became the active after another (GET /replica)."""
    try:
        return int(member.replica().get("failovers", 0))
    except Exception:
        return 0


def run_single(broker: Any, options: Options, failover: float, folder: Path) -> dict[str, Any]:
    """One process: SIGKILL, restart at once on the same ports, restore, serve again."""
    from support.brokers import free_port

    ctx = mp.get_context("spawn")
    app = f"fo{uuid.uuid4().hex[:6]}"
    env = {"AEROGRID_FAILOVER_SECONDS": str(failover)}
    port = free_port()
    http = free_port()
    print(f"\n== 1 process, restart at once, AEROGRID_FAILOVER_SECONDS={failover:g}", flush=True)
    ports = ("--port", str(port), "--http-port", str(http))
    with ReplicaSet(folder, broker.bootstrap, app, env=env) as replicas:
        only = replicas.add(extra_args=ports)
        feed = Feed(ctx, FeedConfig(broker.bootstrap, replicas.topic, options.rate, 300))
        feed.start()
        feed.go()
        watchers = Watchers(ctx, WatchConfig((only.target,), app, options.subscribers))
        watchers.start()
        time.sleep(options.warmup)
        kill = time.monotonic()
        only.kill()
        only.start(120, wait_active=False)
        ready_after = round(time.monotonic() - kill, 3)
        active_after = _wait_role([only], "active", kill, 60)
        time.sleep(max(0.0, kill + options.single_wait + failover - time.monotonic()))
        end = time.monotonic()
        feed.stop()
        produced = feed.result()
        exact = wait_exact(only.target, app, produced["sums"], 60)
        time.sleep(1.5)
        subs = watchers.stop()
        server = asyncio.run(grid_rows(only.target, app))
    result = {
        "processes": 1,
        "failover_seconds": failover,
        "feed": {k: v for k, v in produced.items() if k != "sums"},
        "kill_restart": {
            "restarted_ready_after_s": ready_after,
            "active_again_after_s": active_after,
            **summarize_kill(subs, 0, kill, end),
        },
        "grid_exact": exact,
        **check_copies(subs, server),
        "machine_load_1m_at_end": round(os.getloadavg()[0], 1),
    }
    print(f"   {result}", flush=True)
    return result


@dataclass(frozen=True)
class Options:
    rate: int = 1000
    subscribers: int = 90
    warmup: float = 5.0
    #: Seconds watched after the election (and after the standby's kill).
    settle: float = 6.0
    #: One process: seconds watched after the kill, beyond the failover timeout.
    single_wait: float = 12.0


def _median_of(results: list[dict[str, Any]], path: tuple[str, str]) -> float | None:
    values = [r[path[0]][path[1]] for r in results if r.get(path[0], {}).get(path[1]) is not None]
    return round(statistics.median(values), 3) if values else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failover", default="3,2", help="AEROGRID_FAILOVER_SECONDS values [3,2]")
    parser.add_argument("--rate", type=int, default=1000, help="orders/s [1000]")
    parser.add_argument("--subscribers", type=int, default=90, help="GridClient subscriptions")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each case [2]")
    parser.add_argument("--skip-single", action="store_true", help="no one-process comparison")
    parser.add_argument(
        "--broker-min-session-ms",
        type=int,
        default=0,
        help="set the broker's group.min.session.timeout.ms (6000: Apache Kafka's default; "
        "0: the test bed's 500)",
    )
    parser.add_argument("--out", default="failover", help="results/replicas/NAME.json")
    args = parser.parse_args(argv)
    options = Options(rate=args.rate, subscribers=args.subscribers)
    from support.brokers import ApacheKafka

    folder = Path(tempfile.mkdtemp(prefix="aerogrid-bench-failover-"))
    runs: list[dict[str, Any]] = []
    try:
        extra = (
            {"group.min.session.timeout.ms": str(args.broker_min_session_ms)}
            if args.broker_min_session_ms
            else {}
        )
        with ApacheKafka(heap="1g", extra_config=extra) as broker:
            min_session = broker_min_session_ms(broker)
            for _ in range(args.repeat):
                for value in (float(v) for v in args.failover.split(",")):
                    for case in (run_replicas, *(() if args.skip_single else (run_single,))):
                        others = wait_quiet([broker.pid] if broker.pid else [], 0.5, 90)
                        try:
                            runs.append(
                                {**case(broker, options, value, folder), "others_cores": others}
                            )
                        except Exception as exc:
                            traceback.print_exc()
                            runs.append(
                                {
                                    "case": case.__name__,
                                    "failover_seconds": value,
                                    "error": repr(exc),
                                }
                            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = {}
    for value in {r["failover_seconds"] for r in runs}:
        three = [r for r in runs if r["failover_seconds"] == value and r.get("processes") == 3]
        one = [r for r in runs if r["failover_seconds"] == value and r.get("processes") == 1]
        summary[f"{value:g}s"] = {
            "active_kill_survivor_gap_max_s": _median_of(
                three, ("kill_active", "survivor_gap_max_s")
            ),
            "active_kill_victim_updates_again_max_s": _median_of(
                three, ("kill_active", "victim_updates_again_after_max_s")
            ),
            "standby_kill_victim_updates_again_max_s": _median_of(
                three, ("kill_standby", "victim_updates_again_after_max_s")
            ),
            "active_kill_victim_gap_max_s": _median_of(three, ("kill_active", "victim_gap_max_s")),
            "standby_kill_survivor_gap_max_s": _median_of(
                three, ("kill_standby", "survivor_gap_max_s")
            ),
            "one_process_updates_again_max_s": _median_of(
                one, ("kill_restart", "victim_updates_again_after_max_s")
            ),
            "one_process_gap_max_s": _median_of(one, ("kill_restart", "victim_gap_max_s")),
            "runs": len(three) + len(one),
        }
    path = write_result(
        result_name(args.out),
        {
            "benchmark": "failover",
            "source": source_state(),
            "broker": "Apache Kafka (tests/support/brokers.ApacheKafka)",
            "broker_group_min_session_timeout_ms": min_session,
            "command": " ".join(["python -m benchmarks.failover", *(argv or sys.argv[1:])]),
            "summary_medians": summary,
            "runs": runs,
        },
    )
    print(f"\nsummary (medians over repeats): {summary}")
    print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
