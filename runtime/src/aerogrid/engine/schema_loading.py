"""Writer schemas before decoding, and what happens while the schema registry cannot answer.

The one place of the registry outage policy. A record in a registry format names its
writer schema by id; a batch is decoded only once every id it names is loaded (each id
is fetched once: ids are immutable). While the registry cannot answer (down, timing
out, 5xx, or refusing our credentials), the batch is held back, not decoded: a record
must never be dead-lettered or skipped because of an outage. The engine's cycle then
ends after one backoff delay (`aerogrid.backoff`, at most `MAX_DELAY_SECONDS`) and the
next cycle tries the same batch again, so a stop or a handover of the active role waits
no longer than one delay. The input consumer is assigned its partitions rather than a
group member (`engine.inputs`), so a long outage cannot make it leave a group
(aiokafka's max.poll.interval applies to group members only); while the batch is held,
nothing new is read, and aiokafka fetches a partition again only once its previous
fetch was taken, so nothing piles up in memory.

An id the registry says does not exist is not an outage: the codec remembers it and its
records fail to decode (dead-lettered with the reason, like any decode error). `send()`
on a registry-format topic registers its schema through `prepare_send`, waiting out an
outage the same way. One log line when an outage starts, one every 30 s while it lasts,
one when it ends; metrics `aerogrid_schema_registry_up`, `_errors_total{kind}`,
`_pauses_total` and `aerogrid_records_waiting_on_registry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from aerogrid import metrics
from aerogrid.backoff import Backoff
from aerogrid.errors import ConfigurationError
from aerogrid.schemas.errors import (
    RegistryAuthError,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaRejected,
)
from aerogrid.schemas.registry import RegistrySettings, SchemaRegistry
from aerogrid.schemas.registry_settings import no_registry
from aerogrid.schemas.wire import HEADER_BYTES

if TYPE_CHECKING:
    from aerogrid.app import App
    from aerogrid.engine.processor import RecordLike
    from aerogrid.schemas.codec import RegistryCodec
    from aerogrid.topics import Topic

log = logging.getLogger("aerogrid.engine")

#: The longest a held batch waits between two attempts (and so the longest a cycle lasts).
MAX_DELAY_SECONDS = 5.0

#: How often a long outage is summed up in the log (one line at its start and end too).
SUMMARY_SECONDS = 30.0

#: What a failed registry call counts as, by error type.
_KINDS: tuple[tuple[type[Exception], str], ...] = (
    (RegistryAuthError, "auth"),
    (SchemaNotFound, "not_found"),
    (SchemaRejected, "rejected"),
    (RegistryUnavailable, "unavailable"),
)


def error_kind(exc: Exception) -> str:
    return next((kind for cls, kind in _KINDS if isinstance(exc, cls)), "other")


class SchemaLoader:
    """The app's schema registry client, bound to its registry-format topics."""

    def __init__(
        self,
        app_name: str,
        registry: SchemaRegistry,
        topics: Iterable[Topic],
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.app_name = app_name
        self.registry = registry
        self.backoff = backoff or Backoff(initial=0.5, maximum=MAX_DELAY_SECONDS)
        #: Called when an outage starts (with why) or ends (None).
        self.on_change: Callable[[str | None], None] = lambda outage: None
        #: topic → its (key, value) registry codecs.
        self._codecs: dict[str, tuple[RegistryCodec | None, RegistryCodec | None]] = {}
        for topic in topics:
            topic.bind_registry(self)
            self._codecs[topic.name] = topic.registry_codecs
        self._outage_since: float | None = None
        self._last_summary = 0.0
        self._outage_reason = ""
        self._waiting = 0
        metrics.SCHEMA_REGISTRY_UP.labels(app_name).set(1)
        metrics.RECORDS_WAITING_ON_REGISTRY.labels(app_name).set(0)

    @classmethod
    async def open(
        cls, app: App, settings: str | RegistrySettings | None = None
    ) -> SchemaLoader | None:
        """Bind the app's registry to its registry-format topics and check the credentials.

        None when no topic uses a registry. A ConfigurationError when one does and no
        registry is configured; the registry's RegistryAuthError when it refuses us (the
        app must not start). A registry that does not answer yet is only logged.
        """
        topics = app.registry_topics()
        if not topics:
            return None
        if isinstance(settings, str):
            settings = RegistrySettings.from_env(settings)
        resolved = settings or app.schema_registry
        if resolved is None:
            names = ", ".join(f"{t.name!r} ({t.format})" for t in topics)
            raise ConfigurationError(
                no_registry(f"app {app.name!r}, whose topics {names} use a registry format")
            )
        loader = cls(app.name, SchemaRegistry(resolved), topics)
        try:
            await loader.registry.check()
        except RegistryUnavailable as exc:
            metrics.SCHEMA_REGISTRY_ERRORS.labels(app.name, "unavailable").inc()
            log.warning(
                "app %s: the schema registry does not answer yet (%s); records that need a "
                "schema wait for it",
                app.name,
                exc,
            )
        except BaseException as exc:
            if isinstance(exc, Exception):
                metrics.SCHEMA_REGISTRY_ERRORS.labels(app.name, error_kind(exc)).inc()
            await loader.close()
            raise
        return loader

    async def close(self) -> None:
        await self.registry.aclose()

    @property
    def outage(self) -> str | None:
        """Why records wait (None: the registry answers)."""
        if self._outage_since is None:
            return None
        waited = time.monotonic() - self._outage_since
        return (
            f"schema registry unreachable for {waited:.0f} s ({self._outage_reason}); "
            f"{self._waiting} records wait for their schemas"
        )

    def needed(self, records: Sequence[RecordLike]) -> list[tuple[RegistryCodec, int]]:
        """Each (codec, writer schema id) that `records` need and is not loaded yet.

        A codec's answer depends only on a record's Confluent header (its first
        HEADER_BYTES) and on what the codec holds, which does not change during the scan:
        a record with the same header for the same codec as the one asked before it is
        answered already (a batch mostly repeats one header), so it is not asked again.
        """
        found: dict[tuple[int, int], tuple[RegistryCodec, int]] = {}
        codecs_of = self._codecs
        last_key_codec: RegistryCodec | None = None
        last_value_codec: RegistryCodec | None = None
        last_key: bytes | None = b"none asked yet"  # longer than any header
        last_value: bytes | None = last_key
        for record in records:
            codecs = codecs_of.get(record.topic)
            if codecs is None:
                continue
            key_codec, value_codec = codecs
            if key_codec is not None:
                data = record.key
                header = None if data is None else data[:HEADER_BYTES]
                if header != last_key or key_codec is not last_key_codec:
                    last_key, last_key_codec = header, key_codec
                    schema_id = key_codec.schema_id_to_load(data)
                    if schema_id is not None:
                        found[(id(key_codec), schema_id)] = (key_codec, schema_id)
            if value_codec is not None:
                data = record.value
                header = None if data is None else data[:HEADER_BYTES]
                if header != last_value or value_codec is not last_value_codec:
                    last_value, last_value_codec = header, value_codec
                    schema_id = value_codec.schema_id_to_load(data)
                    if schema_id is not None:
                        found[(id(value_codec), schema_id)] = (value_codec, schema_id)
        return list(found.values())

    async def load(self, records: Sequence[RecordLike]) -> None:
        """Load every writer schema `records` need; the registry's errors propagate,
        except an id it does not have (the codec remembers it: a decode error)."""
        for codec, schema_id in self.needed(records):
            try:
                await codec.load(schema_id)
            except SchemaNotFound as exc:
                metrics.SCHEMA_REGISTRY_ERRORS.labels(self.app_name, "not_found").inc()
                log.debug("schema id %d is not in the registry: %s", schema_id, exc)

    async def ready(self, records: Sequence[RecordLike], stopping: asyncio.Event) -> bool:
        """True once `records` can be decoded. Otherwise the registry is out: waits one
        backoff delay (or until `stopping`) and returns False, for the engine to hold
        the batch and try again."""
        try:
            await self.load(records)
        except (RegistryUnavailable, RegistryAuthError) as exc:
            self._failed(exc, waiting=len(records))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.backoff.next_delay())
            return False
        self._answered()
        return True

    async def prepare_send(self, codec: RegistryCodec, value: Any, *, topic: str) -> None:
        """Register or look up `value`'s writer schema, waiting out an outage (send())."""
        while True:
            try:
                await codec.prepare_send(value)
            except (RegistryUnavailable, RegistryAuthError) as exc:
                self._failed(exc, waiting=self._waiting, sending=topic)
                await asyncio.sleep(self.backoff.next_delay())
                continue
            except SchemaRejected:
                metrics.SCHEMA_REGISTRY_ERRORS.labels(self.app_name, "rejected").inc()
                raise
            self._answered()
            return

    def _failed(self, exc: Exception, *, waiting: int, sending: str | None = None) -> None:
        kind = error_kind(exc)
        metrics.SCHEMA_REGISTRY_ERRORS.labels(self.app_name, kind).inc()
        self._waiting = waiting
        metrics.RECORDS_WAITING_ON_REGISTRY.labels(self.app_name).set(waiting)
        self._outage_reason = str(exc)
        now = time.monotonic()
        if self._outage_since is not None:
            if now - self._last_summary >= SUMMARY_SECONDS:
                self._last_summary = now
                log.warning("app %s: still waiting: %s", self.app_name, self.outage)
            return
        self._outage_since = self._last_summary = now
        metrics.SCHEMA_REGISTRY_UP.labels(self.app_name).set(0)
        metrics.SCHEMA_REGISTRY_PAUSES.labels(self.app_name).inc()
        what = (
            f"send() to {sending!r} waits for it"
            if sending
            else f"consumption paused, {waiting} records wait for their writer schemas"
        )
        log.log(
            logging.ERROR if kind == "auth" else logging.WARNING,
            "app %s: schema registry %s (%s): %s; nothing is skipped, retrying with backoff",
            self.app_name,
            "refuses the app's credentials" if kind == "auth" else "unreachable",
            exc,
            what,
        )
        self.on_change(self.outage)

    def _answered(self) -> None:
        if self._outage_since is None:
            return
        waited = time.monotonic() - self._outage_since
        log.warning(
            "app %s: schema registry answers again after %.1f s; %d waiting records resume",
            self.app_name,
            waited,
            self._waiting,
        )
        self._outage_since = None
        self._waiting = 0
        self.backoff.reset()
        metrics.SCHEMA_REGISTRY_UP.labels(self.app_name).set(1)
        metrics.RECORDS_WAITING_ON_REGISTRY.labels(self.app_name).set(0)
        self.on_change(None)
