"""One process of an app: restore, then serve as a standby until elected, then process.

Every `aerogrid run` process of an app is a replica. Each restores its grids and keeps
them up by following the changelogs (`follower`); the replica group (`replica_group`)
elects one active, which stops following, fences the previous active, and runs the
consume–process–commit loop (`kafka.KafkaEngine`) from the last committed offsets with
its grids already warm. A `--serve-only` replica never joins the group.

A revocation (the group rebalancing because a replica joined or left) pauses the active
between two cycles; when the assignment gives it the role again it goes on at once, so a
replica joining never moves the active. SIGTERM of the active commits its cycle in flight
and leaves the group: a standby is elected at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from aerogrid import metrics
from aerogrid.app import App
from aerogrid.engine import cycles
from aerogrid.engine.committer import Fenced
from aerogrid.engine.follower import ChangelogFollower
from aerogrid.engine.guarantee import ExactlyOnce, Guarantee
from aerogrid.engine.kafka import KafkaEngine, Publish, Status
from aerogrid.engine.replica_group import ReplicaGroup, Role
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

Changes = dict[RowKey, RowTuple | None]

#: Called when a grid's epoch is known or changes, with the grid's seq then and the last
#: restored cycles (seq before, seq, changes) to seed the window with.
SetPosition = Callable[[Grid, str, int, Sequence[tuple[int, int, Changes]]], None]


def default_replica_id() -> str:
    return os.environ.get("AEROGRID_REPLICA_ID") or f"{socket.gethostname()}-{os.getpid()}"


class Replica:
    """What `aerogrid run` runs: the follower, the group membership and the engine."""

    def __init__(
        self,
        app: App,
        *,
        settings: BrokerSettings | None = None,
        publish: Publish | None = None,
        set_position: SetPosition | None = None,
        exactly_once: ExactlyOnce = "auto",
        state_lock: asyncio.Lock | None = None,
        serve_only: bool = False,
        replica_id: str | None = None,
    ) -> None:
        self.app = app
        self.settings = settings or app.broker
        self.publish: Publish = publish or (lambda grid, changes, seq: None)
        self.set_position: SetPosition = set_position or (lambda grid, epoch, seq, recent: None)
        self.serve_only = serve_only
        self.replica_id = replica_id or default_replica_id()
        self.engine = KafkaEngine(
            app,
            settings=self.settings,
            publish=self.publish,
            exactly_once=exactly_once,
            state_lock=state_lock,
        )
        self.role = Role.STARTING
        self.failovers = 0
        self.group: ReplicaGroup | None = None
        self.follower: ChangelogFollower | None = None
        self._stopping = asyncio.Event()
        self._epochs: dict[str, str] = {}
        self._set_role(Role.STARTING)

    # -- what serve.py reads ---------------------------------------------------------------

    @property
    def outage(self) -> str | None:
        return self.engine.outage

    @property
    def guarantee(self) -> Guarantee | None:
        return self.engine.guarantee

    @property
    def on_status(self) -> Callable[[Status], None]:
        return self.engine.on_status

    @on_status.setter
    def on_status(self, callback: Callable[[Status], None]) -> None:
        self.engine.on_status = callback

    @property
    def on_outage(self) -> Callable[[str | None], None]:
        return self.engine.on_outage

    @on_outage.setter
    def on_outage(self, callback: Callable[[str | None], None]) -> None:
        self.engine.on_outage = callback

    @property
    def status(self) -> Status:
        return self.engine.status

    @property
    def active_replica(self) -> str | None:
        if self.role is Role.ACTIVE:
            return self.replica_id
        return self.group.active_replica if self.group else None

    def lag(self) -> dict[str, int]:
        if self.role is Role.ACTIVE or self.follower is None:
            return dict.fromkeys(self.app.grids, 0)
        return self.follower.lag()

    def seqs(self) -> dict[str, int]:
        return dict(self.follower.seqs) if self.follower else dict.fromkeys(self.app.grids, 0)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Topics, guarantee, broker watch, then every grid restored from its changelog."""
        await self.engine.prepare()
        self.engine.set_status(Status.RESTORING)
        self.follower = ChangelogFollower(
            self.app,
            self.settings,
            checkpointed=self.engine.guarantee is Guarantee.CHECKPOINTED,
            publish=self.publish,
            state_lock=self.engine.state_lock,
            on_lineage=self._lineage_changed,
        )
        await self.follower.restore()
        self._lineage_changed(restored=True)
        self._set_role(Role.SERVE_ONLY if self.serve_only else Role.STANDBY)
        self.engine.set_status(Status.RUNNING)

    def request_stop(self) -> None:
        self._stopping.set()
        self.engine.request_stop()

    async def run(self) -> None:
        """Follow as a standby, process while active, until `request_stop()`."""
        follower = self._require_follower()
        if self.serve_only:
            await follower.follow(self._stopping)
            return
        self.group = group = ReplicaGroup(
            self.app.name,
            self.settings,
            self.replica_id,
            progress=lambda: follower.cycle,
            on_revoked=self._revoked,
        )
        self.engine.holding = lambda: group.active
        join = asyncio.ensure_future(group.join())
        while not self._stopping.is_set():
            if not group.active:
                self._set_role(Role.STANDBY)
                await self._follow_until(self._elected_or_stopping(group, join))
                if self._stopping.is_set():
                    break
            had_active = group.term > 1 or self.failovers > 0
            await self.engine.activate(follower)
            self._set_role(Role.ACTIVE)
            if had_active:
                self.failovers += 1
                metrics.FAILOVERS.labels(self.app.name).inc()
            self._lineage_changed()
            while True:
                await self.engine.run()
                if self._stopping.is_set() or not await group.wait_decided():
                    break
            if self._stopping.is_set():
                break
            if self.engine.guarantee is Guarantee.CHECKPOINTED:
                # Nothing fenced this replica: it may have committed cycles after its
                # successor began (numbers the successor used too), so its copy is suspect.
                raise Fenced(
                    f"app {self.app.name}: replica {self.replica_id} lost the active role to "
                    f"{group.active_replica} on a broker without transactions (no fencing); "
                    "it exits so that it restarts from the changelog"
                )
            log.warning("app %s: replica %s is a standby again", self.app.name, self.replica_id)
            await self.engine.deactivate()
        if not join.done():
            join.cancel()

    async def close(self, timeout: float = 3.0) -> None:
        """Leave the group (a standby takes over at once), stop the engine and the follower,
        together: each client gets `timeout` seconds (the broker may be down)."""
        await asyncio.gather(
            self.group.leave(timeout) if self.group else asyncio.sleep(0),
            self.engine.close(timeout),
            self.follower.close(timeout) if self.follower else asyncio.sleep(0),
        )

    # -- helpers -------------------------------------------------------------------------

    async def _elected_or_stopping(self, group: ReplicaGroup, join: asyncio.Future[None]) -> None:
        stop = asyncio.ensure_future(self._stopping.wait())
        elected = asyncio.ensure_future(self._joined_and_elected(group, join))
        try:
            await asyncio.wait((stop, elected), return_when=asyncio.FIRST_COMPLETED)
            if elected.done():
                elected.result()
        finally:
            stop.cancel()
            elected.cancel()

    @staticmethod
    async def _joined_and_elected(group: ReplicaGroup, join: asyncio.Future[None]) -> None:
        await join
        await group.wait_elected()

    async def _follow_until(self, until: Coroutine[Any, Any, None]) -> None:
        """Follow the changelogs while `until` runs."""
        follower = self._require_follower()
        stop = asyncio.Event()
        following = asyncio.ensure_future(follower.follow(stop))
        try:
            waiting = asyncio.ensure_future(until)
            await asyncio.wait((following, waiting), return_when=asyncio.FIRST_COMPLETED)
            if following.done():
                following.result()  # the follower failed: say why
            waiting.result()
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await following

    async def _revoked(self) -> None:
        """The group rebalances: let the cycle in flight finish; no other starts."""
        async with self.engine.cycle_lock:
            pass

    def _lineage_changed(self, *, restored: bool = False) -> None:
        """Tell the hub each grid's epoch (the lineage, or the one the active just minted)."""
        follower = self._require_follower()
        lineage = self.engine.lineage if self.role is Role.ACTIVE else follower.lineage
        if not lineage and not restored:
            return
        for grid in self.app.grids.values():
            epoch = cycles.epoch(lineage, grid.columns)
            if self._epochs.get(grid.name) != epoch:
                self._epochs[grid.name] = epoch
                recent = list(follower.recent[grid.name]) if restored else []
                self.set_position(grid, epoch, follower.seqs[grid.name], recent)
        if restored:
            for recent_cycles in follower.recent.values():
                recent_cycles.clear()

    def _set_role(self, role: Role) -> None:
        self.role = role
        for each in Role:
            metrics.REPLICA_ROLE.labels(self.app.name, each.value).set(1 if each is role else 0)

    def _require_follower(self) -> ChangelogFollower:
        if self.follower is None:
            raise RuntimeError("replica not started")
        return self.follower
