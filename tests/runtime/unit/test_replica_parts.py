"""The parts of replication that need no broker: cycle marks, the election rule, the
follower's ordering rules and the hub's seqs that skip numbers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition

from aerogrid import App
from aerogrid.engine import checkpoints, cycles
from aerogrid.engine.follower import ChangelogFollower
from aerogrid.engine.replica_group import ReplicaGroup, choose_active
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.hub import GridHub
from aerogrid.settings import BrokerSettings
from aerogrid.v1 import grid_pb2


def test_cycle_marks_round_trip_and_say_where_a_grid_s_cycle_ends() -> None:
    name, value = cycles.header("ab12cd34", 42, last=True)
    assert cycles.mark_of([(name, value)]) == cycles.CycleMark("ab12cd34", 42, True)
    assert cycles.mark_of([cycles.header("ab12cd34", 7, last=False)]) == ("ab12cd34", 7, False)
    assert cycles.mark_of([("other", b"x")]) is None
    assert cycles.mark_of([(cycles.HEADER, b"garbage")]) is None


def test_an_epoch_is_the_same_on_every_replica_and_changes_with_the_columns() -> None:
    assert cycles.epoch("L1", ["a", "b"]) == cycles.epoch("L1", ["a", "b"])
    assert cycles.epoch("L1", ["a", "b"]) != cycles.epoch("L1", ["a", "c"])
    assert cycles.epoch("L1", ["a"]) != cycles.epoch("L2", ["a"])
    # Before a lineage exists, each process has its own: a client moving gets a snapshot.
    assert cycles.epoch(None, ["a"]) != cycles.epoch(None, ["a"])


def test_the_active_keeps_the_role_and_a_zombie_s_stale_claim_loses() -> None:
    claims = {
        "m-a": {"replica": "a", "term": 0, "seen": 3, "progress": 10},
        "m-b": {"replica": "b", "term": 4, "seen": 4, "progress": 9},
        "m-c": {"replica": "c", "term": 3, "seen": 3, "progress": 12},  # paused, then back
    }
    assert choose_active(claims) == ("m-b", 4)
    # Nobody holds it: the furthest along takes it under a term above any seen.
    free = {
        "m-a": {"term": 0, "seen": 4, "progress": 10},
        "m-b": {"term": 0, "seen": 4, "progress": 12},
    }
    assert choose_active(free) == ("m-b", 5)
    # A standby that saw the last term goes before a replica just started (the active that
    # died, restarted), whose progress is fresher than the standby's claim.
    restarted = {
        "m-a": {"term": 0, "seen": 0, "progress": 30},
        "m-b": {"term": 0, "seen": 4, "progress": 12},
    }
    assert choose_active(restarted) == ("m-b", 5)
    # A tie goes to the smallest member id, the same on every leader.
    tie = {"m-b": {"progress": 1}, "m-a": {"progress": 1}}
    assert choose_active(tie) == ("m-a", 1)


def test_a_claim_changes_with_the_term_not_with_every_cycle() -> None:
    """The embedded broker starts a new generation for a member whose metadata changed:
    a claim that moved with each cycle kept three replicas rebalancing for good."""
    cycle = 7

    async def nothing() -> None:
        return None

    group = ReplicaGroup(
        "app",
        BrokerSettings.parse("localhost:9"),
        "r0",
        progress=lambda: cycle,
        on_revoked=nothing,
    )
    first = group.claim()
    assert json.loads(first) == {"replica": "r0", "term": 0, "seen": 0, "progress": 7}
    cycle = 90
    assert group.claim() == first
    # A new term (here: this member is handed the role) is a new claim, with the progress now.
    group.note_assignment(json.dumps({"term": 3, "active": "r0"}).encode())
    group.set_assigned([TopicPartition(group.topic, 0)])
    assert json.loads(group.claim()) == {"replica": "r0", "term": 3, "seen": 3, "progress": 90}


@dataclass
class _Message:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    offset: int = 0


def _app() -> tuple[App, Grid]:
    app = App("repl", broker="localhost:9")
    grid = app.Grid("sums", columns=["n"], default=lambda: {"n": 0})
    return app, grid


Published = list[tuple[int, dict[RowKey, RowTuple | None]]]


def _follower(app: App, *, checkpointed: bool) -> tuple[ChangelogFollower, Published]:
    published: Published = []
    follower = ChangelogFollower(
        app,
        BrokerSettings.parse("localhost:9"),
        checkpointed=checkpointed,
        publish=lambda grid, changes, seq: published.append((seq, dict(changes))),
        state_lock=asyncio.Lock(),
    )
    follower._publishing = True  # as after restore
    return follower, published


def _row(
    app: App,
    key: str,
    n: int,
    cycle: int,
    *,
    last: bool,
    extra: list[tuple[str, bytes]] | None = None,
) -> _Message:
    return _Message(
        app.changelog_topic("sums"),
        f'"{key}"'.encode(),
        b'{"n": %d}' % n,
        [*(extra or []), cycles.header("L", cycle, last=last)],
    )


def test_the_follower_publishes_whole_cycles_under_their_numbers_and_skips_held_ones() -> None:
    app, grid = _app()
    follower, published = _follower(app, checkpointed=False)
    follower._take(_row(app, "a", 1, 5, last=False))
    assert published == []  # the cycle is not complete yet
    follower._take(_row(app, "b", 2, 5, last=True))
    assert published == [(5, {"a": (1,), "b": (2,)})]
    # Its own cycles, read again after a step-down, are not applied twice.
    follower.note_committed(grid, "L", 9)
    follower._take(_row(app, "a", 100, 8, last=True))
    assert grid.row_tuple("a") == (1,)
    follower._take(_row(app, "a", 7, 10, last=True))
    assert published[-1] == (10, {"a": (7,)}) and follower.cycle == 10


def test_checkpointed_records_wait_for_their_checkpoint_and_dead_cycles_are_dropped() -> None:
    app, grid = _app()
    follower, published = _follower(app, checkpointed=True)
    gen1 = [checkpoints.header(1, 1)]
    follower._take(_row(app, "a", 1, 1, last=True, extra=gen1))
    assert published == [] and "a" not in grid  # no checkpoint for (1, 1) yet
    follower._take(
        _Message(app.checkpoint_topic, b"1", checkpoints.encode(checkpoints.Checkpoint(1, 1, {})))
    )
    assert published == [(1, {"a": (1,)})]
    # Generation 1's cycle 2 is cut short by a crash; generation 2 starts over from cycle 2.
    follower._take(_row(app, "a", 99, 2, last=True, extra=[checkpoints.header(1, 2)]))
    follower._take(_row(app, "b", 5, 2, last=True, extra=[checkpoints.header(2, 1)]))
    follower._take(
        _Message(app.checkpoint_topic, b"2", checkpoints.encode(checkpoints.Checkpoint(2, 0, {})))
    )
    assert grid.row_tuple("a") == (1,)  # the dead cycle's row never counted
    assert (grid, "a") in follower.dropped  # and is written again by the next active
    follower._take(
        _Message(app.checkpoint_topic, b"2", checkpoints.encode(checkpoints.Checkpoint(2, 1, {})))
    )
    assert published[-1] == (2, {"b": (5,)})


async def test_the_hub_resumes_from_any_seq_in_its_window_even_one_it_never_published() -> None:
    _, grid = _app()
    channel = GridHub().add_grid("repl", grid)
    channel.set_position("E", 10)
    channel.publish({"a": (1,)}, 12)
    channel.publish({"b": (2,)}, 15)
    assert channel.seq == 15
    # Another replica's seq 13 lies between two of ours: the entries after it are exact.
    after = channel.entries_after(13)
    assert after is not None and [e.seq for e in after] == [15]
    assert [e.seq for e in channel.entries_after(10) or []] == [12, 15]
    assert channel.entries_after(9) is None  # before the window: a snapshot
    assert channel.entries_after(15) == []
    # A seq it has not reached yet: it waits for it, then resumes.
    waiter = asyncio.create_task(channel.wait_reached(16, timeout=2))
    await asyncio.sleep(0)
    channel.publish({"c": (3,)}, 16)
    assert await waiter
    assert not await channel.wait_reached(99, timeout=0.05)


async def test_a_new_numbering_ends_subscriptions_so_they_resume_under_it() -> None:
    """A numbering that starts over under subscribers (the grid has shown something) ends
    their streams: the epoch they hold means nothing now, and they resume under the new."""
    hub = GridHub()
    _, grid = _app()
    grid.ready = True
    channel = hub.add_grid("repl", grid)
    channel.set_position("L-old", 0)
    channel.publish({"a": (1,)}, 3)
    cursor = hub.open_cursor(channel, grid_pb2.SubscribeRequest(app="repl", grid="sums"))
    messages = cursor.messages()
    schema = grid_pb2.SubscribeResponse.FromString(await anext(messages))
    assert schema.schema.epoch == "L-old"
    await anext(messages)  # the snapshot
    pending = asyncio.ensure_future(anext(messages))
    await asyncio.sleep(0.01)
    channel.set_position("L-new", 0)
    with pytest.raises(ServiceError) as raised:
        await pending
    assert raised.value.code is Code.UNAVAILABLE
    await messages.aclose()


async def test_a_new_app_s_first_numbering_keeps_its_subscribers() -> None:
    """Before a new app's lineage is known each replica has its own epoch; naming the shared
    one must not end the streams (every sheet would flash "reconnecting" at the start)."""
    hub = GridHub()
    _, grid = _app()
    grid.ready = True
    channel = hub.add_grid("repl", grid)
    channel.set_position("new-1234", 0)
    cursor = hub.open_cursor(channel, grid_pb2.SubscribeRequest(app="repl", grid="sums"))
    messages = cursor.messages()
    await anext(messages)  # the schema
    await anext(messages)  # the (empty) snapshot
    pending = asyncio.ensure_future(anext(messages))
    await asyncio.sleep(0.01)
    channel.set_position("L-abc", 0)
    channel.publish({"a": (1,)}, 1)
    delta = grid_pb2.SubscribeResponse.FromString(await asyncio.wait_for(pending, 2))
    assert delta.delta.seq == 1
    await messages.aclose()


def test_a_lineage_announcement_names_the_numbering_without_a_row() -> None:
    app, grid = _app()
    follower, published = _follower(app, checkpointed=False)
    announced: list[str | None] = []
    follower.on_lineage = lambda: announced.append(follower.lineage)
    follower._take(
        _Message(
            app.changelog_topic("sums"),
            cycles.LINEAGE_KEY,
            b"{}",
            [cycles.header("N1", 0, last=True)],
        )
    )
    assert announced == ["N1"] and len(grid) == 0 and published == []
    follower._take(_row(app, "a", 3, 1, last=True))
    assert published == [(1, {"a": (3,)})]


def test_restored_cycles_seed_the_window_so_a_restarted_process_resumes_by_deltas() -> None:
    _, grid = _app()
    channel = GridHub().add_grid("repl", grid)
    channel.set_position("E", 12, [(5, 8, {"a": (1,)}), (8, 12, {"b": (2,)})])
    assert channel.seq == 12
    assert [e.seq for e in channel.entries_after(5) or []] == [8, 12]
    assert [e.seq for e in channel.entries_after(9) or []] == [12]
    assert channel.entries_after(4) is None  # before the restored cycles: a snapshot
    # Cycles that do not end at the restored seq are not used.
    channel.set_position("F", 20, [(5, 8, {"a": (1,)})])
    assert channel.entries_after(8) is None and channel.entries_after(20) == []
