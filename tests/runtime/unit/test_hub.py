"""The hub: shared messages, coalescing and the subscription cursors it opens.

Hand-assembled messages are checked against the generated classes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

import aerogrid
from aerogrid.server import messages
from aerogrid.server.errors import Code, ServiceError
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


def subscribe_request(**fields: object) -> grid_pb2.SubscribeRequest:
    return grid_pb2.SubscribeRequest(app="hubtest", grid="g", **fields)  # type: ignore[arg-type]


async def next_message(messages: AsyncIterator[bytes]) -> grid_pb2.SubscribeResponse:
    return grid_pb2.SubscribeResponse.FromString(await asyncio.wait_for(anext(messages), 5))


async def test_a_cursor_past_the_window_falls_behind_and_starts_over_from_a_snapshot() -> None:
    grid = make_grid()
    hub = GridHub()
    channel = hub.add_grid("hubtest", grid)
    channel.max_entries = 3
    cursor = hub.open_cursor(channel, subscribe_request())
    assert not cursor.fell_behind()  # nothing sent yet
    async with contextlib.aclosing(cursor.messages()) as messages:
        assert (await next_message(messages)).schema.epoch == hub.epoch
        assert (await next_message(messages)).snapshot.complete
        assert channel.subscribers == 1
        for i in range(5):
            grid[f"k{i}"] = {"n": i}
            channel.publish(grid.drain_changes())
        assert cursor.fell_behind()
        snapshot = (await next_message(messages)).snapshot
        assert snapshot.seq == cursor.seq == 5 and len(snapshot.rows) == 5
        assert not cursor.fell_behind()
    assert channel.subscribers == 0


async def test_a_cursor_resumes_from_its_epoch_and_seq_without_a_snapshot() -> None:
    grid = make_grid()
    hub = GridHub()
    channel = hub.add_grid("hubtest", grid)
    for i in range(3):
        grid[f"k{i}"] = {"n": i}
        channel.publish(grid.drain_changes())
    cursor = hub.open_cursor(channel, subscribe_request(resume_epoch=hub.epoch, resume_seq=1))
    async with contextlib.aclosing(cursor.messages()) as messages:
        await next_message(messages)  # the schema
        delta = (await next_message(messages)).delta  # no snapshot: the missed changes
        assert delta.seq == 3 and [r.key for r in delta.upserts] == ["k1", "k2"]
        assert delta.conflated == 0


async def test_a_filtered_cursor_sends_only_its_keys_and_columns() -> None:
    grid = make_grid()
    grid["a"] = dict(zip(grid.columns, ROW, strict=True))
    grid["b"] = {"n": 2}
    grid.drain_changes()
    hub = GridHub()
    channel = hub.add_grid("hubtest", grid)
    cursor = hub.open_cursor(channel, subscribe_request(columns=["label", "n"], keys=["a"]))
    async with contextlib.aclosing(cursor.messages()) as messages:
        schema = (await next_message(messages)).schema
        assert [c.name for c in schema.columns] == ["label", "n"]
        rows = (await next_message(messages)).snapshot.rows
        assert [(r.key, r.cells[0].string_value, r.cells[1].int_value) for r in rows] == [
            ("a", "ünïcode", 2**40)
        ]
        grid["a"] = {"n": 1, "label": "x"}
        grid["b"] = {"n": 3}
        channel.publish(grid.drain_changes())
        grid["a"] = {"n": 9, "label": "y"}
        channel.publish(grid.drain_changes())
        delta = (await next_message(messages)).delta
        assert [(r.key, r.cells[0].string_value, r.cells[1].int_value) for r in delta.upserts] == [
            ("a", "y", 9)
        ]
        assert delta.conflated == 1 and delta.seq == 2


def test_a_cursor_refuses_columns_the_grid_does_not_have() -> None:
    hub = GridHub()
    channel = hub.add_grid("hubtest", make_grid())
    with pytest.raises(ServiceError) as info:
        hub.open_cursor(channel, subscribe_request(columns=["n", "nope"]))
    assert info.value.code == Code.INVALID_ARGUMENT and "nope" in info.value.message


async def test_a_key_filtered_cursor_hears_heartbeats_not_empty_deltas() -> None:
    grid = make_grid()
    hub = GridHub()
    channel = hub.add_grid("hubtest", grid)
    request = subscribe_request(keys=["a"], heartbeat_interval_ms=200)
    cursor = hub.open_cursor(channel, request)
    async with contextlib.aclosing(cursor.messages()) as messages:
        await next_message(messages)  # the schema
        assert (await next_message(messages)).snapshot.complete

        async def commit_other_keys() -> None:
            for i in range(12):  # every 50 ms: more often than the heartbeat
                grid[f"b{i}"] = {"n": i}
                channel.publish(grid.drain_changes())
                await asyncio.sleep(0.05)

        committing = asyncio.create_task(commit_other_keys())
        heard = [await next_message(messages) for _ in range(2)]
        await committing
        assert [m.WhichOneof("event") for m in heard] == ["heartbeat", "heartbeat"]
        assert 0 < heard[0].heartbeat.seq <= heard[1].heartbeat.seq <= channel.seq == 12
        grid["a"] = {"n": 1}
        channel.publish(grid.drain_changes())
        delta = (await next_message(messages)).delta
        assert delta.seq == 13 and [r.key for r in delta.upserts] == ["a"]
        assert delta.conflated == 0


async def test_a_key_filtered_cursor_resumes_past_entries_it_skipped() -> None:
    for resume_seq in (1, 4):  # the last delta the client saw, or the heartbeat after it
        grid = make_grid()
        hub = GridHub()
        channel = hub.add_grid("hubtest", grid)
        grid["a"] = {"n": 1}
        channel.publish(grid.drain_changes())  # seq 1: a delta for the subscriber
        for i in range(3):
            grid[f"b{i}"] = {"n": i}
            channel.publish(grid.drain_changes())  # seq 2-4: skipped, told by a heartbeat
        request = subscribe_request(
            keys=["a"], resume_epoch=hub.epoch, resume_seq=resume_seq, heartbeat_interval_ms=100
        )
        cursor = hub.open_cursor(channel, request)
        async with contextlib.aclosing(cursor.messages()) as messages:
            await next_message(messages)  # the schema
            heartbeat = await next_message(messages)  # no snapshot, no (empty) delta
            assert heartbeat.WhichOneof("event") == "heartbeat" and heartbeat.heartbeat.seq == 4
            grid["a"] = {"n": 2}
            channel.publish(grid.drain_changes())
            delta = (await next_message(messages)).delta
            assert [(r.key, r.cells[0].int_value) for r in delta.upserts] == [("a", 2)]
            assert delta.seq == 5
