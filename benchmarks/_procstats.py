"""CPU and memory of the processes a benchmark runs, read with psutil from the outside.

CPU is measured as the difference of a process's cumulative CPU time (user + system,
all threads) between two marks, so it is exact rather than sampled; RSS is sampled
on a background thread, because its peak is what matters and it moves between marks.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil  # type: ignore[import-untyped]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by `pid` (0 when it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


@dataclass
class Window:
    """CPU used by named processes between `start()` and `stop()`."""

    pids: dict[str, list[int]]
    began: float = 0.0
    ended: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _end: dict[str, float] = field(default_factory=dict)
    _machine_start: Any = None
    _machine_end: Any = None

    def _read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}

    def start(self) -> None:
        self._start = self._read()
        self._machine_start = psutil.cpu_times()
        self.began = time.monotonic()

    def stop(self) -> None:
        self._end = self._read()
        self._machine_end = psutil.cpu_times()
        self.ended = time.monotonic()

    def machine(self) -> dict[str, float]:
        """The whole machine over the window, in % of all cores (busy, idle, softirq...)."""
        start, end = self._machine_start, self._machine_end
        deltas = {f: getattr(end, f) - getattr(start, f) for f in end._fields}
        total = max(sum(deltas.values()), 1e-9)
        out = {f: round(100 * v / total, 1) for f, v in deltas.items() if v > 0}
        out["busy"] = round(100 - out.get("idle", 0.0) - out.get("iowait", 0.0), 1)
        return out

    @property
    def wall(self) -> float:
        return self.ended - self.began

    def percent(self) -> dict[str, float]:
        """CPU% of each name over the window (100 = one core busy the whole time)."""
        wall = max(self.wall, 1e-9)
        return {
            name: round(100.0 * (self._end[name] - self._start[name]) / wall, 1)
            for name in self.pids
        }


class RssSampler(threading.Thread):
    """Samples the RSS of named processes every `interval` seconds; keeps the peak."""

    def __init__(self, pids: dict[str, list[int]], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak: dict[str, int] = dict.fromkeys(pids, 0)
        self.last: dict[str, int] = dict.fromkeys(pids, 0)
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for name, pids in self.pids.items():
            value = sum(rss_bytes(p) for p in pids)
            self.last[name] = value
            self.peak[name] = max(self.peak[name], value)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def machine_busy_cores(seconds: float = 1.0) -> float:
    """How many cores the whole machine keeps busy over `seconds` (all processes)."""
    start = psutil.cpu_times()
    time.sleep(seconds)
    end = psutil.cpu_times()
    deltas = {f: getattr(end, f) - getattr(start, f) for f in end._fields}
    total = max(sum(deltas.values()), 1e-9)
    idle = deltas.get("idle", 0.0) + deltas.get("iowait", 0.0)
    return float((total - idle) / total * (psutil.cpu_count() or 1))


def wait_quiet(own_pids: list[int], limit: float = 0.3, timeout: float = 60.0) -> float:
    """Wait until processes other than ours use under `limit` cores (others share the box).

    Returns the other load when it went quiet, or the last one seen at the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        before = sum(cpu_seconds(p) for p in own_pids)
        began = time.monotonic()
        busy = machine_busy_cores(1.0)
        own = (sum(cpu_seconds(p) for p in own_pids) - before) / (time.monotonic() - began)
        others = max(0.0, busy - own)
        if others < limit or time.monotonic() > deadline:
            return round(others, 2)
        print(f"   waiting: other processes keep {others:.1f} cores busy", flush=True)
        time.sleep(4)


def pin(pid: int, cores: set[int]) -> None:
    """Restrict every thread of `pid` (and threads it starts later) to `cores`."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task), cores)


def mib(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def source_state() -> dict[str, Any]:
    """The commit measured, and whether runtime/ had uncommitted changes (read-only git)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except OSError:
            return ""

    return {
        "commit": git("rev-parse", "HEAD"),
        "runtime_dirty": bool(git("status", "--porcelain", "runtime")),
    }
