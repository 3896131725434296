"""The hub's shared messages and coalescing, checked against the generated classes."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import aerogrid
from aerogrid.server import messages
from aerogrid.server.hub import GridHub
from aerogrid.server.messages import row_message
from aerogrid.v1 import grid_pb2


def make_grid() -> aerogrid.Grid:
    app = aerogrid.App("hubtest", broker="localhost:1")
    grid = app.Grid("g", columns=["n", "price", "when", "label", "flag", "none"])
    grid.ready = True
    return grid


ROW = (
    2**40,
    Decimal("12.50"),
    dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
    "ünïcode",
    True,
    None,
)


def test_hand_assembled_messages_equal_the_generated_ones() -> None:
    big = "x" * 300  # lengths past one varint byte
    delta = messages.delta_response(
        2**35,
        [
            messages.row_field("a", ROW),
            messages.row_field(7, (1, 2.5, None, big, False, None)),
            messages.delete_field("gone"),
        ],
        conflated=300,
    )
    expected = grid_pb2.SubscribeResponse(
        delta=grid_pb2.Delta(
            seq=2**35,
            upserts=[
                row_message("a", ROW, None),
                row_message(7, (1, 2.5, None, big, False, None), None),
            ],
            deletes=["gone"],
            conflated=300,
        )
    )
    assert grid_pb2.SubscribeResponse.FromString(delta) == expected
    assert delta == expected.SerializeToString()
    snapshot = messages.snapshot_response(5, [messages.row_field("a", ROW)], complete=True)
    assert grid_pb2.SubscribeResponse.FromString(snapshot) == grid_pb2.SubscribeResponse(
        snapshot=grid_pb2.Snapshot(seq=5, rows=[row_message("a", ROW, None)], complete=True)
    )
    empty = messages.snapshot_response(0, [], complete=False)
    assert grid_pb2.SubscribeResponse.FromString(empty).WhichOneof("event") == "snapshot"


async def test_shared_merge_keeps_the_latest_row_and_counts_what_it_merged() -> None:
    grid = make_grid()
    channel = GridHub().add_grid("hubtest", grid)
    channel.publish({"a": ROW, "b": ROW})
    channel.publish({"a": (1, None, None, "new", False, None)})
    channel.publish({"b": None})
    entries = channel.entries_after(0)
    assert entries is not None
    message, conflated = channel.shared_merge(0, entries)
    delta = grid_pb2.SubscribeResponse.FromString(message).delta
    assert conflated == 2 and delta.conflated == 2 and delta.seq == 3
    assert [r.key for r in delta.upserts] == ["a"] and delta.upserts[0].cells[
        3
    ].string_value == "new"
    assert list(delta.deletes) == ["b"]
    assert channel.shared_merge(0, entries)[0] is message  # shared, not rebuilt


async def test_shared_snapshot_follows_published_changes() -> None:
    grid = make_grid()
    grid["a"] = dict(zip(grid.columns, ROW, strict=True))
    grid.drain_changes()
    channel = GridHub().add_grid("hubtest", grid)
    first = channel.shared_snapshot(chunk_rows=2)
    assert channel.shared_snapshot(chunk_rows=2) is first  # same seq: shared
    for i in range(4):
        grid[f"k{i}"] = {"n": i}
    del grid["a"]
    channel.publish(grid.drain_changes())
    chunks = [grid_pb2.SubscribeResponse.FromString(c).snapshot for c in channel.shared_snapshot(2)]
    assert [c.complete for c in chunks] == [False, True]
    assert {r.key for c in chunks for r in c.rows} == {"k0", "k1", "k2", "k3"}
    assert all(c.seq == channel.seq == 1 for c in chunks)


async def test_coalescing_merges_bursts_but_not_the_first_change_after_quiet() -> None:
    grid = make_grid()
    channel = GridHub(coalesce_ms=100).add_grid("hubtest", grid)
    channel.publish({"a": ROW})
    assert channel.seq == 1  # after a quiet spell: at once
    for i in range(10):
        channel.publish({f"k{i}": ROW})
    assert channel.seq == 1  # within the window: held back
    assert await channel.wait_after(1, timeout=1.0)
    assert channel.seq == 2
    entries = channel.entries_after(1)
    assert entries is not None and len(entries) == 1 and len(entries[0].changes) == 10
    await asyncio.sleep(0.15)
    channel.publish({"z": ROW})
    assert channel.seq == 3


async def test_building_the_wire_image_lets_other_work_run() -> None:
    grid = make_grid()
    for i in range(50_000):
        grid[f"k{i}"] = {"n": i}
    grid.drain_changes()
    channel = GridHub().add_grid("hubtest", grid)
    ticks = 0

    async def other_work() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await channel.build_image(batch=5_000)
    other.cancel()
    assert ticks >= 5  # the loop ran between batches
    chunks = channel.shared_snapshot(chunk_rows=20_000)
    rows = [r for c in chunks for r in grid_pb2.SubscribeResponse.FromString(c).snapshot.rows]
    assert len(rows) == 50_000 and rows[-1].cells[0].int_value == 49_999
