"""`aerogrid produce --format ...` and `aerogrid tail` with registry formats, as a user runs them.

On the real Apache Kafka and the real schema registry (Apicurio): what `produce` writes is
read by confluent-kafka's own deserializers, and what confluent-kafka's serializers wrote
is shown decoded by `tail`, with its schema id and subject. Bad input and a registry that
does not answer are said, never a crash or a hang.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import kafka_tools
from support.brokers import ApacheKafka
from support.schema_registry import TestRegistry

pytestmark = pytest.mark.timeout(240)

ORDER_AVSC = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "product", "type": "string"},
        {"name": "qty", "type": "long"},
        {
            "name": "price",
            "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
        },
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
ORDER_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {"product": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["product", "qty"],
}
ORDER_PROTO = """syntax = "proto3";
package shop;
message Order { string product = 1; int64 qty = 2; }
message Refund { string reason = 1; }
"""


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    folder = tmp_path / "schemas"
    folder.mkdir()
    (folder / "order.avsc").write_text(json.dumps(ORDER_AVSC))
    (folder / "order.json").write_text(json.dumps(ORDER_JSON_SCHEMA))
    (folder / "order.proto").write_text(ORDER_PROTO)
    (folder / "broken.avsc").write_text('{"type": "record", "name": "Order"')
    (folder / "not-avro.avsc").write_text('{"type": "record", "name": "Order", "fields": 3}')
    return folder


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CliEnv]:
    yield CliEnv(tmp_path)


class CliEnv:
    """`python -m aerogrid` in a folder of its own (no workspace), with its own AEROGRID_HOME."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "home").mkdir()

    def run(
        self, *args: str, registry: str | None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        given = {**os.environ, "AEROGRID_HOME": str(self.folder / "home")}
        for name in list(given):
            if name == "AEROGRID_BROKER" or name.startswith("AEROGRID_SCHEMA_REGISTRY"):
                given.pop(name)
        if registry is not None:
            given["AEROGRID_SCHEMA_REGISTRY"] = registry
        given.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "aerogrid", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=given,
            cwd=self.folder,
            check=False,
        )


def _records(apache_kafka: ApacheKafka, topic: str) -> list[kafka_tools.BrowsedRecord]:
    return asyncio.run(kafka_tools.browse(BrokerSettings.parse(apache_kafka.bootstrap), topic))


def test_produce_avro_is_read_by_confluent_kafkas_avro_deserializer(
    apache_kafka: ApacheKafka,
    schema_registry: TestRegistry,
    cli: CliEnv,
    schemas: Path,
    unique_name: str,
) -> None:
    topic = f"{unique_name}-orders"
    lines = schemas / "orders.jsonl"
    lines.write_text(
        '{"product": "tea", "qty": 2, "price": "3.50"}\n'
        '{"product": "cake", "qty": 1, "price": 12.25, "note": "birthday"}\n'
    )
    avsc = str(schemas / "order.avsc")
    (schemas / "key.avsc").write_text('"string"')
    common = ("--format", "avro", "--schema", avsc, "--broker", apache_kafka.bootstrap)
    keyed = ("--key", "o1", "--key-format", "avro", "--key-schema", str(schemas / "key.avsc"))
    sent = cli.run(
        "produce", topic, "--file", str(lines), *common, *keyed, registry=schema_registry.url
    )
    assert sent.returncode == 0, sent.stderr
    assert len(sent.stdout.splitlines()) == 2

    client = SchemaRegistryClient({"url": schema_registry.url})
    latest = client.get_latest_version(f"{topic}-value")
    assert json.loads(latest.schema.schema_str or "") == ORDER_AVSC  # the file, registered
    deserialize = AvroDeserializer(client)
    context = SerializationContext(topic, MessageField.VALUE)
    stored = _records(apache_kafka, topic)
    assert {r.value[:1] for r in stored if r.value} == {b"\x00"}
    assert int.from_bytes((stored[0].value or b"")[1:5], "big") == latest.schema_id
    read = sorted((deserialize(r.value, context) for r in stored), key=lambda v: v["qty"])
    assert read == [
        {"product": "cake", "qty": 1, "price": Decimal("12.25"), "note": "birthday"},
        {"product": "tea", "qty": 2, "price": Decimal("3.50"), "note": None},
    ]
    key_context = SerializationContext(topic, MessageField.KEY)
    assert {AvroDeserializer(client)(r.key, key_context) for r in stored} == {"o1"}
    key_id = client.get_latest_version(f"{topic}-key").schema_id
    tailed = cli.run(
        "tail", topic, "--from-beginning", "--max", "1", "--idle-timeout", "20",
        "--broker", apache_kafka.bootstrap, registry=schema_registry.url,
    )  # fmt: skip
    assert tailed.returncode == 0, tailed.stderr
    assert f'key=[avro id={key_id} {topic}-key] "o1"' in tailed.stdout


