"""Subject naming strategies: under which registry subject a topic's schemas live.

The three of Confluent's serializers: "topic" (TopicNameStrategy, the default:
`<topic>-value` / `<topic>-key`), "record" (RecordNameStrategy: the record's full
name) and "topic-record" (TopicRecordNameStrategy: `<topic>-<full name>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aerogrid.errors import ConfigurationError

SubjectStrategy = Literal["topic", "record", "topic-record"]
SUBJECT_STRATEGIES: tuple[SubjectStrategy, ...] = ("topic", "record", "topic-record")
#: Confluent's class names, accepted as the same strategies.
_CONFLUENT_NAMES: dict[str, SubjectStrategy] = {
    "topicnamestrategy": "topic",
    "recordnamestrategy": "record",
    "topicrecordnamestrategy": "topic-record",
}


def subject_strategy(name: str) -> SubjectStrategy:
    """The strategy `name` means (ours or Confluent's class name), or a ConfigurationError."""
    text = name.strip().lower()
    if text in SUBJECT_STRATEGIES:
        return text
    if text in _CONFLUENT_NAMES:
        return _CONFLUENT_NAMES[text]
    raise ConfigurationError(
        f"unknown subject_strategy {name!r}: use {', '.join(map(repr, SUBJECT_STRATEGIES))}"
    )


@dataclass(frozen=True)
class SubjectNamer:
    """The subject of one topic's keys or values under one strategy."""

    topic: str
    is_key: bool = False
    strategy: SubjectStrategy = "topic"

    def subject(self, record_name: str) -> str:
        """The subject for a schema whose full record name is `record_name`.

        `record_name` is Avro's `namespace.name`, Protobuf's full message name, JSON
        Schema's title; the "topic" strategy ignores it.
        """
        if self.strategy == "topic":
            return f"{self.topic}-{'key' if self.is_key else 'value'}"
        if not record_name:
            raise ConfigurationError(
                f"subject_strategy {self.strategy!r} on topic {self.topic!r} needs a record "
                "name, and this schema has none"
            )
        if self.strategy == "record":
            return record_name
        return f"{self.topic}-{record_name}"
