"""The failover benchmark's subscribers and what their updates say about a SIGKILL.

The subscribers run in a process of their own (`Watchers`): each is a `GridClient` given
every replica's target, recording the time, the replica it is on and its resume counters
at every update; `summarize_kill` turns those records into the gaps around one kill.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from benchmarks._common import recv_message
from benchmarks._replicas import GRID

#: One update a subscriber received: (monotonic time, target index, resumes by delta so
#: far, resumes by snapshot so far, whether it carried data: a snapshot or changed rows;
#: a resume at the server's seq gets an empty delta, which says the stream is back but
#: is not an update).
Event = tuple[float, int, int, int, bool]


# -- subscribers (one process) ---------------------------------------------------------


@dataclass(frozen=True)
class WatchConfig:
    targets: tuple[str, ...]
    app: str
    count: int


async def _watch(
    config: WatchConfig, events: list[Event], final: dict[str, Any], errors: list[str]
) -> None:
    from aerogrid.client import GridClient

    index = {t: i for i, t in enumerate(config.targets)}
    rows: dict[str, Any] = {}
    try:
        async with GridClient(list(config.targets), reconnect_delay=0.2) as client:
            async for update in client.subscribe(config.app, GRID):
                rows = update.apply_to(rows)
                final["rows"] = rows
                events.append(
                    (
                        time.monotonic(),
                        index.get(client.endpoint or "", -1),
                        client.resumes["delta"],
                        client.resumes["snapshot"],
                        update.snapshot or bool(update.upserts or update.deletes),
                    )
                )
                final.setdefault("epochs", set()).add(update.epoch)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}"[:300])


async def _watch_all(config: WatchConfig, conn: Connection) -> None:
    loop = asyncio.get_running_loop()
    events: list[list[Event]] = [[] for _ in range(config.count)]
    finals: list[dict[str, Any]] = [{} for _ in range(config.count)]
    errors: list[list[str]] = [[] for _ in range(config.count)]
    tasks = [
        asyncio.create_task(_watch(config, events[i], finals[i], errors[i]))
        for i in range(config.count)
    ]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(events):  # noqa: ASYNC110 (polls lists)
        await asyncio.sleep(0.05)
    conn.send(("ready", [e[-1][1] if e else -1 for e in events]))
    await loop.run_in_executor(None, conn.recv)  # "stop"
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = [
        {
            "events": events[i],
            "rows": {
                k: (int(v["units_sold"]), int(v["orders"]))
                for k, v in finals[i].get("rows", {}).items()
            },
            "errors": errors[i],
            "epochs": len(finals[i].get("epochs", ())),
        }
        for i in range(config.count)
    ]
    conn.send(("result", result))


def watch_main(config: WatchConfig, conn: Connection) -> None:
    try:
        asyncio.run(_watch_all(config, conn))
    except Exception:
        conn.send(("error", traceback.format_exc()))


class Watchers:
    """The subscriber process: started, then stopped with every subscriber's events."""

    def __init__(self, ctx: Any, config: WatchConfig) -> None:
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=watch_main, args=(config, child), daemon=True)

    def start(self) -> list[int]:
        self.proc.start()
        spread: list[int] = recv_message(self._conn, 90, "subscribers")[1]
        return spread

    def stop(self) -> list[dict[str, Any]]:
        self._conn.send("stop")
        result: list[dict[str, Any]] = recv_message(self._conn, 60, "subscribers")[1]
        self.proc.join(10)
        return result


# -- analysis ------------------------------------------------------------------------


def _at(events: list[Event], when: float) -> Event | None:
    """The last event before `when`."""
    before = [e for e in events if e[0] < when]
    return before[-1] if before else None


def gap_after(events: list[Event], kill: float, until: float) -> tuple[float, float] | None:
    """The longest time without an update (data) from the last one before `kill` to `until`,
    and when (after `kill`) that gap began."""
    data = [e for e in events if e[4]]
    last = _at(data, kill)
    if last is None:
        return None
    times = [last[0], *(e[0] for e in data if kill <= e[0] <= until), until]
    gap, began = max((b - a, a) for a, b in itertools.pairwise(times))
    return round(gap, 3), round(began - kill, 3)


