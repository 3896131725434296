"""A paused active that woke up after its successor began, on a broker without
transactions: its late checkpoints make its cycles count for no replica, and a restore
drops those cycles without holding back the records after them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aerogrid import App
from aerogrid.engine import checkpoints, cycles
from aerogrid.engine.follower import ChangelogFollower
from aerogrid.settings import BrokerSettings


@dataclass
class _Message:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def _headers(generation: int, batch: int) -> list[tuple[str, bytes]]:
    return [(checkpoints.HEADER, f"{generation}.{batch}".encode())]


def test_a_late_checkpoint_of_an_older_generation_commits_nothing() -> None:
    log = checkpoints.CheckpointLog()
    log.add(checkpoints.Checkpoint(1, 4, {"t:0": 40}))
    log.add(checkpoints.Checkpoint(2, 0, {"t:0": 40}))  # the new active begins
    log.add(checkpoints.Checkpoint(1, 5, {"t:0": 50}))  # the old one woke up
    assert not log.is_committed(_headers(1, 5))
    assert log.is_committed(_headers(1, 4))
    assert log.last == checkpoints.Checkpoint(2, 0, {"t:0": 40})
    assert log.next_generation() == 3


def test_a_restore_drops_a_dead_cycle_and_applies_every_record_behind_it() -> None:
    """The checkpoints are read first, so a dead cycle's records are known dead on arrival:
    they must not hold back the later generation's records (no checkpoint comes to
    release them while the app is idle)."""
    app = App("zombie", broker="localhost:9")
    grid = app.Grid("sums", columns=["n"], default=lambda: {"n": 0})
    follower = ChangelogFollower(
        app,
        BrokerSettings.parse("localhost:9"),
        checkpointed=True,
        publish=lambda grid, changes, seq: None,
        state_lock=asyncio.Lock(),
    )
    for checkpoint in (
        checkpoints.Checkpoint(1, 1, {}),
        checkpoints.Checkpoint(2, 0, {}),
        checkpoints.Checkpoint(1, 2, {}),  # the old active's, after the new one began
        checkpoints.Checkpoint(2, 1, {}),
    ):
        follower._take(_Message(app.checkpoint_topic, b"c", checkpoints.encode(checkpoint)))
    for key, n, cycle, written_by in (
        ("a", 1, 1, (1, 1)),
        ("a", 9, 2, (1, 2)),
        ("b", 5, 2, (2, 1)),
    ):
        headers = [checkpoints.header(*written_by), cycles.header("L", cycle, last=True)]
        follower._take(
            _Message(app.changelog_topic("sums"), f'"{key}"'.encode(), b'{"n": %d}' % n, headers)
        )
    assert (grid.row_tuple("a"), grid.row_tuple("b")) == ((1,), (5,))
    assert follower.seqs["sums"] == 2
    assert (grid, "a") in follower.dropped  # written again by the next active
