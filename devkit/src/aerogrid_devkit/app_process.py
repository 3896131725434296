"""What the supervisor knows about an app and each of its processes (its replicas).

An app of the workspace runs as `[apps.NAME] replicas` processes (one by default), each
a `ReplicaProcess` with its own ports, ready file, restarts and counters, and the role
its `/replica` report gives (active, standby, serve-only; "?" while unknown). An
`AppProcess` is the app the user starts, stops and reloads: its status, ports and
counters are those of its replicas taken together (running when any replica runs), so
screens and clients that show one line per app need not know about replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["UNKNOWN_ROLE", "AppProcess", "AppStats", "ReplicaProcess", "kill_process_group"]

#: The role shown until a replica reports one (or when its runtime has no `/replica`).
UNKNOWN_ROLE: Final = "?"
#: A replica status ranks before the ones after it in the app's status (running first).
_STATUS_ORDER: Final = ("running", "reloading", "starting", "crashed", "stopped")


@dataclass
class AppStats:
    """What an app's /metrics said last (totals since it started, rate over the last poll)."""

    records_in: float = 0.0
    records_per_s: float = 0.0
    errors: float = 0.0
    dead_lettered: float = 0.0
    #: What a serving app's /readyz says it lacks (degraded, a weaker guarantee), or "".
    health: str = ""


@dataclass
class ReplicaProcess:
    """One process of an app: `AEROGRID_REPLICA_ID` is its `id`, NAME-<index>."""

    app: str
    #: 1..replicas.
    index: int
    status: str = "stopped"
    restarts: int = 0
    exit_code: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    reload_requested: bool = False
    stats: AppStats = field(default_factory=AppStats)
    #: active | standby | serve-only | starting, from `GET /replica`; UNKNOWN_ROLE before.
    role: str = UNKNOWN_ROLE
    #: Changelog records its copy is behind (the largest over its grids); None: unknown.
    lag: int | None = None
    #: The pid `/replica` reported (the runtime's own, even behind a bootloader).
    reported_pid: int | None = None

    @property
    def id(self) -> str:
        return f"{self.app}-{self.index}"

    @property
    def pid(self) -> int | None:
        """The pid of the running process (None when none runs)."""
        if self.process is None or self.process.returncode is not None:
            return None
        return self.reported_pid or self.process.pid

    def forget_report(self) -> None:
        """A new process: nothing it has reported yet."""
        self.ports = {}
        self.stats = AppStats()
        self.role, self.lag, self.reported_pid = UNKNOWN_ROLE, None, None


class AppProcess:
    """One supervised app: its replicas, its output, and whether the user stopped it."""

    def __init__(self, name: str, path: Path, replicas: int = 1) -> None:
        self.name = name
        self.path = path
        self.replicas = [ReplicaProcess(name, index) for index in range(1, replicas + 1)]
        #: The output of every replica (prefixed with the replica's id when there are several).
        self.logs: deque[str] = deque(maxlen=5000)
        #: Stopped by the user (`stop_app`): not restarted until `start_app`.
        self.held = False

    @property
    def status(self) -> str:
        """running when any replica runs; otherwise the most hopeful of theirs."""
        return min((r.status for r in self.replicas), key=_STATUS_ORDER.index)

    @property
    def ports(self) -> dict[str, int]:
        """The ports of the first running replica ({} when none runs)."""
        return next((r.ports for r in self.running()), {})

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        """The first replica's process (the only one unless `replicas` > 1)."""
        return self.replicas[0].process

    @property
    def restarts(self) -> int:
        return sum(r.restarts for r in self.replicas)

    @property
    def exit_code(self) -> int | None:
        """How the first crashed replica exited (else the first replica's last exit)."""
        crashed = [r for r in self.replicas if r.status == "crashed"]
        return (crashed or self.replicas)[0].exit_code

    @property
    def stats(self) -> AppStats:
        """The replicas' counters summed (only the active consumes, so nothing twice)."""
        running = self.running()
        return AppStats(
            records_in=sum(r.stats.records_in for r in self.replicas),
            records_per_s=sum(r.stats.records_per_s for r in self.replicas),
            errors=sum(r.stats.errors for r in self.replicas),
            dead_lettered=sum(r.stats.dead_lettered for r in self.replicas),
            health=next((r.stats.health for r in running if r.stats.health), ""),
        )

    def running(self) -> list[ReplicaProcess]:
        return [r for r in self.replicas if r.status == "running"]

    def label(self, replica: ReplicaProcess) -> str:
        """How log lines name a replica: the app's name when it is the only one."""
        return replica.id if len(self.replicas) > 1 else self.name


def kill_process_group(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    """Signal `pid`'s process group (a supervised process leads its own), else `pid`."""
    with contextlib.suppress(ProcessLookupError):
        group = os.getpgid(pid)
        if group == pid:
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)
