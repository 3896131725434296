"""A replica whose join the coordinator never settles joins again as a new member.

The embedded broker's coordinator once left a replica rejoining after a rolling restart
waiting for good (a clean CI run of the three-replica chaos test). The replica group then
gives up on that member after `join_patience` and joins again. Here the first join is given
no patience at all, so it is abandoned however fast the broker is: the group must still end
with this replica as its active, on both brokers. The same for a rebalance that begins
after the join and is never settled: the member is dropped and a new one joins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aerogrid.engine import replica_group
from aerogrid.engine.replica_group import ReplicaGroup
from aerogrid.settings import BrokerSettings
from support.brokers import Broker

pytestmark = pytest.mark.timeout(120)


async def test_a_join_that_does_not_settle_is_started_again(
    broker: Broker,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = await _group_and_topic(broker, unique_name, _nothing)

    patience = replica_group.join_patience
    calls: list[float] = []

    def first_without_patience(session_seconds: float) -> float:
        calls.append(session_seconds)
        return 0.0 if len(calls) == 1 else patience(session_seconds)

    monkeypatch.setattr(replica_group, "join_patience", first_without_patience)
    monkeypatch.setenv("AEROGRID_FAILOVER_SECONDS", "2")
    caplog.set_level(logging.WARNING, "aerogrid.engine")
    try:
        await group.join()
        await group.wait_elected()
        assert group.active
        assert "did not settle within 0 s; joining again" in caplog.text
        assert len(calls) >= 2
    finally:
        await group.leave()


async def test_a_rebalance_that_does_not_settle_is_joined_again(
    broker: Broker,
    unique_name: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The stall is injected: the member is told a rebalance began (as aiokafka tells it
    before each join) that the coordinator never goes on with, as the embedded broker's
    coordinator once did. The active stops being active at once and is active again, as
    a new member, once `join_patience` is over."""
    revocations: list[bool] = []

    async def on_revoked() -> None:
        revocations.append(True)

    group = await _group_and_topic(broker, unique_name, on_revoked)
    monkeypatch.setenv("AEROGRID_FAILOVER_SECONDS", "2")
    caplog.set_level(logging.WARNING, "aerogrid.engine")
    try:
        await group.join()
        await group.wait_elected()
        first_member = group._consumer
        monkeypatch.setattr(replica_group, "join_patience", lambda _seconds: 2.0)
        await group.revoked([TopicPartition(group.topic, 0)])
        assert not group.active and revocations == [True]
        async with asyncio.timeout(30):
            await group.wait_elected()
        assert "a rebalance of group" in caplog.text
        assert "did not settle within 2 s; joining again" in caplog.text
        assert group._consumer is not first_member
        assert group.active and group.active_replica == "r0"
    finally:
        await group.leave()


async def _group_and_topic(
    broker: Broker, app_name: str, on_revoked: Callable[[], Awaitable[None]]
) -> ReplicaGroup:
    """Replica r0's group of `app_name`, its one-partition topic made."""
    settings = BrokerSettings.parse(broker.bootstrap)
    group = ReplicaGroup(app_name, settings, "r0", progress=lambda: 0, on_revoked=on_revoked)
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(group.topic, 1, 1)])
    finally:
        await admin.close()
    return group


async def _nothing() -> None:
    return None
