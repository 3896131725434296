"""`App`: what a user declares — topics, grids, streams, timers and tasks."""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from aerogrid.errors import ConfigurationError
from aerogrid.grids import Grid, Row
from aerogrid.record_formats import PLAIN_FORMAT
from aerogrid.schemas.registry_settings import ENV_URL as REGISTRY_ENV
from aerogrid.schemas.registry_settings import RegistrySettings
from aerogrid.schemas.subjects import subject_strategy as check_subject_strategy
from aerogrid.settings import BrokerSettings
from aerogrid.streams import OnError, StreamInput, StreamSpec
from aerogrid.topics import Topic

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
_Handler = TypeVar("_Handler", bound=Callable[..., Awaitable[None]])


@dataclass(frozen=True)
class TimerSpec:
    name: str
    interval: float
    handler: Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    handler: Callable[[], Awaitable[None]]


class App:
    """An AeroGrid app: consumes topics, keeps grids, serves them live.

    `broker` is `host:port[,host:port]` or a `kafka://` URI (see BrokerSettings);
    AEROGRID_BROKER is the default. The consumer group and transactional id are the
    app's name, so one instance runs per app name.

    `schema_registry` is the URL of a Confluent-compatible schema registry (or
    `RegistrySettings`), needed by topics in a registry format (`format="avro"`, ...);
    AEROGRID_SCHEMA_REGISTRY (and its _USERNAME, _PASSWORD, TLS variables) the default.
    """

    def __init__(
        self,
        name: str,
        broker: str | BrokerSettings | None = None,
        *,
        tenant: str | None = None,
        topic_partitions: int = 1,
        schema_registry: str | RegistrySettings | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigurationError(
                f"app name {name!r} must be letters, digits, '.', '_' or '-' "
                "(it names Kafka topics and the consumer group)"
            )
        self.name = name
        self._broker = broker
        self._schema_registry = schema_registry
        self.tenant = tenant or os.environ.get("AEROGRID_TENANT") or "default"
        self.topic_partitions = topic_partitions
        self.topics: dict[str, Topic] = {}
        self.grids: dict[str, Grid] = {}
        self.streams: list[StreamSpec] = []
        self.timers: list[TimerSpec] = []
        self.tasks: list[TaskSpec] = []

    @property
    def broker(self) -> BrokerSettings:
        """The broker settings (resolved now, so the runner can override the default)."""
        if isinstance(self._broker, BrokerSettings):
            return self._broker
        return BrokerSettings.from_env(self._broker)

    @property
    def schema_registry(self) -> RegistrySettings | None:
        """The registry settings (resolved now, from the argument or the environment);
        None when neither names a registry."""
        if isinstance(self._schema_registry, RegistrySettings):
            return self._schema_registry
        if not (self._schema_registry or os.environ.get(REGISTRY_ENV)):
            return None
        return RegistrySettings.from_env(self._schema_registry)

    def registry_topics(self) -> list[Topic]:
        """The topics whose keys or values are in a registry format."""
        return [topic for topic in self.topics.values() if topic.uses_registry]

    @property
    def dlq_topic(self) -> str:
        return f"{self.name}.dlq"

    def changelog_topic(self, grid: str) -> str:
        return f"{self.name}.{grid}.changelog"

    @property
    def checkpoint_topic(self) -> str:
        """Where the engine checkpoints on brokers without transactions."""
        return f"{self.name}.checkpoints"

    # -- declarations --------------------------------------------------------------

    def topic(
        self,
        name: str,
        *,
        key_type: Any = str,
        value_type: Any = dict,
        partitions: int | None = None,
        config: Mapping[str, str] | None = None,
        format: str = PLAIN_FORMAT,
        key_format: str = PLAIN_FORMAT,
        subject_strategy: str = "topic",
    ) -> Topic:
        """A topic with typed keys and values; created with `partitions` when missing.

        `format` is the values' record format: "json" (AeroGrid's own: JSON, or text,
        bytes, decimal integers by the declared type), or, through the app's schema
        registry in the Confluent wire format, "avro", "protobuf" or "json-schema";
        `key_format` the same for keys. `subject_strategy` names the registry subject:
        "topic" (`<topic>-value`), "record" (the record's full name) or "topic-record".
        """
        subject_strategy = check_subject_strategy(subject_strategy)
        declared = (key_type, value_type, format, key_format, subject_strategy)
        if name in self.topics:
            existing = self.topics[name]
            if declared != (
                existing.key_type,
                existing.value_type,
                existing.format,
                existing.key_format,
                existing.subject_strategy,
            ):
                raise ConfigurationError(
                    f"app {self.name!r} declares topic {name!r} twice with different types "
                    "or formats"
                )
            return existing
        topic = Topic(
            name,
            key_type=key_type,
            value_type=value_type,
            partitions=partitions or self.topic_partitions,
            config=config,
            format=format,
            key_format=key_format,
            subject_strategy=subject_strategy,
        )
        self.topics[name] = topic
        return topic

    def Grid(
        self,
        name: str,
        columns: list[str] | tuple[str, ...],
        default: Callable[[], Row] | Row | None = None,
    ) -> Grid:
        """A keyed table, served live and kept durable in its changelog topic."""
        if not _NAME.match(name):
            raise ConfigurationError(f"grid name {name!r} must be letters, digits, '.', '_' or '-'")
        if name in self.grids:
            raise ConfigurationError(f"app {self.name!r} declares grid {name!r} twice")
        grid = Grid(self.name, name, columns, default)
        self.grids[name] = grid
        return grid

    def stream(
        self, topics: Topic | list[Topic] | tuple[Topic, ...], *, on_error: OnError = "dlq"
    ) -> Callable[[_Handler], _Handler]:
        """Run the decorated `async def handler(stream)` over the records of `topics`.

        on_error: "dlq" sends a record that fails to decode or whose handler raises to
        `<app>.dlq` and goes on; "skip" counts and drops it; "stop" stops the app.
        """
        if on_error not in ("dlq", "skip", "stop"):
            raise ConfigurationError(f"on_error must be 'dlq', 'skip' or 'stop', not {on_error!r}")
        topic_list = (topics,) if isinstance(topics, Topic) else tuple(topics)
        if not topic_list or not all(isinstance(t, Topic) for t in topic_list):
            raise ConfigurationError(
                "app.stream() takes a topic or a list of topics from app.topic()"
            )

        def register(handler: _Handler) -> _Handler:
            self.streams.append(
                StreamSpec(
                    name=handler.__name__,
                    topics=topic_list,
                    handler=handler,
                    on_error=on_error,
                )
            )
            return handler

        return register

    def timer(self, seconds: float) -> Callable[[_Handler], _Handler]:
        """Run the decorated `async def tick()` every `seconds` (after grids are restored)."""
        if seconds <= 0:
            raise ConfigurationError("a timer interval must be positive")

        def register(handler: _Handler) -> _Handler:
            self.timers.append(TimerSpec(handler.__name__, float(seconds), handler))
            return handler

        return register

    def task(self, handler: _Handler) -> _Handler:
        """Run the decorated `async def job()` once, when the app has started."""
        self.tasks.append(TaskSpec(handler.__name__, handler))
        return handler

    def input_topics(self) -> dict[str, list[StreamSpec]]:
        """Each consumed topic with the streams that read it."""
        routes: dict[str, list[StreamSpec]] = {}
        for spec in self.streams:
            for topic in spec.topics:
                routes.setdefault(topic.name, []).append(spec)
        return routes

    def __repr__(self) -> str:
        return (
            f"<App {self.name} grids={list(self.grids)} streams={[s.name for s in self.streams]}>"
        )


__all__ = ["App", "StreamInput", "TaskSpec", "TimerSpec"]
