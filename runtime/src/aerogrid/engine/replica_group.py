"""Which replica of an app is the active one: Kafka's group coordinator decides.

Every replica that may process (not `--serve-only`) joins the consumer group
`<app>.replicas` on the one-partition topic of the same name, once its grids are restored;
the member assigned that partition is the active. The broker's coordinator keeps the
membership: a replica that stops leaves the group at once (SIGTERM hands over in well
under a second), and one that dies is dropped after the session timeout
(`AEROGRID_FAILOVER_SECONDS`, default 3 s, raised to the broker's
`group.min.session.timeout.ms` if that is higher: 6 s on a default Apache Kafka).

The assignment is ours (`ActiveAssignor`, run by the group's leader): the partition stays
with the member that holds it, so a replica joining or leaving never moves the active;
when no member holds it, it goes to a member that has seen the latest term (a standby,
not a replica just started), the one whose copy was furthest along when the term last
changed (a member's claim changes only with the term: see `claim`). Each
handover raises the term, which every member learns from its assignment.

Election is not fencing: an active that was paused past the session timeout (a zombie)
may still believe it is active. On Apache Kafka the new active's transactional producer
(the app's one transactional id) fences it, so its next commit fails; see `engine.kafka`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import InvalidSessionTimeoutError, KafkaError

from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

DEFAULT_FAILOVER_SECONDS = 3.0


class Role(StrEnum):
    STARTING = "starting"
    ACTIVE = "active"
    STANDBY = "standby"
    SERVE_ONLY = "serve-only"


def failover_seconds() -> float:
    """The session timeout the replicas ask for (`AEROGRID_FAILOVER_SECONDS`)."""
    try:
        return max(0.5, float(os.environ.get("AEROGRID_FAILOVER_SECONDS", "")))
    except ValueError:
        return DEFAULT_FAILOVER_SECONDS


def join_patience(session_seconds: float) -> float:
    """How long a join may take before it is started again: a rebalance waits at most a
    session timeout for members that died, and one more for the rest to rejoin."""
    return 3 * session_seconds + 5.0


class ReplicaGroup:
    """One replica's membership of its app's replica group."""

    def __init__(
        self,
        app_name: str,
        settings: BrokerSettings,
        replica_id: str,
        *,
        progress: Callable[[], int],
        on_revoked: Callable[[], Awaitable[None]],
    ) -> None:
        self.topic = self.group_id = f"{app_name}.replicas"
        self.settings = settings
        self.replica_id = replica_id
        #: This replica's progress (its highest cycle): the furthest along is elected.
        self._progress = progress
        self._on_revoked = on_revoked
        #: Whether this replica holds the partition (is the active) now.
        self.active = False
        #: The term of the current active, and its replica id, from the last assignment.
        self.term = 0
        self.active_replica: str | None = None
        #: This replica's own term while it is the active (0: not the active).
        self._held_term = 0
        self._decided = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._poller: asyncio.Task[None] | None = None
        #: The last claim made, and the terms it was made under (see `claim`).
        self._claim: tuple[tuple[int, int], bytes] | None = None
        #: The loop time the rebalance in progress began (None: none in progress).
        self._rebalancing_since: float | None = None

    async def join(self) -> None:
        """Join the group (the session timeout falls back to 6 s, then 10 s, if refused).

        A join the coordinator has not settled within `join_patience` (it waits at most a
        session timeout for members that died) is started again with a new member: the
        embedded broker's coordinator was seen to leave a rejoining replica waiting for
        good after a rolling restart. The same holds for every later rebalance (`_poll`).
        """
        wanted = failover_seconds()
        for seconds in dict.fromkeys((wanted, max(wanted, 6.0), max(wanted, 10.0))):
            try:
                consumer = await self._join_settled(seconds)
            except InvalidSessionTimeoutError:
                log.warning(
                    "the broker refused a %.1f s session timeout for the replica group "
                    "(its group.min.session.timeout.ms is higher); failover takes longer",
                    seconds,
                )
                continue
            log.info(
                "replica %s joined group %s (failover after %.1f s)",
                self.replica_id,
                self.group_id,
                seconds,
            )
            self._consumer = consumer
            self._poller = asyncio.create_task(self._poll(seconds))
            return
        raise RuntimeError(f"the broker refused every session timeout for {self.group_id}")

    async def _join_settled(self, seconds: float) -> AIOKafkaConsumer:
        """A member assigned within `join_patience`, joining again with a new one until so."""
        while True:
            patience = join_patience(seconds)
            consumer = await self._join_once(seconds, patience)
            if consumer is not None:
                return consumer
            log.warning(
                "replica %s: group %s did not settle within %.0f s; joining again",
                self.replica_id,
                self.group_id,
                patience,
            )

    async def _join_once(self, seconds: float, patience: float) -> AIOKafkaConsumer | None:
        """One member's join: the member once assigned, None (the member dropped) if that
        took longer than `patience`."""
        consumer = self._new_consumer(seconds)
        consumer.subscribe([self.topic], listener=_Listener(self))
        try:
            async with asyncio.timeout(patience):
                # Waits for the first assignment; raises a refused session timeout.
                await consumer.start()
        except TimeoutError:
            await self._stop(consumer)
            return None
        except BaseException:
            await self._stop(consumer)
            raise
        return consumer

    async def wait_elected(self) -> None:
        while not self.active:
            self._decided.clear()
            await self._decided.wait()

    async def wait_decided(self) -> bool:
        """After a revocation: wait for the next assignment; whether this replica is active."""
        await self._decided.wait()
        return self.active

    async def leave(self, timeout: float = 5.0) -> None:
        """Leave the group now (the next active is chosen at once)."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(BaseException):
                await self._poller
        if self._consumer is not None:
            await self._stop(self._consumer, timeout)
            self._consumer = None
        self.active = False

    # -- what the group says -------------------------------------------------------------

    def claim(self) -> bytes:
        """This member's metadata for the leader's assignment.

        It changes only with the term (this member's, or the one it has seen): the
        embedded broker's coordinator starts a new generation whenever a member rejoins
        with other metadata, and a claim that carried each cycle's progress kept three
        replicas rebalancing for good, each rejoin making the others rejoin. The progress
        claimed is this member's when the term last changed (or when it first joined).
        """
        terms = (self._held_term, self.term)
        if self._claim is None or self._claim[0] != terms:
            body = {
                "replica": self.replica_id,
                "term": self._held_term,
                "seen": self.term,
                "progress": self._progress(),
            }
            self._claim = (terms, json.dumps(body).encode())
        return self._claim[1]

    def note_assignment(self, user_data: bytes) -> None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            decided = json.loads(user_data or b"{}")
            self.term = int(decided.get("term", 0))
            self.active_replica = decided.get("active")

    async def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        """A rebalance began (aiokafka revokes before every join, an empty set included)."""
        self._decided.clear()
        if self._rebalancing_since is None:
            self._rebalancing_since = asyncio.get_running_loop().time()
        if self.active and list(partitions):
            self.active = False
            await self._on_revoked()

    def set_assigned(self, partitions: Iterable[TopicPartition]) -> None:
        self.active = bool(list(partitions))
        self._held_term = self.term if self.active else 0
        self._rebalancing_since = None
        self._decided.set()

    # -- the consumer ------------------------------------------------------------------

    def _new_consumer(self, session_seconds: float) -> AIOKafkaConsumer:
        session_ms = int(session_seconds * 1000)
        return AIOKafkaConsumer(
            group_id=self.group_id,
            client_id=f"aerogrid-replica-{self.replica_id}",
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=session_ms,
            heartbeat_interval_ms=max(100, session_ms // 6),
            partition_assignment_strategy=(_assignor_for(self),),
            **self.settings.client_options(),
        )

    async def _poll(self, seconds: float) -> None:
        """Keep polling: aiokafka counts a consumer that does not poll as failed.

        Errors (a broker away for a while) are logged and polling goes on: the client
        rejoins. A rebalance not settled within `join_patience` drops the member and joins
        with a new one, as a first join does.
        """
        loop = asyncio.get_running_loop()
        while True:
            assert self._consumer is not None
            try:
                await self._consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                log.debug("replica group %s: %r (rejoining)", self.group_id, exc)
                await asyncio.sleep(1)
            since = self._rebalancing_since
            if since is None or loop.time() - since < (patience := join_patience(seconds)):
                continue
            log.warning(
                "replica %s: a rebalance of group %s did not settle within %.0f s; joining again",
                self.replica_id,
                self.group_id,
                patience,
            )
            await self._stop(self._consumer)
            self._rebalancing_since = loop.time()
            self._consumer = await self._join_settled(seconds)

    @staticmethod
    async def _stop(consumer: AIOKafkaConsumer, timeout: float = 5.0) -> None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(consumer.stop(), timeout)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, group: ReplicaGroup) -> None:
        self._group = group

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        await self._group.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._group.set_assigned(assigned)