def first_after(events: list[Event], kill: float, *, data: bool) -> Event | None:
    """The first event of the stream resumed after `kill` (with `data`: the first that
    carries data). Messages already in flight from the killed process do not count."""
    last = _at(events, kill)
    resumes = (last[2] + last[3]) if last else 0
    return next(
        (e for e in events if e[0] >= kill and e[2] + e[3] > resumes and (e[4] or not data)),
        None,
    )


def summarize_kill(
    subs: list[dict[str, Any]], victim: int, kill: float, until: float
) -> dict[str, Any]:
    """What the subscribers saw of one SIGKILL: survivors' gap, the victim's resume."""
    survivors: list[tuple[float, float]] = []
    moved: list[float] = []
    updated: list[float] = []
    victim_gaps: list[tuple[float, float]] = []
    disconnects = 0
    resumed = {"delta": 0, "snapshot": 0}
    steady: list[float] = []
    for sub in subs:
        events: list[Event] = sub["events"]
        last = _at(events, kill)
        if last is None:
            continue
        before = [e[0] for e in events if e[4] and kill - 3 <= e[0] < kill]
        steady.extend(b - a for a, b in itertools.pairwise(before))
        after = [e for e in events if kill <= e[0] <= until]
        end = after[-1] if after else last
        reconnected = (end[2] + end[3]) - (last[2] + last[3])
        if last[1] != victim:
            gap = gap_after(events, kill, until)
            if gap is not None:
                survivors.append(gap)
            disconnects += reconnected > 0
            continue
        back = first_after(events, kill, data=False)
        moved.append(round((back[0] - kill) if back else until - kill, 3))
        first = first_after(events, kill, data=True)
        updated.append(round((first[0] - kill) if first else until - kill, 3))
        gap = gap_after(events, kill, until)
        if gap is not None:
            victim_gaps.append(gap)
        resumed["delta"] += end[2] - last[2]
        resumed["snapshot"] += end[3] - last[3]
    return {
        "steady_gap_p50_ms": round(1000 * statistics.median(steady), 1) if steady else None,
        "steady_gap_max_ms": round(1000 * max(steady), 1) if steady else None,
        "survivor_subscribers": len(survivors),
        "survivor_gap_max_s": max(survivors)[0] if survivors else None,
        "survivor_gap_max_began_after_kill_s": max(survivors)[1] if survivors else None,
        "survivor_gap_p50_s": round(statistics.median(g for g, _ in survivors), 3)
        if survivors
        else None,
        "survivor_disconnects": disconnects,
        "victim_subscribers": len(moved),
        "victim_stream_back_after_max_s": max(moved) if moved else None,
        "victim_stream_back_after_p50_s": round(statistics.median(moved), 3) if moved else None,
        "victim_updates_again_after_max_s": max(updated) if updated else None,
        "victim_updates_again_after_p50_s": round(statistics.median(updated), 3)
        if updated
        else None,
        "victim_gap_max_s": max(victim_gaps)[0] if victim_gaps else None,
        "victim_gap_max_began_after_kill_s": max(victim_gaps)[1] if victim_gaps else None,
        "victim_gap_p50_s": round(statistics.median(g for g, _ in victim_gaps), 3)
        if victim_gaps
        else None,
        "victim_resumes": resumed,
    }


def check_copies(subs: list[dict[str, Any]], server: dict[str, Any]) -> dict[str, Any]:
    copies = [s["rows"] == server for s in subs]
    return {
        "subscribers_equal_server": f"{sum(copies)}/{len(subs)}",
        "subscriber_errors": sorted({e for s in subs for e in s["errors"]})[:3],
        "subscribers_that_saw_two_epochs": sum(s["epochs"] > 1 for s in subs),
    }
