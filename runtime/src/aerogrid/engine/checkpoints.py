"""Exact grids on a broker without transactions: checkpoints that validate the changelog.

Each cycle of the engine is numbered (generation, batch): the generation is new at every
start, the batch counts cycles within it. Every changelog record of a cycle carries that
number in a header; once all of them are acknowledged, one checkpoint record — the
cycle's number and the input positions after it — goes to
`<app>.checkpoints`. On restore a changelog record counts only if its cycle's checkpoint
was written, so the records of a cycle cut short by a crash are ignored, and input
resumes from the positions of the last checkpoint: the grids hold every input record
exactly once. Dead letters and records the app sends may repeat after a crash.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

HEADER = "aerogrid-checkpoint"


class Checkpoint(msgspec.Struct, frozen=True):
    """One completed cycle: what it covered, so a restart can resume right after it."""

    generation: int
    batch: int
    #: "topic:partition" → the next input offset to read.
    inputs: dict[str, int]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Checkpoint)


def encode(checkpoint: Checkpoint) -> bytes:
    return _encoder.encode(checkpoint)


def decode(data: bytes | None) -> Checkpoint:
    return _decoder.decode(data or b"")


def header(generation: int, batch: int) -> tuple[str, bytes]:
    return (HEADER, f"{generation}.{batch}".encode())


def cycle_of(headers: Iterable[tuple[str, bytes]] | None) -> tuple[int, int] | None:
    """The (generation, batch) a changelog record was written in, or None (transactional)."""
    for name, value in headers or ():
        if name == HEADER:
            generation, _, batch = value.decode().partition(".")
            return int(generation), int(batch)
    return None


@dataclass
class CheckpointLog:
    """Everything the checkpoint topic says, folded: completed cycles and the last one."""

    completed: dict[int, int] = field(default_factory=dict)
    last: Checkpoint | None = None

    def add(self, checkpoint: Checkpoint) -> None:
        if checkpoint.generation < max(self.completed, default=0):
            # Written after a newer generation began: by a paused active that woke up
            # (nothing fences it without transactions). Its cycle counts for no one.
            return
        if checkpoint.batch > self.completed.get(checkpoint.generation, -1):
            self.completed[checkpoint.generation] = checkpoint.batch
        if self.last is None or (checkpoint.generation, checkpoint.batch) > (
            self.last.generation,
            self.last.batch,
        ):
            self.last = checkpoint

    def is_committed(self, headers: Iterable[tuple[str, bytes]] | None) -> bool:
        cycle = cycle_of(headers)
        if cycle is None:
            return True
        generation, batch = cycle
        return batch <= self.completed.get(generation, -1)

    def next_generation(self) -> int:
        return max(self.completed, default=0) + 1
