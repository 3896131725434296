"""Registry formats end to end: `aerogrid run` on Apache Kafka with the real schema registry.

Orders are written by confluent-kafka's AvroSerializer (the reference client) under three
writer schemas; the app reads them with its Record as the reader schema, dead-letters what
cannot be read with the reason in the headers, sends Avro that the reference AvroDeserializer
reads, and keeps its changelogs in AeroGrid's own format.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

import aerogrid
from aerogrid.testing import AppTester
from support.apps import REPO, RunningApp, produce, read_topic
from support.brokers import ApacheKafka
from support.orders import converged
from support.registry_apps import (
    ORDER_JSON_SCHEMA,
    AvroOrders,
    deserialize,
    framed,
    write_avro_orders_app,
)
from support.schema_registry import TestRegistry

pytestmark = pytest.mark.timeout(300)


async def test_avro_orders_exact_sums_evolution_dead_letters_and_send(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    topic, shipments = f"{unique_name}-orders", f"{unique_name}-shipments"
    path = write_avro_orders_app(tmp_path, unique_name, topic, shipments)
    writer = AvroOrders(schema_registry.url, topic)
    v1 = writer.make(300, "v1", seed=1)
    v2 = writer.make(200, "v2", seed=2)  # an extra optional field
    v3 = writer.make(200, "v3", seed=3)  # `channel` removed: the reader's default applies
    v1_id = writer.schema_id("v1")
    good_value = v1[0][1] or b""
    bad: list[tuple[bytes | None, bytes | None]] = [
        (b"bad-magic", b"\x01" + good_value[1:]),
        (b"unknown-id", framed(987654, b"\x02")),
        (b"not-matching", framed(v1_id, b"\x06abc")),  # a product, then nothing
        (b"too-short", b"\x00\x00\x01"),
    ]
    env = {"AEROGRID_SCHEMA_REGISTRY": schema_registry.url}
    with RunningApp(path, apache_kafka.bootstrap, env=env) as app:
        await produce(apache_kafka.bootstrap, topic, v1[:150] + bad[:2] + v1[150:])
        await produce(apache_kafka.bootstrap, topic, v2 + bad[2:] + v3)
        want = writer.product_sums()
        assert await converged(app.target, unique_name, "product_sum", want) == want
        channels = writer.channel_counts()
        assert await converged(app.target, unique_name, "channel_orders", channels) == channels

        dead = await read_topic(apache_kafka.bootstrap, f"{unique_name}.dlq", len(bad))
        reasons = {m.key: dict(m.headers) for m in dead}
        assert sorted(reasons) == sorted(k for k, _ in bad if k is not None)
        assert all(h["aerogrid-error-stage"] == b"decode" for h in reasons.values())
        assert b"magic byte" in reasons[b"bad-magic"]["aerogrid-error"]
        assert (
            b"schema id 987654 is not in the registry" in reasons[b"unknown-id"]["aerogrid-error"]
        )
        assert f"schema id {v1_id}".encode() in reasons[b"not-matching"]["aerogrid-error"]
        assert b"5-byte header" in reasons[b"too-short"]["aerogrid-error"]
        assert {m.value for m in dead} == {v for _, v in bad}  # the original bytes
        assert app.metric("aerogrid_decode_errors_total", {"topic": topic}) == len(bad)
        assert app.metric("aerogrid_records_in_total", {"topic": topic}) == 700 + len(bad)
        assert app.metric("aerogrid_schema_registry_up") == 1

        # send(): the Confluent wire format the reference deserializer reads.
        sent = await read_topic(apache_kafka.bootstrap, shipments, 700)
        assert len(sent) == 700
        assert all(m.value[:1] == b"\x00" for m in sent)
        read = deserialize(schema_registry.url, shipments, [m.value for m in sent])
        shipped = Counter((r["product"], r["quantity"]) for r in read)
        assert shipped == Counter((o["product"], o["quantity"]) for o in writer.orders)
        subjects = writer.client.get_subjects()
        assert f"{shipments}-value" in subjects

        # the grids' changelogs keep AeroGrid's own format (JSON rows, not Confluent frames)
        changelog = await read_topic(
            apache_kafka.bootstrap, f"{unique_name}.product_sum.changelog", len(want)
        )
        assert changelog and all(m.value[:1] != b"\x00" for m in changelog)
        assert all(json.loads(m.value) is not None for m in changelog)
        assert app.terminate() == 0


async def test_an_avro_topic_without_a_registry_fails_the_start_naming_the_variable(
    apache_kafka: ApacheKafka, unique_name: str, tmp_path: Path
) -> None:
    path = write_avro_orders_app(tmp_path, unique_name, f"{unique_name}-o", f"{unique_name}-s")
    app = RunningApp(path, apache_kafka.bootstrap, env={"AEROGRID_SCHEMA_REGISTRY": ""})
    with pytest.raises(RuntimeError, match="app exited with 1") as failed:
        app.start(timeout=30)
    assert "AEROGRID_SCHEMA_REGISTRY" in str(failed.value)
    assert "Traceback" not in str(failed.value)
    app.stop()


async def test_refused_registry_credentials_stop_the_app_with_a_clear_error(
    apache_kafka: ApacheKafka, auth_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    path = write_avro_orders_app(tmp_path, unique_name, f"{unique_name}-o", f"{unique_name}-s")
    assert auth_registry.username and auth_registry.password
    env = {
        "AEROGRID_SCHEMA_REGISTRY": auth_registry.url,
        "AEROGRID_SCHEMA_REGISTRY_USERNAME": auth_registry.username,
        "AEROGRID_SCHEMA_REGISTRY_PASSWORD": "not-the-password",
    }
    refused = RunningApp(path, apache_kafka.bootstrap, env=env)
    try:
        with pytest.raises(RuntimeError, match="app exited with 1") as failed:
            refused.start(timeout=60)
    finally:
        refused.stop()
    said = str(failed.value)
    assert f"schema registry {auth_registry.url} refused" in said
    assert "AEROGRID_SCHEMA_REGISTRY_PASSWORD" in said
    assert "Traceback" not in said and "not-the-password" not in said
    # The right password: the same app starts.
    env["AEROGRID_SCHEMA_REGISTRY_PASSWORD"] = auth_registry.password
    with RunningApp(path, apache_kafka.bootstrap, env=env) as app:
        assert app.metric("aerogrid_schema_registry_errors_total", {"kind": "auth"}) == 0
        assert app.terminate() == 0


async def test_app_tester_runs_an_avro_app_on_the_registry(
    schema_registry: TestRegistry, unique_name: str
) -> None:
    """AppTester frames and registers what a test sends as send() does, and the processor
    decodes it with writer schemas from the registry, as on Kafka."""
    app = aerogrid.App(unique_name)
    orders_topic = app.topic(f"{unique_name}-orders", value_type=Order, format="avro")
    totals = app.topic(f"{unique_name}-totals", value_type=Total, format="avro")
    units = app.Grid("units", columns=["units"], default=lambda: {"units": 0})

    @app.stream(orders_topic)
    async def count(orders: aerogrid.StreamInput) -> None:
        async for order in orders:
            units[order.product] = {"units": units[order.product]["units"] + order.quantity}
            await totals.send(order.product, Total(product=order.product, units=order.quantity))

    async with AppTester(app, schema_registry=schema_registry.url) as tester:
        await tester.send_many(orders_topic, [("o1", Order("apple", 2)), ("o2", Order("pear", 5))])
        await tester.send(orders_topic, b"\x00\x00\x0f\x42\x3f\x02", key="o3")  # unknown id
        await tester.send(orders_topic, Order("apple", 3), key="o4")
    assert dict(units.items()) == {"apple": {"units": 5}, "pear": {"units": 5}}
    assert [dict(letter.headers)["aerogrid-error"] for letter in tester.dead_letters] == [
        b"aerogrid.errors.DecodeError: schema id 999999 is not in the registry"
    ]
    values = [record.value or b"" for record in tester.sent]
    read = deserialize(schema_registry.url, f"{unique_name}-totals", values)
    assert read == [
        {"product": "apple", "units": 2},
        {"product": "pear", "units": 5},
        {"product": "apple", "units": 3},
    ]


class Order(aerogrid.Record):
    product: str
    quantity: int


class Total(aerogrid.Record):
    product: str
    units: int


async def test_keys_in_avro_and_values_in_json_schema_from_the_reference_serializers(
    schema_registry: TestRegistry, unique_name: str
) -> None:
    """Keys may use a registry format too; both are loaded before the batch is decoded."""
    topic_name = f"{unique_name}-orders"
    app = aerogrid.App(unique_name)
    orders_topic = app.topic(
        topic_name, key_type=str, value_type=Order, key_format="avro", format="json-schema"
    )
    units = app.Grid("units", columns=["units"], default=lambda: {"units": 0})

    @app.stream(orders_topic)
    async def count(orders: aerogrid.StreamInput) -> None:
        async for order_id, order in orders.items():
            units[f"{order_id}:{order.product}"] = {"units": order.quantity}

    client = SchemaRegistryClient({"url": schema_registry.url})
    keys = AvroSerializer(client, '"string"')
    values = JSONSerializer(json.dumps(ORDER_JSON_SCHEMA), client)
    key_context = SerializationContext(topic_name, MessageField.KEY)
    value_context = SerializationContext(topic_name, MessageField.VALUE)
    written = [
        (keys(f"o{i}", key_context), values({"product": f"p{i}", "quantity": i}, value_context))
        for i in range(1, 4)
    ]
    value_id = client.get_latest_version(f"{topic_name}-value").schema_id
    assert value_id is not None
    invalid = framed(value_id, b'{"product": "p9", "quantity": "nine"}')
    async with AppTester(app, schema_registry=schema_registry.url) as tester:
        await tester.send_many(orders_topic, [*written, (written[0][0], invalid)])
    assert dict(units.items()) == {f"o{i}:p{i}": {"units": i} for i in range(1, 4)}
    (letter,) = tester.dead_letters
    headers = dict(letter.headers)
    assert headers["aerogrid-error-stage"] == b"decode"
    assert b"quantity" in headers["aerogrid-error"]
    assert letter.value == invalid


async def test_the_readme_avro_app_runs(
    apache_kafka: ApacheKafka, schema_registry: TestRegistry, unique_name: str, tmp_path: Path
) -> None:
    """The README's Avro app, its names and registry URL replaced, on the reference client's
    records."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Company formats", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    topic = f"{unique_name}-orders"
    code = (
        code.replace('"orders-avro"', repr(unique_name))
        .replace('"http://localhost:8081"', repr(schema_registry.url))
        .replace('app.topic("orders"', f"app.topic({topic!r}")
    )
    assert repr(schema_registry.url) in code and repr(topic) in code
    path = tmp_path / "readme_avro_app.py"
    path.write_text(code)
    writer = AvroOrders(schema_registry.url, topic)
    records = writer.make(200, "v1", seed=21) + writer.make(100, "v3", seed=22)
    with RunningApp(path, apache_kafka.bootstrap) as app:
        await produce(apache_kafka.bootstrap, topic, records)
        want = {p: {"units_sold": row["units_sold"]} for p, row in writer.product_sums().items()}
        assert await converged(app.target, unique_name, "product_sum", want) == want
