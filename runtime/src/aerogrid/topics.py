"""`Topic`: a Kafka topic with declared key and value types, and the outbox it sends to.

A topic does not know its app. `Topic.send` queues the record in the `Outbox` bound to
the running task through a context variable (as the grids bind a handler's undo log):
the engine binds its outbox in every stream handler, timer and task it runs, and
produces what they sent with the batch in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from aerogrid.limits import MAX_PAYLOAD_BYTES, headers_size
from aerogrid.record_formats import Codec, codec_for


@dataclass(frozen=True)
class OutgoingRecord:
    """A record an app sends; the engine produces it with the batch it belongs to."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class Outbox:
    """The records an app's code sent that the engine has not produced yet."""

    def __init__(self) -> None:
        self._records: list[OutgoingRecord] = []

    @contextmanager
    def bound(self) -> Iterator[Outbox]:
        """Make `Topic.send` in this task (and the tasks it starts) queue here."""
        token = _OUTBOX.set(self)
        try:
            yield self
        finally:
            _OUTBOX.reset(token)

    def append(self, record: OutgoingRecord) -> None:
        self._records.append(record)

    def drain(self) -> list[OutgoingRecord]:
        """Every record sent since the last drain, in the order sent."""
        records, self._records = self._records, []
        return records

    def __len__(self) -> int:
        return len(self._records)


#: The outbox of the app whose stream, timer or task runs the current task; None elsewhere.
_OUTBOX: ContextVar[Outbox | None] = ContextVar("aerogrid_outbox", default=None)


class Topic:
    """A topic an app reads or writes. It is created when missing."""

    def __init__(
        self,
        name: str,
        *,
        key_type: Any = str,
        value_type: Any = dict,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.key_type = key_type
        self.value_type = value_type
        self.partitions = partitions
        self.config = dict(config or {})
        self.key_codec: Codec = codec_for(key_type)
        self.value_codec: Codec = codec_for(value_type)

    async def send(
        self, key: Any = None, value: Any = None, *, headers: Mapping[str, bytes] | None = None
    ) -> None:
        """Queue a record; it is produced with the current batch (in its transaction).

        Only the app's streams, timers and tasks can send (the engine, or
        `aerogrid.testing.AppTester`, runs them with an outbox). A record bigger than
        the producer's limit raises ValueError here (in a handler: a handler error),
        rather than failing the whole batch when it is produced.
        """
        outbox = _OUTBOX.get()
        if outbox is None:
            raise RuntimeError(
                f"topic {self.name!r}: send() works only in the app's streams, timers and "
                "tasks, while the app runs (or under aerogrid.testing.AppTester)"
            )
        record = OutgoingRecord(
            topic=self.name,
            key=self.key_codec.encode(key),
            value=self.value_codec.encode(value),
            headers=tuple((headers or {}).items()),
        )
        size = len(record.key or b"") + len(record.value or b"") + headers_size(record.headers)
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"topic {self.name!r}: a record of {size} bytes > limit {MAX_PAYLOAD_BYTES} bytes"
            )
        outbox.append(record)

    def __repr__(self) -> str:
        return f"<Topic {self.name} key={self.key_type!r} value={self.value_type!r}>"