def test_produce_json_schema_and_protobuf(
    apache_kafka: ApacheKafka,
    schema_registry: TestRegistry,
    cli: CliEnv,
    schemas: Path,
    unique_name: str,
) -> None:
    broker = ("--broker", apache_kafka.bootstrap)
    json_topic, proto_topic = f"{unique_name}-json", f"{unique_name}-proto"
    sent = cli.run(
        "produce",
        json_topic,
        '{"product": "tea", "qty": 2}',
        *("--format", "json-schema", "--schema", str(schemas / "order.json"), *broker),
        registry=schema_registry.url,
    )
    assert sent.returncode == 0, sent.stderr
    client = SchemaRegistryClient({"url": schema_registry.url})
    (stored,) = _records(apache_kafka, json_topic)
    read = JSONDeserializer(json.dumps(ORDER_JSON_SCHEMA), schema_registry_client=client)(
        stored.value, SerializationContext(json_topic, MessageField.VALUE)
    )
    assert read == {"product": "tea", "qty": 2}

    proto = ("--format", "protobuf", "--schema", str(schemas / "order.proto"))
    ambiguous = cli.run("produce", proto_topic, "{}", *proto, *broker, registry=schema_registry.url)
    assert ambiguous.returncode == 1
    assert "declares 2 messages (Order, Refund): choose one with --message" in ambiguous.stderr
    refund = ("--message", "Refund")
    wrong = cli.run(
        "produce", proto_topic, '{"reasn": "late"}', *proto, *refund, *broker, registry=None
    )
    assert wrong.returncode == 1 and 'has no field named "reasn"' in wrong.stderr
    sent = cli.run(
        "produce",
        proto_topic,
        '{"reason": "late"}',
        *proto,
        *refund,
        *broker,
        registry=schema_registry.url,
    )
    assert sent.returncode == 0, sent.stderr
    (stored,) = _records(apache_kafka, proto_topic)
    assert (stored.value or b"")[5:7] == b"\x02\x02"  # message indexes [1]: the second message
    tailed = cli.run(
        "tail", proto_topic, "--from-beginning", "--max", "1", "--idle-timeout", "20", "--json",
        *broker, registry=schema_registry.url,
    )  # fmt: skip
    assert tailed.returncode == 0, tailed.stderr
    shown = json.loads(tailed.stdout)
    assert shown["value"] == {"reason": "late"}
    assert shown["value_schema"]["format"] == "protobuf"
    assert shown["value_schema"]["subject"] == f"{proto_topic}-value"


