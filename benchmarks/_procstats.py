"""CPU and memory of the processes a benchmark runs, read with psutil from the outside.

CPU is measured as the difference of a process's cumulative CPU time (user + system,
all threads) between two marks, so it is exact rather than sampled; RSS is sampled
on a background thread, because its peak is what matters and it moves between marks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil


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

    def _read(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(p) for p in pids) for name, pids in self.pids.items()}

    def start(self) -> None:
        self._start = self._read()
        self.began = time.monotonic()

    def stop(self) -> None:
        self._end = self._read()
        self.ended = time.monotonic()

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


def mib(value: float) -> float:
    return round(value / (1024 * 1024), 1)
