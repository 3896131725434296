"""Subject naming strategies: Confluent's three, under our names and theirs."""

from __future__ import annotations

import pytest

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.subjects import SubjectNamer, subject_strategy


def test_topic_strategy_is_the_default_and_ignores_the_record_name() -> None:
    assert SubjectNamer("orders").subject("com.acme.Order") == "orders-value"
    assert SubjectNamer("orders", is_key=True).subject("") == "orders-key"


def test_record_strategies_use_the_full_record_name() -> None:
    assert SubjectNamer("orders", strategy="record").subject("com.acme.Order") == "com.acme.Order"
    namer = SubjectNamer("orders", strategy="topic-record")
    assert namer.subject("com.acme.Order") == "orders-com.acme.Order"


def test_a_record_strategy_without_a_record_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="needs a record name"):
        SubjectNamer("orders", strategy="record").subject("")


@pytest.mark.parametrize(
    ("name", "strategy"),
    [
        ("topic", "topic"),
        ("Record", "record"),
        ("topic-record", "topic-record"),
        ("TopicNameStrategy", "topic"),
        ("RecordNameStrategy", "record"),
        ("TopicRecordNameStrategy", "topic-record"),
    ],
)
def test_strategy_names_ours_and_confluents(name: str, strategy: str) -> None:
    assert subject_strategy(name) == strategy


def test_an_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="'topic', 'record', 'topic-record'"):
        subject_strategy("by-date")
