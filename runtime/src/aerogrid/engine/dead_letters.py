"""Dead letters: a failed input record as written to `<app>.dlq`, with why it failed.

A dead letter keeps the record's key, value and headers and adds the engine's headers
(`aerogrid-error`, `-error-type`, `-error-stage`, `-error-field`, `-stream`,
`-source-topic`, `-source-partition`, `-source-offset`). A producer's own `aerogrid-*`
headers are renamed `original-aerogrid-*`, so the engine's are the only ones.

A dead letter always fits the producer's message limit, so it is never dropped and never
fails its batch: when the record is too big, the value, then the key, then the
producer's headers are cut to fit; `aerogrid-truncated` names what was cut and
`aerogrid-original-size` (`-original-key-size`, `-original-headers-size`) how big it was.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Protocol

from aerogrid.errors import DecodeError
from aerogrid.limits import RECORD_OVERHEAD, headers_size
from aerogrid.topics import OutgoingRecord

#: How much of the error text `aerogrid-error` keeps.
ERROR_BYTES = 4000
_PREFIX = "aerogrid-"
#: Room for the truncation headers themselves.
_FLAGS_ROOM = 200

Headers = tuple[tuple[str, bytes], ...]


class Source(Protocol):
    """What a dead letter takes of the failed record (a RawRecord or a ConsumerRecord)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


def dead_letter(
    topic: str, record: Source, error: BaseException, *, stage: str, stream: str, limit: int
) -> OutgoingRecord:
    """The dead letter of `record`, for `topic`, no bigger than `limit` bytes."""
    detail = "".join(traceback.format_exception_only(type(error), error)).strip()
    ours: Headers = (
        ("aerogrid-error", detail.encode(errors="replace")[:ERROR_BYTES]),
        ("aerogrid-error-type", type(error).__name__.encode()),
        ("aerogrid-error-stage", stage.encode()),
        ("aerogrid-stream", stream.encode()),
        ("aerogrid-source-topic", record.topic.encode()),
        ("aerogrid-source-partition", str(record.partition).encode()),
        ("aerogrid-source-offset", str(record.offset).encode()),
    )
    if isinstance(error, DecodeError) and error.field:
        ours += (("aerogrid-error-field", error.field.encode()[:ERROR_BYTES]),)
    theirs = tuple(
        (f"original-{name}" if name.lower().startswith(_PREFIX) else name, value or b"")
        for name, value in record.headers or ()
    )
    room = limit - RECORD_OVERHEAD - _FLAGS_ROOM - headers_size(ours)
    key, value, theirs, flags = fit(record.key, record.value, theirs, room)
    if key is None and value is None:
        # A keyless tombstone (or a record the client could not read): Kafka clients
        # refuse to produce a record with neither, so its dead letter carries b"".
        value = b""
    return OutgoingRecord(topic, key, value, (*theirs, *ours, *flags))


def fit(
    key: bytes | None, value: bytes | None, headers: Headers, room: int
) -> tuple[bytes | None, bytes | None, Headers, Headers]:
    """Key, value and headers cut to fit `room` bytes, and the headers saying what was cut.

    The producer's headers are dropped if they take over a quarter of the room; the key
    and the value then share what is left, the smaller kept whole when it fits in half.
    """
    key_size, value_size, headers_bytes = len(key or b""), len(value or b""), headers_size(headers)
    if key_size + value_size + headers_bytes <= room:
        return key, value, headers, ()
    cut: list[str] = []
    sizes: list[tuple[str, bytes]] = []
    if headers_bytes > room // 4:
        headers = ()
        cut.append("headers")
        sizes.append(("aerogrid-original-headers-size", str(headers_bytes).encode()))
    else:
        room -= headers_bytes
    room = max(room, 0)
    if key_size + value_size > room:
        if key_size <= room // 2:
            value_room, key_room = room - key_size, key_size
        elif value_size <= room // 2:
            value_room, key_room = value_size, room - value_size
        else:
            value_room = key_room = room // 2
        if key is not None and key_size > key_room:
            key = key[:key_room]
            cut.append("key")
            sizes.append(("aerogrid-original-key-size", str(key_size).encode()))
        if value is not None and value_size > value_room:
            value = value[:value_room]
            cut.append("value")
            sizes.append(("aerogrid-original-size", str(value_size).encode()))
    flags: Headers = (("aerogrid-truncated", ",".join(sorted(cut)).encode()), *sizes)
    return key, value, headers, flags
