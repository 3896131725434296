"""`Topic`: a Kafka topic with declared key and value types, and the outbox it sends to.

A topic does not know its app. `Topic.send` queues the record in the `Outbox` bound to
the running task through a context variable (as the grids bind a handler's undo log):
the engine binds its outbox in every stream handler, timer and task it runs, and
produces what they sent with the batch in flight.

A topic in a registry format (`format="avro"`, ...) gets its codecs when the engine (or
`AppTester`) binds the app's schema registry to it (`bind_registry`); `send()` then
registers or looks up the writer schema before encoding, waiting out a registry outage
the way input does (`aerogrid.engine.schema_loading`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from aerogrid.errors import ConfigurationError
from aerogrid.limits import MAX_PAYLOAD_BYTES, headers_size
from aerogrid.record_formats import (
    PLAIN_FORMAT,
    Codec,
    check_format,
    codec_for,
    registry_codec_for,
)
from aerogrid.schemas.codec import RegistryCodec
from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import NAME_A_REGISTRY
from aerogrid.schemas.subjects import subject_strategy as check_subject_strategy


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


class RegistryBinding(Protocol):
    """What a registry-format topic is bound to: the app's registry client, and the
    policy that registers a schema for `send()` (`aerogrid.engine.schema_loading`)."""

    @property
    def registry(self) -> SchemaRegistry: ...

    async def prepare_send(self, codec: RegistryCodec, value: Any, *, topic: str) -> None: ...


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
        format: str = PLAIN_FORMAT,
        key_format: str = PLAIN_FORMAT,
        subject_strategy: str = "topic",
    ) -> None:
        check_format(format)
        check_format(key_format)
        subject_strategy = check_subject_strategy(subject_strategy)
        self.name = name
        self.key_type = key_type
        self.value_type = value_type
        self.partitions = partitions
        self.config = dict(config or {})
        self.format = format
        self.key_format = key_format
        self.subject_strategy = subject_strategy
        # Plain formats now (a bad type fails the declaration); registry ones when bound.
        self._key_codec = codec_for(key_type) if key_format == PLAIN_FORMAT else None
        self._value_codec = codec_for(value_type) if format == PLAIN_FORMAT else None
        #: The (key, value) codecs that use the registry, once bound (None: plain).
        self.registry_codecs: tuple[RegistryCodec | None, RegistryCodec | None] = (None, None)
        self._loader: RegistryBinding | None = None

    @property
    def uses_registry(self) -> bool:
        return self.format != PLAIN_FORMAT or self.key_format != PLAIN_FORMAT

    @property
    def key_codec(self) -> Codec:
        return self._key_codec or self._unbound()

    @property
    def value_codec(self) -> Codec:
        return self._value_codec or self._unbound()

    def bind_registry(self, loader: RegistryBinding) -> None:
        """Make the registry-format codecs, on `loader`'s registry (the app's)."""
        self._loader = loader
        key, value = None, None
        if self.key_format != PLAIN_FORMAT:
            key = self._key_codec = self._registry_codec(self.key_type, self.key_format, True)
        if self.format != PLAIN_FORMAT:
            value = self._value_codec = self._registry_codec(self.value_type, self.format, False)
        self.registry_codecs = (key, value)

    def _registry_codec(self, declared: Any, fmt: str, is_key: bool) -> RegistryCodec:
        assert self._loader is not None
        return registry_codec_for(
            declared,
            fmt,
            registry=self._loader.registry,
            topic=self.name,
            is_key=is_key,
            strategy=self.subject_strategy,
        )

    def _unbound(self) -> Codec:
        raise ConfigurationError(
            f"topic {self.name!r} uses a schema registry format ({self.format!r}); it works "
            f"once its app runs with a registry ({NAME_A_REGISTRY}), "
            "or under aerogrid.testing.AppTester"
        )

    async def encode(self, key: Any, value: Any) -> tuple[bytes | None, bytes | None]:
        """Key and value as record bytes; registry formats register their schema first."""
        if self.uses_registry:
            key_codec, value_codec = self.registry_codecs
            loader = self._loader
            for codec, item in ((key_codec, key), (value_codec, value)):
                if codec is not None and item is not None and loader is not None:
                    await loader.prepare_send(codec, item, topic=self.name)
        return self.key_codec.encode(key), self.value_codec.encode(value)

    async def send(
        self, key: Any = None, value: Any = None, *, headers: Mapping[str, bytes] | None = None
    ) -> None:
        """Queue a record; it is produced with the current batch (in its transaction).

        Only the app's streams, timers and tasks can send (the engine, or
        `aerogrid.testing.AppTester`, runs them with an outbox). A record bigger than
        the producer's limit raises ValueError here (in a handler: a handler error),
        rather than failing the whole batch when it is produced. On a registry-format
        topic the schema is registered (or looked up, once per type) first; while the
        registry is unreachable, send() waits for it.
        """
        outbox = _OUTBOX.get()
        if outbox is None:
            raise RuntimeError(
                f"topic {self.name!r}: send() works only in the app's streams, timers and "
                "tasks, while the app runs (or under aerogrid.testing.AppTester)"
            )
        encoded_key, encoded_value = await self.encode(key, value)
        record = OutgoingRecord(
            topic=self.name,
            key=encoded_key,
            value=encoded_value,
            headers=tuple((headers or {}).items()),
        )
        size = len(record.key or b"") + len(record.value or b"") + headers_size(record.headers)
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"topic {self.name!r}: a record of {size} bytes > limit {MAX_PAYLOAD_BYTES} bytes"
            )
        outbox.append(record)

    def __repr__(self) -> str:
        shown = "" if self.format == PLAIN_FORMAT else f" format={self.format}"
        return f"<Topic {self.name} key={self.key_type!r} value={self.value_type!r}{shown}>"
