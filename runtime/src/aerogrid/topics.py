"""`Topic`: a Kafka topic with declared key and value types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aerogrid.codecs import Codec, codec_for
from aerogrid.limits import MAX_PAYLOAD_BYTES, headers_size

if TYPE_CHECKING:
    from aerogrid.app import App


@dataclass(frozen=True)
class OutgoingRecord:
    """A record an app sends; the engine produces it with the batch it belongs to."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class Topic:
    """A topic an app reads or writes. It is created when missing."""

    def __init__(
        self,
        app: App,
        name: str,
        *,
        key_type: Any = str,
        value_type: Any = dict,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.app = app
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

        A record bigger than the producer's limit raises ValueError here (in a handler: a
        handler error), rather than failing the whole batch when it is produced.
        """
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
        self.app._outbox.append(record)

    def __repr__(self) -> str:
        return f"<Topic {self.name} key={self.key_type!r} value={self.value_type!r}>"
