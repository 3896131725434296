"""The replicas of one app as the gateway reaches them, and which one serves a new call.

Each running replica has its own gRPC channel (`Member`). A new subscription goes to the
ready replica that relays the fewest subscriptions now, ties taken in turn (so a burst of
subscribers opened at once is spread evenly, and a replica that comes back after a crash
gets the next ones). A replica whose process already exited, before the supervisor saw
it, is never picked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from grpc import aio

from aerogrid.v1 import catalog_pb2
from aerogrid_devkit.app_process import ReplicaProcess

__all__ = ["Member", "Spreader"]


@dataclass(eq=False)
class Member:
    """One replica: the channel to its current process and the catalog it tells."""

    replica: ReplicaProcess
    #: The gRPC port of the process the channel is connected to (None: not running).
    port: int | None = None
    channel: aio.Channel | None = None
    fetch: asyncio.Task[None] | None = None
    #: This process's catalog entries ([] until it told them).
    catalog: list[catalog_pb2.AppInfo] | None = None
    #: Subscriptions relayed to this process now.
    subscriptions: int = 0

    @property
    def serving(self) -> bool:
        """Whether calls may go to it: running, attached, and its process not gone."""
        process = self.replica.process
        return (
            self.channel is not None
            and self.replica.status == "running"
            and (process is None or process.returncode is None)
        )


class Spreader:
    """Picks the replica for each new call: fewest subscriptions, ties in turn."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(self, members: Iterable[Member]) -> Member | None:
        serving = [m for m in members if m.serving]
        if not serving:
            return None
        turn, count = self._turn, len(serving)
        self._turn += 1
        return min(
            enumerate(serving), key=lambda pair: (pair[1].subscriptions, (pair[0] - turn) % count)
        )[1]