def choose_active(claims: Mapping[str, dict[str, Any]]) -> tuple[str, int]:
    """The member to hold the partition, and its term.

    The member with the highest claimed term keeps it (a stale claim from a zombie has a
    lower term than its successor's). With no claim, a member that has seen the latest term
    (a standby that followed the last active) goes before one that has not (a replica just
    started: the active that died, restarted); then the one furthest along. It takes a term
    above every term any member has seen.
    """
    holders = [(int(c.get("term", 0)), member) for member, c in claims.items()]
    term, member = max(holders)
    if term > 0:
        return member, term
    ranked = [
        (int(c.get("seen", 0)), int(c.get("progress", 0)), _negated(m), m)
        for m, c in claims.items()
    ]
    seen, _, _, member = max(ranked)
    return member, seen + 1


def _negated(member: str) -> tuple[int, ...]:
    """Ties go to the smallest member id."""
    return tuple(-ord(ch) for ch in member)


def _assignor_for(group: ReplicaGroup) -> type[AbstractPartitionAssignor]:
    """An assignor class bound to `group` (aiokafka calls assignors' class methods)."""

    class ActiveAssignor(AbstractPartitionAssignor):  # type: ignore[misc]
        name = "aerogrid-active-v1"
        version = 0

        @classmethod
        def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
            return ConsumerProtocolMemberMetadata(cls.version, sorted(topics), group.claim())

        @classmethod
        def assign(
            cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
        ) -> dict[str, ConsumerProtocolMemberAssignment]:
            claims: dict[str, dict[str, Any]] = {}
            for member, metadata in members.items():
                try:
                    claims[member] = json.loads(metadata.user_data or b"{}")
                except ValueError:
                    claims[member] = {}
            active, term = choose_active(claims)
            decided = json.dumps({"term": term, "active": claims[active].get("replica")}).encode()
            return {
                member: ConsumerProtocolMemberAssignment(
                    cls.version, [(group.topic, [0])] if member == active else [], decided
                )
                for member in members
            }

        @classmethod
        def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
            group.note_assignment(assignment.user_data)

    return ActiveAssignor
