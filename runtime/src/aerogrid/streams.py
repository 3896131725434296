"""Streams: how records reach a user's handler, one batch at a time.

The engine feeds a stream a batch of events and waits until the handler asks for the
event after the last one: asking for the next event is what marks the previous one
done, so a batch is committed only after every handler finished with every record.
Yielding an event inside a batch never suspends, which keeps the per-record cost low.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from aerogrid.grids import UndoLog, bind_undo_log
from aerogrid.topics import Topic

OnError = Literal["dlq", "skip", "stop"]


class Event(NamedTuple):
    """A decoded record with where it came from."""

    key: Any
    value: Any
    headers: Sequence[tuple[str, bytes]]
    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(frozen=True)
class StreamSpec:
    """A handler registered with `@app.stream`."""

    name: str
    topics: tuple[Topic, ...]
    handler: Callable[[StreamInput], Awaitable[None]]
    on_error: OnError


class StreamInput:
    """What a stream handler iterates: values, `.items()` or `.events()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._batch: Sequence[Event] = ()
        self._position = 0
        self._batch_done: asyncio.Future[None] | None = None
        self._next_batch: asyncio.Future[None] | None = None
        #: The handler task's undo log (grid, key) → before; see aerogrid.grids.
        self.undo: UndoLog = {}

    # -- engine side -----------------------------------------------------------------

    def feed(self, events: Sequence[Event]) -> asyncio.Future[None]:
        """Hand the handler a batch; the future completes when it asked past the end."""
        loop = asyncio.get_running_loop()
        self._batch = events
        self._position = 0
        self._batch_done = loop.create_future()
        if self._next_batch is not None and not self._next_batch.done():
            self._next_batch.set_result(None)
        return self._batch_done

    @property
    def current(self) -> Event | None:
        """The event the handler is working on (the last one it was given)."""
        return self._batch[self._position - 1] if self._position else None

    @property
    def remaining(self) -> int:
        return len(self._batch) - self._position

    def attach(self) -> None:
        """Called in a new handler task: point the task's undo log at this stream's."""
        bind_undo_log(self.undo)

    # -- handler side ----------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event; asking for it marks the previous one done."""
        while True:
            position = self._position
            if position < len(self._batch):
                self.undo.clear()
                self._position = position + 1
                return self._batch[position]
            await self._wait_for_batch()

    async def _wait_for_batch(self) -> None:
        """The batch is used up: tell the engine, and wait for the next one."""
        self.undo.clear()
        done = self._batch_done
        if done is not None and not done.done():
            done.set_result(None)
        self._next_batch = asyncio.get_running_loop().create_future()
        await self._next_batch

    # The three iterators inline the fast path of `next_event`: they are the per-record
    # cost of every app, and a generator resuming without a call is measurably cheaper.

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._values()

    async def _values(self) -> AsyncIterator[Any]:
        undo = self.undo
        while True:
            position = self._position
            if position < len(self._batch):
                undo.clear()
                self._position = position + 1
                yield self._batch[position][1]
            else:
                await self._wait_for_batch()

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """(key, value) pairs."""
        undo = self.undo
        while True:
            position = self._position
            if position < len(self._batch):
                undo.clear()
                self._position = position + 1
                event = self._batch[position]
                yield event[0], event[1]
            else:
                await self._wait_for_batch()

    async def events(self) -> AsyncIterator[Event]:
        """Events with key, value, headers, topic, partition, offset and timestamp."""
        while True:
            yield await self.next_event()
