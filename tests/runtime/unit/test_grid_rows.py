"""Rows read from a grid: every way of reading a dict works, every way of changing one
raises (the trap `grid[key]['x'] += 1`, which did nothing), and the seed's forms of
writing a row back keep working."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest

import aerogrid
from aerogrid.grids import ReadOnlyRow
from aerogrid.streams import StreamInput
from aerogrid.testing import AppTester


def stock() -> aerogrid.Grid:
    app = aerogrid.App("shop", broker="localhost:1")
    grid = app.Grid("stock", columns=["units", "price"], default=lambda: {"units": 0})
    grid["apple"] = {"units": 3, "price": 1.5}
    grid.drain_changes()
    return grid


def test_the_trap_raises_and_names_the_form_that_works() -> None:
    grid = stock()
    with pytest.raises(TypeError) as info:
        grid["apple"]["units"] += 1
    assert "grid[key] = {**grid[key], 'units': new_value}" in str(info.value)
    # The default row of a missing key refuses too, and nothing was written.
    with pytest.raises(TypeError, match="read-only"):
        grid["pear"]["units"] = 1
    assert grid["apple"] == {"units": 3, "price": 1.5}
    assert "pear" not in grid and grid.drain_changes() == {}


@pytest.mark.parametrize(
    "change",
    [
        lambda row: row.__delitem__("units"),
        lambda row: row.update(units=1),
        lambda row: row.update({"units": 1}),
        lambda row: row.__ior__({"units": 1}),
        lambda row: row.setdefault("units", 1),
        lambda row: row.pop("units"),
        lambda row: row.popitem(),
        lambda row: row.clear(),
    ],
    ids=["del", "update-kwargs", "update", "ior", "setdefault", "pop", "popitem", "clear"],
)
def test_every_change_in_place_raises(change: Callable[[ReadOnlyRow], object]) -> None:
    grid = stock()
    row = grid["apple"]
    with pytest.raises(TypeError, match=r"read-only: .* grid\[key\] = "):
        change(row)
    assert row == {"units": 3, "price": 1.5} == grid["apple"]


def test_the_seed_forms_of_reading_and_writing_back_still_work() -> None:
    grid = stock()
    row = grid["apple"]
    assert isinstance(row, dict) and row == {"units": 3, "price": 1.5}
    assert grid.get("apple") == row and grid.get("pear") is None
    assert grid.get("pear", {}) == {}
    assert repr(row) == "{'units': 3, 'price': 1.5}"
    assert list(row.items()) == [("units", 3), ("price", 1.5)] and "units" in row
    grid["apple"] = {"units": grid["apple"]["units"] + 1}
    grid["apple"] = {**grid["apple"], "price": 2.0}
    grid["apple"] = grid["apple"] | {"units": grid["apple"]["units"] + 1}
    grid["pear"] = grid["pear"]  # the default row, written as it is
    assert grid.drain_changes() == {"apple": (5, 2.0), "pear": (0, None)}
    assert dict(grid.items()) == {
        "apple": {"units": 5, "price": 2.0},
        "pear": {"units": 0, "price": None},
    }


@pytest.mark.parametrize(
    "copy_of",
    [dict, ReadOnlyRow.copy, lambda r: {**r}, lambda r: r | {}, copy.copy, copy.deepcopy],
    ids=["dict", "copy-method", "splat", "or", "copy.copy", "copy.deepcopy"],
)
def test_a_copy_is_a_plain_dict_that_can_change(copy_of: Callable[[ReadOnlyRow], Any]) -> None:
    row = stock()["apple"]
    mine = copy_of(row)
    assert type(mine) is dict and mine == row
    mine["units"] += 1
    assert mine["units"] == 4 and row["units"] == 3


def test_a_row_encodes_as_the_dict_it_equals() -> None:
    grid = stock()
    grid["pear"] = {"units": 1, "price": Decimal("2.50")}
    apple, pear = grid["apple"], grid["pear"]
    assert json.loads(json.dumps(apple)) == {"units": 3, "price": 1.5}
    assert msgspec.json.encode(pear) == b'{"units":1,"price":"2.50"}'
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(apple)) == apple
    assert msgspec.json.encode({"rows": [apple]}) == b'{"rows":[{"units":3,"price":1.5}]}'
    restored = pickle.loads(pickle.dumps(apple))
    assert type(restored) is dict and restored == apple


async def test_a_handler_that_falls_into_the_trap_is_dead_lettered_not_silent() -> None:
    app = aerogrid.App("counter", broker="localhost:1")
    hits = app.topic("hits", key_type=str, value_type=dict)
    counts = app.Grid("counts", columns=["n"], default={"n": 0})

    @app.stream(hits)
    async def count(stream: StreamInput) -> None:
        async for key, _ in stream.items():
            if key == "trap":
                counts[key]["n"] += 1
            else:
                counts[key] = {**counts[key], "n": counts[key]["n"] + 1}

    async with AppTester(app) as tester:
        await tester.send_many(hits, [("a", {}), ("trap", {}), ("a", {})])
    assert dict(counts.items()) == {"a": {"n": 2}}
    (letter,) = tester.dead_letters
    assert letter.key == b"trap"
    assert b"grid rows are read-only" in dict(letter.headers)["aerogrid-error"]
    assert tester.published["counts"] == [("a", (2,))]  # one batch: its last value
