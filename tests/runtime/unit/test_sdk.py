"""The SDK without a broker: records, codecs, grids, streams and the test helper."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

import aerogrid
from aerogrid.engine.processor import StopProcessing
from aerogrid.record_formats import codec_for
from aerogrid.runner.loader import load_app
from aerogrid.settings import BrokerSettings
from aerogrid.streams import Event, StreamInput
from aerogrid.testing import AppTester
from support.paths import REPO


class Line(aerogrid.Record):
    sku: str
    price: Decimal


class Order(aerogrid.Record):
    product: str
    quantity: int
    note: str | None = None
    placed: dt.datetime | None = None
    lines: list[Line] = []
    meta: dict[str, Any] = {}
    rush: bool = False
    weight: float = 0.0


# -- records and codecs --------------------------------------------------------------


def test_record_decodes_every_supported_type_and_ignores_unknown_fields() -> None:
    codec = codec_for(Order)
    order = codec.decode(
        b'{"product":"tea","quantity":2,"placed":"2026-01-02T03:04:05Z",'
        b'"lines":[{"sku":"a","price":"1.10"}],"meta":{"x":1},"rush":true,'
        b'"weight":1.5,"unknown":42}'
    )
    assert order == Order(
        product="tea",
        quantity=2,
        placed=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        lines=[Line(sku="a", price=Decimal("1.10"))],
        meta={"x": 1},
        rush=True,
        weight=1.5,
    )
    assert order.to_dict()["lines"] == [{"sku": "a", "price": Decimal("1.10")}]
    assert "product='tea'" in repr(order)
    assert codec.decode(codec.encode(order)) == order


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"quantity": 1}', "$.product"),
        (b'{"product": "x", "quantity": "1"}', "$.quantity"),
        (b'{"product": "x", "quantity": true}', "$.quantity"),
        (
            b'{"product": "x", "quantity": 1, "lines": [{"sku": "a", "price": []}]}',
            "$.lines[0].price",
        ),
    ],
)
def test_record_decode_error_names_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(aerogrid.DecodeError) as info:
        codec_for(Order).decode(payload)
    assert info.value.field == field
    assert field.rsplit(".", 1)[-1].split("[")[0] in str(info.value)


@pytest.mark.parametrize("payload", [b"", b"not json", b"[1,2]", b'{"product": "x"', b"\xff\xfe"])
def test_record_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(aerogrid.DecodeError):
        codec_for(Order).decode(payload)


def test_key_codecs() -> None:
    assert codec_for(int).decode(b"42") == 42
    assert codec_for(str).decode(b"abc") == "abc"
    assert codec_for(bytes).decode(b"\x00") == b"\x00"
    assert codec_for(dict).decode(b'{"a": 1}') == {"a": 1}
    with pytest.raises(aerogrid.DecodeError):
        codec_for(int).decode(b"4x2")
    with pytest.raises(aerogrid.DecodeError):
        codec_for(str).decode(b"\xff")
    with pytest.raises(aerogrid.DecodeError):
        codec_for(dict).decode(b"[1]")
    with pytest.raises(aerogrid.ConfigurationError):
        codec_for(float)


# -- grids ------------------------------------------------------------------------------


def make_grid() -> aerogrid.Grid:
    app = aerogrid.App("shop", broker="localhost:1")
    return app.Grid("stock", columns=["units", "price"], default=lambda: {"units": 0})


def test_grid_reads_default_copy_and_publishes_writes() -> None:
    grid = make_grid()
    row = grid["apple"]
    assert row == {"units": 0, "price": None}
    with pytest.raises(TypeError, match="read-only"):
        row["units"] = 99  # a copy could not change the grid: it refuses, not ignores
    assert "apple" not in grid and len(grid) == 0
    grid["apple"] = {"units": 3, "price": Decimal("1.5")}
    grid[7] = {"price": 2.0}
    assert grid["apple"] == {"units": 3, "price": Decimal("1.5")}
    assert grid[7] == {"units": 0, "price": 2.0}
    assert set(grid) == {"apple", 7} and len(grid) == 2 and 7 in grid
    del grid["apple"]
    assert grid.drain_changes() == {"apple": None, 7: (0, 2.0)}
    assert grid.drain_changes() == {}
    with pytest.raises(KeyError):
        del grid["nope"]


def test_grid_errors_name_app_grid_and_column() -> None:
    grid = make_grid()
    with pytest.raises(aerogrid.GridError, match="app 'shop' grid 'stock' has no column 'colour'"):
        grid["x"] = {"colour": "red"}
    with pytest.raises(aerogrid.GridError, match="column 'units'"):
        grid["x"] = {"units": [1, 2]}  # type: ignore[dict-item]
    with pytest.raises(aerogrid.GridError, match="row keys must be str or int"):
        grid[1.5] = {"units": 1}  # type: ignore[index]
    with pytest.raises(aerogrid.GridError):
        grid["x"] = 5  # type: ignore[assignment]
    assert len(grid) == 0 and not grid.has_changes()


def test_grid_declaration_errors() -> None:
    app = aerogrid.App("shop", broker="localhost:1")
    with pytest.raises(aerogrid.ConfigurationError):
        app.Grid("g", columns=[])
    with pytest.raises(aerogrid.GridError, match="unknown column 'nope'"):
        app.Grid("h", columns=["a"], default={"nope": 1})
    app.Grid("i", columns=["a"])
    with pytest.raises(aerogrid.ConfigurationError, match="twice"):
        app.Grid("i", columns=["a"])
    with pytest.raises(aerogrid.ConfigurationError):
        aerogrid.App("bad name!")


def test_broker_settings() -> None:
    assert BrokerSettings.parse("a:1,b:2").bootstrap_servers == ("a:1", "b:2")
    plain = BrokerSettings.parse("kafka://k:9092")
    assert plain.security_protocol == "PLAINTEXT"
    sasl = BrokerSettings.parse("kafka+sasl_ssl://me:s%40cret@k:9093?mechanism=scram-sha-512")
    assert (sasl.security_protocol, sasl.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert (sasl.sasl_username, sasl.sasl_password) == ("me", "s@cret")
    assert "s@cret" not in repr(sasl)
    options = sasl.client_options()
    assert options["sasl_plain_password"] == "s@cret" and "ssl_context" in options
    for bad in [
        "",
        "nohost",
        "http://x:1",
        "kafka+sasl://k:1?mechanism=GSSAPI",
        "kafka+sasl://k:1",
    ]:
        with pytest.raises(aerogrid.ConfigurationError):
            BrokerSettings.parse(bad)


# -- streams through the test helper --------------------------------------------------------


def orders_app(on_error: str = "dlq") -> tuple[aerogrid.App, aerogrid.Topic, aerogrid.Grid]:
    app = aerogrid.App("orders-test", broker="localhost:1")
    topic = app.topic("orders", key_type=str, value_type=Order)
    sums = app.Grid("sums", columns=["units", "orders"], default=lambda: {"units": 0, "orders": 0})

    @app.stream(topic, on_error=on_error)  # type: ignore[arg-type]
    async def sum_orders(orders: StreamInput) -> None:
        async for _key, order in orders.items():
            row = sums[order.product]
            sums[order.product] = {
                "units": row["units"] + order.quantity,
                "orders": row["orders"] + 1,
            }
            if order.quantity < 0:
                raise ValueError("negative quantity")

    return app, topic, sums


async def test_tester_feeds_records_and_publishes_rows() -> None:
    app, topic, sums = orders_app()
    async with AppTester(app) as tester:
        await tester.send(topic, Order(product="tea", quantity=2), key="o1")
        await tester.send_many(
            topic,
            [("o2", {"product": "tea", "quantity": 3}), ("o3", Order(product="bun", quantity=1))],
        )
    assert sums["tea"] == {"units": 5, "orders": 2}
    assert sums["bun"] == {"units": 1, "orders": 1}
    assert tester.published["sums"][-1] == ("bun", (1, 1))
    assert tester.counts.records == 3


async def test_handler_error_rolls_back_and_dead_letters_then_continues() -> None:
    app, topic, sums = orders_app()
    async with AppTester(app) as tester:
        await tester.send_many(
            topic,
            [
                ("o1", Order(product="tea", quantity=2)),
                ("o2", Order(product="tea", quantity=-5)),  # raises after writing: rolled back
                ("o3", b'{"product": "tea", "quantity": "x"}'),  # decode error
                ("o4", b"\x00garbage"),
                ("o5", Order(product="tea", quantity=1)),
            ],
        )
    assert sums["tea"] == {"units": 3, "orders": 2}
    assert tester.counts.handler_errors == 1 and tester.counts.decode_errors == 2
    assert [d.key for d in tester.dead_letters] == [b"o2", b"o3", b"o4"]
    headers = [dict(d.headers) for d in tester.dead_letters]
    assert headers[0]["aerogrid-error-stage"] == b"handler"
    assert b"negative quantity" in headers[0]["aerogrid-error"]
    assert headers[1]["aerogrid-error-field"] == b"$.quantity"
    assert headers[1]["aerogrid-source-topic"] == b"orders"
    assert headers[2]["aerogrid-source-offset"] == b"3"
    assert all(d.topic == "orders-test.dlq" for d in tester.dead_letters)
    # the dead letter carries the original bytes, so nothing is lost
    assert tester.dead_letters[2].value == b"\x00garbage"


async def test_rollback_restores_a_new_row_to_absent() -> None:
    app, topic, sums = orders_app()
    async with AppTester(app) as tester:
        await tester.send(topic, Order(product="new", quantity=-1), key="o1")
    assert "new" not in sums
    assert tester.published["sums"] == []


async def test_on_error_skip_and_stop() -> None:
    app, topic, sums = orders_app("skip")
    async with AppTester(app) as tester:
        await tester.send_many(topic, [("a", b"bad"), ("b", Order(product="x", quantity=1))])
    assert tester.counts.skipped == 1 and tester.dead_letters == [] and sums["x"]["units"] == 1

    app, topic, sums = orders_app("stop")
    async with AppTester(app) as tester:
        with pytest.raises(StopProcessing, match=r"orders\[0\]@0"):
            await tester.send(topic, b"bad", key="a")


async def test_events_several_streams_timers_and_tasks() -> None:
    app = aerogrid.App("multi", broker="localhost:1")
    a = app.topic("a", key_type=int, value_type=dict)
    b = app.topic("b", key_type=str, value_type=bytes)
    seen = app.Grid("seen", columns=["topic", "offset", "count"])
    ticks = app.Grid("ticks", columns=["n"], default={"n": 0})
    order: list[int] = []

    @app.stream([a])
    async def on_a(stream: StreamInput) -> None:
        async for event in stream.events():
            assert isinstance(event, Event)
            order.append(event.key)
            seen[f"a{event.key}"] = {
                "topic": event.topic,
                "offset": event.offset,
                "count": len(event.value),
            }

    @app.stream(b)
    async def on_b(stream: StreamInput) -> None:
        async for value in stream:
            seen[value.decode()] = {"topic": "b"}

    @app.timer(0.01)
    async def tick() -> None:
        ticks["t"] = {"n": ticks["t"]["n"] + 1}

    @app.task
    async def start() -> None:
        await a.send(1, {"hello": "world"})

    async with AppTester(app) as tester:
        await tester.send_many(a, [(k, {"k": k}) for k in (3, 1, 2)])
        await tester.send(b, b"hey", key="k")
        await tester.run_timer("tick")
        await tester.run_timer("tick")
        await tester.run_task("start")
    assert order == [3, 1, 2]
    assert seen["a1"] == {"topic": "a", "offset": 1, "count": 1}
    assert seen["hey"]["topic"] == "b"
    assert ticks["t"] == {"n": 2}
    assert [(r.topic, r.key, r.value) for r in tester.sent] == [("a", b"1", b'{"hello":"world"}')]


async def test_handler_that_returns_stops_processing() -> None:
    app = aerogrid.App("quits", broker="localhost:1")
    topic = app.topic("t")

    @app.stream(topic)
    async def handler(stream: StreamInput) -> None:
        return

    async with AppTester(app) as tester:
        with pytest.raises(StopProcessing, match="returned"):
            await tester.send(topic, {"a": 1}, key="k")


async def test_batches_wait_for_the_handler_to_finish_each_record() -> None:
    app = aerogrid.App("slow", broker="localhost:1")
    topic = app.topic("t", value_type=dict)
    grid = app.Grid("g", columns=["v"])

    @app.stream(topic)
    async def handler(stream: StreamInput) -> None:
        async for key, value in stream.items():
            await asyncio.sleep(0.01)  # the handler awaits mid-record
            grid[key] = {"v": value["v"]}

    async with AppTester(app) as tester:
        await tester.send_many(topic, [(str(i), {"v": i}) for i in range(5)])
        assert len(grid) == 5  # every record finished before send_many returned


# -- loading app files ----------------------------------------------------------------


def test_example_app_loads() -> None:
    app = load_app(REPO / "examples" / "ordersapp" / "app.py")
    assert app.name == "ordersapp" and list(app.grids) == ["product_sum"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import aerogrid\napp = aerogrid.App('x'\n", r"broken\.py:2.*SyntaxError"),
        ("import aerogrid\nimport no_such_module_here\n", r"broken\.py:2: ModuleNotFoundError"),
        ("x = 1\n", r"broken\.py:1: no aerogrid\.App"),
        ("import aerogrid\n\n\n1 / 0\n", r"broken\.py:4: ZeroDivisionError"),
        ("import aerogrid\napp = aerogrid.App('x')\n", r"has no @app\.stream"),
    ],
)
def test_broken_app_files_point_at_file_and_line(
    tmp_path: Path, source: str, expected: str
) -> None:
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(aerogrid.AppLoadError, match=expected):
        load_app(path)


def test_changelog_rows_round_trip_exactly_and_survive_new_columns() -> None:
    from aerogrid.engine import changelog

    app = aerogrid.App("cl", broker="localhost:1")
    old = app.Grid("g", columns=["n", "price", "when", "label"])
    row = (5, Decimal("1.10"), dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC), None)
    data = changelog.encode_row(old, row)
    assert changelog.decode_row(old, data) == row
    assert changelog.decode_row(old, None) is None
    for key in ("k", 42):
        assert changelog.decode_key(changelog.encode_key(key)) == key
    # a later version of the app added a column with a default
    new = aerogrid.App("cl2", broker="localhost:1").Grid(
        "g", columns=["n", "price", "when", "label", "region"], default={"region": "EU"}
    )
    assert changelog.decode_row(new, data) == (*row, "EU")
    for bad in (b"[1]", b'{"n": [1]}', b'{"n": {"$what": 1}}', b"nope"):
        with pytest.raises((ValueError, msgspec.DecodeError)):
            changelog.decode_row(old, bad)
    with pytest.raises(ValueError):
        changelog.decode_key(b"true")
