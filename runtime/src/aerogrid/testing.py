"""Test an app without a broker: feed records to its streams, assert on its grids.

    from aerogrid.testing import AppTester

    async def test_sums():
        async with AppTester(app) as tester:
            await tester.send(orders_topic, Order(product="apple", quantity=2), key="o1")
            assert product_sum["apple"] == {"units_sold": 2}

The same processor as in production decodes the records and runs the handlers, so
decode errors, dead letters and handler rollbacks behave exactly as they do on Kafka.
Topics in a registry format (`format="avro"`, ...) use the app's schema registry (or
`AppTester(app, schema_registry=URL)`): values are framed and registered as `send()`
does in production, and their writer schemas loaded before the batch is decoded; a
registry that does not answer raises RegistryUnavailable here instead of pausing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aerogrid.app import App
from aerogrid.engine.processor import Counts, Processor, RawRecord
from aerogrid.engine.schema_loading import SchemaLoader
from aerogrid.grids import Grid, RowKey, RowTuple
from aerogrid.topics import OutgoingRecord, Topic

if TYPE_CHECKING:
    from aerogrid.schemas.registry import RegistrySettings


class AppTester:
    """Runs an app's stream handlers in-process over records a test sends."""

    def __init__(self, app: App, *, schema_registry: str | RegistrySettings | None = None) -> None:
        self.app = app
        self._registry_settings = schema_registry
        #: The app's schema registry, bound on entry when a topic uses a registry format.
        self.schemas: SchemaLoader | None = None
        self.processor = Processor(app)
        #: Dead letters produced so far (topic `<app>.dlq`, with the error headers).
        self.dead_letters: list[OutgoingRecord] = []
        #: Records the app sent with `topic.send()`.
        self.sent: list[OutgoingRecord] = []
        #: Every published change per grid, in order: (row key, row or None).
        self.published: dict[str, list[tuple[RowKey, RowTuple | None]]] = {
            name: [] for name in app.grids
        }
        self._offsets = itertools.count()

    async def __aenter__(self) -> AppTester:
        for grid in self.app.grids.values():
            grid.ready = True
        self.schemas = await SchemaLoader.open(self.app, self._registry_settings)
        self.processor.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.processor.stop()
        if self.schemas is not None:
            await self.schemas.close()

    @property
    def counts(self) -> Counts:
        return self.processor.counts

    async def send(
        self,
        topic: Topic | str,
        value: Any = None,
        *,
        key: Any = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int = 0,
    ) -> None:
        """Feed one record; `value`/`key` as bytes are sent raw (to test bad input)."""
        await self.send_many(topic, [(key, value)], headers=headers, partition=partition)

    async def send_many(
        self,
        topic: Topic | str,
        items: list[tuple[Any, Any]],
        *,
        headers: Mapping[str, bytes] | None = None,
        partition: int = 0,
    ) -> None:
        """Feed (key, value) pairs as one batch, as the engine would."""
        resolved = self.app.topics[topic] if isinstance(topic, str) else topic
        records = []
        for key, value in items:
            encoded_key, encoded_value = await resolved.encode(
                None if isinstance(key, bytes) else key,
                None if isinstance(value, bytes) else value,
            )
            records.append(
                RawRecord(
                    topic=resolved.name,
                    partition=partition,
                    offset=next(self._offsets),
                    key=key if isinstance(key, bytes) else encoded_key,
                    value=value if isinstance(value, bytes) else encoded_value,
                    headers=tuple((headers or {}).items()),
                )
            )
        if self.schemas is not None:
            await self.schemas.load(records)
        await self.processor.process(records)
        self._collect()

    async def run_timer(self, name: str) -> None:
        """Run one tick of the timer named after its function."""
        timer = next(t for t in self.app.timers if t.name == name)
        with self.processor.outbox.bound():
            await timer.handler()
        self._collect()

    async def run_task(self, name: str) -> None:
        """Run the task named after its function, to its end."""
        task = next(t for t in self.app.tasks if t.name == name)
        with self.processor.outbox.bound():
            await task.handler()
        self._collect()

    def grid(self, name: str) -> Grid:
        return self.app.grids[name]

    def _collect(self) -> None:
        for name, grid in self.app.grids.items():
            self.published[name].extend(grid.drain_changes().items())
        self.dead_letters.extend(self.processor.drain_dead_letters())
        self.sent.extend(self.processor.outbox.drain())
