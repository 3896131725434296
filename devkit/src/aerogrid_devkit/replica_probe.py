"""What the supervisor reads from each running replica over loopback HTTP.

`/metrics` (the counters a developer watches), `/readyz` (what a serving app lacks) and
`GET /replica` (its role and how far its copy lags the changelog). A runtime without
`/replica` answers 404: the role stays "?" and nothing else changes.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from aerogrid.net import LOOPBACK_HOST
from aerogrid_devkit.app_process import UNKNOWN_ROLE, AppStats, ReplicaProcess

__all__ = ["http_get", "probe_replica", "readiness_detail"]

#: The role (and lag) `/readyz` states first, e.g. "ready: standby, lag 0; degraded: ...".
_ROLE_DETAIL: Final = re.compile(r"^(active|standby|serve-only|starting)(, lag \d+)?[;,]?\s*")


async def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> str:
    """A tiny HTTP/1.0 GET for loopback scrapes (no client library in the loop for this)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise ValueError(f"GET {path}: {head[:80]!r}")
    return body.decode()


def readiness_detail(body: str) -> str:
    """What `/readyz` says beyond ready and the role: "" for a healthy replica."""
    detail = body.strip().removeprefix("ready").removeprefix(":").strip()
    return _ROLE_DETAIL.sub("", detail)


async def probe_replica(replica: ReplicaProcess, interval: float) -> bool:
    """Read a running replica's counters and role into it; False when it did not answer."""
    port = replica.ports.get("http")
    if port is None:
        return False
    try:
        text = await http_get(LOOPBACK_HOST, port, "/metrics")
        ready = await http_get(LOOPBACK_HOST, port, "/readyz")
    except (OSError, ValueError):
        return False
    report = await _replica_report(port)
    totals = _totals(text)
    records_in = totals.get("aerogrid_records_in", 0.0)
    replica.stats = AppStats(
        records_in=records_in,
        records_per_s=max(0.0, records_in - replica.stats.records_in) / interval,
        errors=totals.get("aerogrid_decode_errors", 0.0)
        + totals.get("aerogrid_handler_errors", 0.0)
        + totals.get("aerogrid_task_errors", 0.0),
        dead_lettered=totals.get("aerogrid_dead_lettered", 0.0),
        health=readiness_detail(ready),
    )
    replica.role = str(report.get("role") or UNKNOWN_ROLE)
    grids = report.get("grids")
    lags = [
        grid["lag"]
        for grid in (grids.values() if isinstance(grids, dict) else ())
        if isinstance(grid, dict) and isinstance(grid.get("lag"), int)
    ]
    replica.lag = max(lags) if lags else (0 if grids == {} else None)
    pid = report.get("pid")
    replica.reported_pid = pid if isinstance(pid, int) else None
    return True


async def _replica_report(port: int) -> dict[str, Any]:
    """`GET /replica` as a dict ({} from a runtime that has none, or a bad answer)."""
    try:
        found = json.loads(await http_get(LOOPBACK_HOST, port, "/replica"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _totals(metrics_text: str) -> dict[str, float]:
    """Each counter/gauge family summed over its labels (`_total` samples for counters)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue
            totals[family.name] = totals.get(family.name, 0.0) + sample.value
    return totals
