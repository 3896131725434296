"""A replica whose join the coordinator never settles joins again as a new member.

The embedded broker's coordinator once left a replica rejoining after a rolling restart
waiting for good (a clean CI run of the three-replica chaos test). The replica group then
gives up on that member after `join_patience` and joins again. Here the first join is given
no patience at all, so it is abandoned however fast the broker is: the group must still end
with this replica as its active, on both brokers.
"""

from __future__ import annotations

import logging

import pytest
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
    settings = BrokerSettings.parse(broker.bootstrap)
    group = ReplicaGroup(unique_name, settings, "r0", progress=lambda: 0, on_revoked=_nothing)
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(group.topic, 1, 1)])
    finally:
        await admin.close()

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


async def _nothing() -> None:
    return None
