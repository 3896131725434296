"""Records too big, too deep or lying about their errors, without a broker.

* A row whose changelog record would exceed the limit is refused when assigned, so its
  input record is rolled back and dead-lettered; ordinary rows are never measured.
* A dead letter always fits the producer's limit: the value, then the key, then the
  producer's headers are cut, flagged with the original sizes.
* A producer's `aerogrid-*` headers are renamed `original-aerogrid-*`.
* Whatever a decoder raises is a per-record decode error.
"""

from __future__ import annotations

import datetime as dt
import inspect
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

import aerogrid
from aerogrid.engine import changelog
from aerogrid.engine.dead_letters import dead_letter, fit
from aerogrid.engine.processor import RawRecord
from aerogrid.errors import DecodeError, GridError
from aerogrid.limits import MAX_MESSAGE_BYTES, MAX_ROW_BYTES
from aerogrid.streams import StreamInput
from aerogrid.testing import AppTester


class Order(aerogrid.Record):
    product: str
    quantity: int


def orders_app() -> tuple[aerogrid.App, aerogrid.Topic, aerogrid.Grid]:
    app = aerogrid.App("bounds", broker="localhost:1")
    topic = app.topic("orders", key_type=str, value_type=Order)
    sums = app.Grid("sums", columns=["units", "orders"], default=lambda: {"units": 0, "orders": 0})

    @app.stream(topic)
    async def sum_orders(orders: StreamInput) -> None:
        async for _key, order in orders.items():
            sums["total"] = {"units": sums["total"]["units"] + order.quantity}
            row = sums[order.product]
            sums[order.product] = {"units": row["units"] + order.quantity, "orders": 1}

    return app, topic, sums


def test_the_limit_is_the_producers() -> None:
    """The engine's producers keep aiokafka's max_request_size: the limit dead letters obey."""
    default = inspect.signature(AIOKafkaProducer).parameters["max_request_size"].default
    assert default == MAX_MESSAGE_BYTES


# -- rows ---------------------------------------------------------------------------------


