"""The topics an app needs, created when missing: inputs, changelogs, dead letters,
checkpoints (without transactions) and the replica group's coordination topic."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from aerogrid.app import App
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")


def replicas_topic(app: App) -> str:
    """The one-partition topic whose consumer group elects the active replica."""
    return f"{app.name}.replicas"


async def ensure_topics(app: App, settings: BrokerSettings, *, checkpointed: bool) -> None:
    admin = AIOKafkaAdminClient(**settings.client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted: list[tuple[str, int, dict[str, str]]] = [
            (t.name, t.partitions, t.config) for t in app.topics.values()
        ]
        if app.streams:
            wanted.append((app.dlq_topic, 1, {}))
        for grid in app.grids.values():
            wanted.append((app.changelog_topic(grid.name), 1, {"cleanup.policy": "compact"}))
        if checkpointed:
            # Keyed by generation: compaction keeps each generation's last checkpoint.
            wanted.append((app.checkpoint_topic, 1, {"cleanup.policy": "compact"}))
        # Nothing is written to it: it exists for its consumer group.
        wanted.append((replicas_topic(app), 1, {}))
        for name, partitions, config in wanted:
            if name in existing:
                continue
            await _create_topic(admin, name, partitions, config)
    finally:
        await admin.close()


async def _create_topic(
    admin: AIOKafkaAdminClient, name: str, partitions: int, config: dict[str, str]
) -> None:
    attempts: list[dict[str, str]] = [config, {}] if config else [{}]
    last_error: Exception | None = None
    for topic_config in attempts:
        try:
            response = await admin.create_topics([_new_topic(name, partitions, topic_config)])
        except TopicAlreadyExistsError:
            return
        except KafkaError as exc:
            last_error = exc
            continue
        errors = [e for e in getattr(response, "topic_errors", ()) if e[1] not in (0, 36)]
        if not errors:
            if topic_config != config:
                log.info("broker refused config %s for %s; created without it", config, name)
            log.info("created topic %s (%d partitions)", name, partitions)
            return
        last_error = RuntimeError(f"cannot create topic {name}: {errors}")
    raise RuntimeError(f"cannot create topic {name!r}: {last_error}")


def _new_topic(name: str, partitions: int, config: dict[str, str]) -> NewTopic:
    """A topic with the broker's default replication factor (-1, Kafka 2.4+).

    Its `default.replication.factor` is what the cluster's operators chose (3 on a real
    cluster); a fixed 1 would leave the app's changelog on one broker, so losing that
    broker would stop the app. aiokafka's constructor refuses -1 without an explicit
    assignment, so it is set after construction.
    """
    topic = NewTopic(name, partitions, 1, topic_configs=config or None)
    topic.replication_factor = -1
    return topic