def test_produce_refuses_bad_schemas_and_values_sending_nothing(cli: CliEnv, schemas: Path) -> None:
    nowhere = ("--broker", "127.0.0.1:1")  # nothing is sent, so no broker is asked
    avro = ("--format", "avro", "--schema", str(schemas / "order.avsc"))
    cases = {
        ('{"product": "tea", "qty": "two", "price": 1}', *avro): (
            "value does not match order.avsc at $.qty: 'two' is not an integer (long)"
        ),
        ('{"product": "tea", "price": 1}', *avro): (
            "at $.qty: missing (the field is required: it has no default)"
        ),
        ('{"product": "tea", "qty": 1, "price": "1.005"}', *avro): (
            "at $.price: 1.005 has more than 2 decimal places"
        ),
        ('{"product": "tea", "qty": 1, "price": 1, "colour": "red"}', *avro): (
            "at $.colour: record shop.Order has no field 'colour'"
        ),
        ("not json", *avro): "value is not JSON",
        ("{}", "--format", "avro", "--schema", str(schemas / "broken.avsc")): (
            "broken.avsc is not JSON"
        ),
        ("{}", "--format", "avro", "--schema", str(schemas / "not-avro.avsc")): (
            "not-avro.avsc is not an Avro schema"
        ),
        ("{}", "--format", "avro"): "--format avro needs --schema FILE",
        ("{}", *avro, "--message", "Order"): "--message is for --format protobuf",
        ('{"product": "tea", "qty": 0}', "--format", "json-schema", "--schema",
         str(schemas / "order.json")): "at $.qty: 0 is less than the minimum of 1",
    }  # fmt: skip
    for args, said in cases.items():
        done = cli.run("produce", "orders", *args, *nowhere, registry="http://127.0.0.1:1")
        assert done.returncode == 1, (args, done.stdout)
        assert said in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    no_registry = cli.run(
        "produce", "orders", '{"product": "tea", "qty": 1, "price": 1}', *avro, *nowhere,
        registry=None,
    )  # fmt: skip
    assert no_registry.returncode == 1
    assert "no schema registry is configured for registry formats" in no_registry.stderr
    refused = cli.run(
        "produce", "orders", '{"product": "tea", "qty": 1, "price": 1}', *avro, *nowhere,
        registry="http://127.0.0.1:1/apis/ccompat/v7",
    )  # fmt: skip
    assert refused.returncode == 1 and "unreachable" in refused.stderr


def _confluent_records(
    apache_kafka: ApacheKafka, registry: TestRegistry, topic: str
) -> tuple[int, list[dict[str, object]]]:
    """Two orders written by confluent-kafka's AvroSerializer, then three bad records."""
    client = SchemaRegistryClient({"url": registry.url})
    serialize = AvroSerializer(client, json.dumps(ORDER_AVSC))
    context = SerializationContext(topic, MessageField.VALUE)
    orders: list[dict[str, object]] = [
        {"product": "tea", "qty": 2, "price": Decimal("3.50"), "note": None},
        {"product": "cake", "qty": 1, "price": Decimal("12.25"), "note": "birthday"},
    ]
    values = [serialize(order, context) for order in orders]
    schema_id = int.from_bytes(values[0][1:5], "big")
    values += [
        b"\x00\x00\x0f\x42\x3f{}",  # schema id 999999: not in the registry
        values[0][:7],  # cut short
        b'{"plain": "json"}',
    ]
    settings = BrokerSettings.parse(apache_kafka.bootstrap)
    for value in values:  # one at a time: in this order on one partition
        asyncio.run(kafka_tools.produce(settings, topic, [value], key=b"k"))
    return schema_id, orders


def test_tail_decodes_what_confluent_kafkas_serializer_wrote(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, cli: CliEnv, unique_name: str
) -> None:
    topic = f"{unique_name}-orders"
    schema_id, _ = _confluent_records(apache_kafka, schema_registry, topic)
    args = ("tail", topic, "--from-beginning", "--max", "5", "--idle-timeout", "20")
    broker = ("--broker", apache_kafka.bootstrap)
    tailed = cli.run(*args, "--json", *broker, registry=schema_registry.url)
    assert tailed.returncode == 0, tailed.stderr
    shown = [json.loads(line) for line in tailed.stdout.splitlines()]
    label = {"format": "avro", "id": schema_id, "subject": f"{topic}-value"}
    assert [(r["value"], r.get("value_schema")) for r in shown[:2]] == [
        ({"product": "tea", "qty": 2, "price": "3.50", "note": None}, label),
        ({"product": "cake", "qty": 1, "price": "12.25", "note": "birthday"}, label),
    ]
    assert shown[2]["value_note"] == "schema id 999999 is not in the registry"
    assert shown[2]["value"] == "\\x00\\x00\\x0fB?{}"
    assert shown[3]["value_note"].startswith(f"avro schema id {schema_id}: ")
    assert shown[4]["value"] == {"plain": "json"} and "value_note" not in shown[4]
    assert all(r["key"] == "k" and "key_note" not in r for r in shown)

    text = cli.run(*args, *broker, registry=schema_registry.url)
    assert text.returncode == 0, text.stderr
    assert f'[avro id={schema_id} {topic}-value]\n  {{\n    "product": "tea",' in text.stdout
    assert "(not decoded: schema id 999999 is not in the registry)" in text.stdout