def test_a_row_over_the_changelog_limit_is_refused_when_assigned() -> None:
    grid = aerogrid.App("rows", broker="localhost:1").Grid("g", columns=["name", "n"])
    grid["small"] = {"name": "x" * 1000, "n": 1}
    with pytest.raises(GridError, match=rf"row \d+ bytes > limit {MAX_ROW_BYTES} bytes"):
        grid["big"] = {"name": "x" * MAX_ROW_BYTES, "n": 1}
    with pytest.raises(GridError, match=r"row \d+ bytes > limit"):
        grid["y" * MAX_ROW_BYTES] = {"name": "x", "n": 1}  # a huge key, the same
    with pytest.raises(GridError, match="row"):
        grid["partial"] = {"name": "é" * (MAX_ROW_BYTES // 2 + 1)}  # the slow path: 2 bytes each
    with pytest.raises(GridError, match="cannot be stored"):
        grid["int"] = {"name": "x", "n": 10**5000}  # more digits than Python prints
    assert set(grid) == {"small"}
    # at the limit exactly: accepted (the measure is the changelog record's)
    key, fixed = "edge", len(changelog.encode_row(grid, ("", 1)) or b"")
    grid[key] = {"name": "x" * (MAX_ROW_BYTES - fixed - len(changelog.encode_key(key))), "n": 1}
    assert changelog.record_size(grid, key, grid.row_tuple(key) or ()) == MAX_ROW_BYTES


def test_many_columns_of_medium_strings_are_measured_too() -> None:
    """No single cell is big, the row is: the per-cell threshold scales with the columns."""
    columns = [f"c{i}" for i in range(50)]
    grid = aerogrid.App("wide", broker="localhost:1").Grid("g", columns=columns)
    with pytest.raises(GridError, match="row"):
        grid["k"] = {c: "z" * (MAX_ROW_BYTES // 40) for c in columns}
    grid["k"] = {c: "z" * 100 for c in columns}


def test_every_cell_kind_round_trips_through_both_paths() -> None:
    grid = aerogrid.App("kinds", broker="localhost:1").Grid("g", columns=["a", "b", "c", "d", "e"])
    when = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    row: dict[str, Any] = {"a": 2**70, "b": Decimal("1.5"), "c": when, "d": None, "e": True}
    grid["full"] = row  # every column: the fast path (a big int measured, not refused)
    grid["part"] = {"b": Decimal("2.5")}  # the slow path
    assert grid["full"] == row and grid["part"]["b"] == Decimal("2.5")


async def test_a_big_row_rolls_back_its_record_and_dead_letters_it() -> None:
    app, topic, sums = orders_app()
    huge = "p" * MAX_MESSAGE_BYTES
    async with AppTester(app) as tester:
        await tester.send_many(
            topic,
            [
                ("o1", Order(product="tea", quantity=2)),
                ("o2", Order(product=huge, quantity=5)),  # "total" written first: rolled back
                ("o3", Order(product="tea", quantity=1)),
            ],
        )
    assert sums["total"] == {"units": 3, "orders": 0}
    assert sums["tea"] == {"units": 3, "orders": 1}
    assert tester.counts.handler_errors == 1
    (letter,) = tester.dead_letters
    headers = dict(letter.headers)
    assert letter.key == b"o2"
    assert headers["aerogrid-error-type"] == b"GridError"
    assert b"bytes > limit" in headers["aerogrid-error"]
    assert headers["aerogrid-truncated"] == b"value"
    original = topic.value_codec.encode(Order(product=huge, quantity=5)) or b""
    assert headers["aerogrid-original-size"] == str(len(original)).encode()
    assert _size(letter.key, letter.value, letter.headers) <= MAX_MESSAGE_BYTES


# -- dead letters -------------------------------------------------------------------------


def _size(key: bytes | None, value: bytes | None, headers: tuple[tuple[str, bytes], ...]) -> int:
    """What aiokafka checks against max_request_size (record batch estimate)."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers)))


@pytest.mark.parametrize(
    ("key", "value", "extra", "cut"),
    [
        (b"k", b"v" * 5_000_000, 0, b"value"),
        (b"k" * 5_000_000, b"v" * 10, 0, b"key"),
        (b"k" * 3_000_000, b"v" * 3_000_000, 0, b"key,value"),
        (b"k", b"v" * 10, 2_000_000, b"headers"),
        (b"k", b"v" * 900_000, 200_000, b"value"),  # the headers fit in a quarter: kept
        (b"k", b"v" * 900_000, 300_000, b"headers"),  # they do not: dropped, the value fits
        (None, None, 5_000_000, b"headers"),
    ],
    ids=["value", "key", "key-and-value", "headers", "value-not-headers", "headers-only", "none"],
)
def test_a_dead_letter_always_fits_and_says_what_was_cut(
    key: bytes | None, value: bytes | None, extra: int, cut: bytes
) -> None:
    theirs = (("trace", b"t" * extra),) if extra else ()
    record = RawRecord("orders", 3, 77, key, value, theirs)
    letter = dead_letter(
        "app.dlq", record, ValueError("boom"), stage="handler", stream="s", limit=MAX_MESSAGE_BYTES
    )
    headers = dict(letter.headers)
    assert _size(letter.key, letter.value, letter.headers) <= MAX_MESSAGE_BYTES
    assert headers["aerogrid-truncated"] == cut
    assert headers["aerogrid-source-offset"] == b"77"
    if b"value" in cut:
        assert headers["aerogrid-original-size"] == str(len(value or b"")).encode()
        assert (value or b"").startswith(letter.value or b"")
    else:
        assert letter.value == (b"" if key is None and value is None else value)
    if b"key" in cut:
        assert headers["aerogrid-original-key-size"] == str(len(key or b"")).encode()
    if b"headers" in cut:
        assert "trace" not in headers
        assert int(headers["aerogrid-original-headers-size"]) > extra
    elif extra:
        assert headers["trace"] == b"t" * extra


def test_a_record_that_fits_is_kept_whole() -> None:
    assert fit(b"k", b"v", (("h", b"x"),), 100) == (b"k", b"v", (("h", b"x"),), ())


def test_a_keyless_tombstones_dead_letter_can_be_produced() -> None:
    """Kafka clients refuse a record with neither key nor value: its dead letter has b""."""
    record = RawRecord("orders", 0, 7, None, None)
    letter = dead_letter("app.dlq", record, DecodeError("a tombstone"), stage="decode",
                         stream="s", limit=MAX_MESSAGE_BYTES)  # fmt: skip
    assert letter.key is None and letter.value == b""


def test_a_producers_aerogrid_headers_are_renamed() -> None:
    record = RawRecord(
        "orders",
        0,
        1,
        b"k",
        b"v",
        (("aerogrid-error", b"forged"), ("AeroGrid-Stream", b"x"), ("trace", b"t")),
    )
    letter = dead_letter(
        "a.dlq", record, DecodeError("bad", field="$.q"), stage="decode", stream="s", limit=10_000
    )
    names = [name for name, _ in letter.headers]
    headers = dict(letter.headers)
    assert names.count("aerogrid-error") == 1 and headers["aerogrid-error"].endswith(b"bad")
    assert headers["original-aerogrid-error"] == b"forged"
    assert headers["original-AeroGrid-Stream"] == b"x"
    assert headers["trace"] == b"t"
    assert headers["aerogrid-error-field"] == b"$.q"
    ours = {n for n in names if n.lower().startswith("aerogrid-")}
    assert ours == {
        "aerogrid-error",
        "aerogrid-error-type",
        "aerogrid-error-stage",
        "aerogrid-error-field",
        "aerogrid-stream",
        "aerogrid-source-topic",
        "aerogrid-source-partition",
        "aerogrid-source-offset",
    }


# -- decoders -------------------------------------------------------------------------------


async def test_anything_a_record_raises_is_a_decode_error_of_that_record() -> None:
    """A Record's own check (`__post_init__`) raising anything dead-letters only its record."""

    class Picky(aerogrid.Record):
        n: int

        def __post_init__(self) -> None:
            if self.n == 13:
                raise LookupError("unlucky")  # not a ValueError: msgspec lets it through

    app = aerogrid.App("picky", broker="localhost:1")
    topic = app.topic("numbers", key_type=str, value_type=Picky)
    seen = app.Grid("seen", columns=["n"])

    @app.stream(topic)
    async def keep(numbers: StreamInput) -> None:
        async for key, number in numbers.items():
            seen[key] = {"n": number.n}

    async with AppTester(app) as tester:
        await tester.send_many(topic, [("a", {"n": 1}), ("b", b'{"n": 13}'), ("c", {"n": 2})])
    assert set(seen) == {"a", "c"}
    (letter,) = tester.dead_letters
    headers = dict(letter.headers)
    assert headers["aerogrid-error-type"] == b"DecodeError"
    assert b"LookupError: unlucky" in headers["aerogrid-error"]
    assert tester.counts.decode_errors == 1


async def test_a_record_too_big_to_send_is_a_handler_error_not_a_failed_batch() -> None:
    app = aerogrid.App("echo", broker="localhost:1")
    source = app.topic("in", key_type=str, value_type=bytes)
    sink = app.topic("out", key_type=str, value_type=bytes)

    @app.stream(source)
    async def echo(items: StreamInput) -> None:
        async for key, value in items.items():
            await sink.send(key, value * 300_000)

    async with AppTester(app) as tester:
        await tester.send_many(source, [("a", b"x"), ("b", b"xxxx"), ("c", b"y")])
    assert [(r.key, len(r.value or b"")) for r in tester.sent] == [(b"a", 300_000), (b"c", 300_000)]
    (letter,) = tester.dead_letters
    assert letter.key == b"b"
    assert b"'out': a record of 1200" in dict(letter.headers)["aerogrid-error"]