def test_tail_with_a_registry_that_does_not_answer_shows_records_raw_without_hanging(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, cli: CliEnv, unique_name: str
) -> None:
    topic = f"{unique_name}-orders"
    _confluent_records(apache_kafka, schema_registry, topic)
    args = ("tail", topic, "--from-beginning", "--max", "5", "--idle-timeout", "20", "--json")
    broker = ("--broker", apache_kafka.bootstrap)
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/apis/ccompat/v7"
        started = time.monotonic()
        tailed = cli.run(*args, *broker, registry=url)
        took = time.monotonic() - started
    assert tailed.returncode == 0, tailed.stderr
    shown = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert len(shown) == 5
    # one wait of the request timeout (3 s), then the registry is left alone for a while
    assert took < 15, took
    for record in shown[:4]:
        assert "unreachable" in record["value_note"], record
        assert record["value"].startswith("\\x00\\x00")
    assert shown[4]["value"] == {"plain": "json"}
    refused = cli.run(*args, *broker, registry="http://127.0.0.1:1/apis/ccompat/v7")
    assert refused.returncode == 0, refused.stderr
    assert all(
        "unreachable" in json.loads(line)["value_note"] for line in refused.stdout.splitlines()[:4]
    )


def test_produce_and_tail_with_a_registry_that_needs_credentials(
    apache_kafka: ApacheKafka,
    auth_registry: TestRegistry,
    cli: CliEnv,
    schemas: Path,
    unique_name: str,
) -> None:
    assert auth_registry.username is not None and auth_registry.password is not None
    topic = f"{unique_name}-orders"
    value = '{"product": "tea", "qty": 2, "price": 1}'
    avro = ("--format", "avro", "--schema", str(schemas / "order.avsc"))
    broker = ("--broker", apache_kafka.bootstrap)
    user = {"AEROGRID_SCHEMA_REGISTRY_USERNAME": auth_registry.username}
    bad = {"AEROGRID_SCHEMA_REGISTRY_PASSWORD": "not-it", **user}
    wrong = cli.run(
        "produce", topic, value, *avro, *broker, registry=auth_registry.url, env=bad,
    )  # fmt: skip
    assert wrong.returncode == 1
    assert "refused" in wrong.stderr and "AEROGRID_SCHEMA_REGISTRY_PASSWORD" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    good = {"AEROGRID_SCHEMA_REGISTRY_PASSWORD": auth_registry.password, **user}
    sent = cli.run("produce", topic, value, *avro, *broker, registry=auth_registry.url, env=good)
    assert sent.returncode == 0, sent.stderr
    tail = ("tail", topic, "--from-beginning", "--max", "1", "--idle-timeout", "20", "--json")
    tailed = cli.run(*tail, *broker, registry=auth_registry.url, env=good)
    assert tailed.returncode == 0, tailed.stderr
    shown = json.loads(tailed.stdout)
    assert shown["value"] == {"product": "tea", "qty": 2, "price": "1.00", "note": None}
    assert shown["value_schema"]["subject"] == f"{topic}-value"
    refused = cli.run(*tail, *broker, registry=auth_registry.url, env=bad)
    assert refused.returncode == 0, refused.stderr
    assert "refused" in json.loads(refused.stdout)["value_note"]
