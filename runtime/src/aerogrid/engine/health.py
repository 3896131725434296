"""The broker watch: is the cluster reachable, and does it still hold what the app relies on?

aiokafka hides an outage: `getmany()` just returns nothing while its connections fail,
so an app would go on reporting itself healthy. One metadata request every second, on a
client of its own, answers three questions for the engine:

* reachable or not: an outage is one log line when it starts, a summary every
  `SUMMARY_SECONDS` while it lasts and one line when it ends; meanwhile the app is
  marked degraded (it serves its last committed state) and the Kafka client's own
  warnings are held back (see `client_logs`);
* topics gone: a topic the app created or reads vanished (the embedded broker keeps
  data in memory, so a restarted one has none): the engine must resynchronise;
* partitions added to an input topic: the engine must start reading them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient

from aerogrid import metrics
from aerogrid.engine import client_logs
from aerogrid.engine.connectivity import describe_failure
from aerogrid.settings import BrokerSettings

log = logging.getLogger("aerogrid.engine")

PROBE_SECONDS = 1.0
PROBE_TIMEOUT_SECONDS = 5.0
SUMMARY_SECONDS = 30.0


@dataclass(frozen=True)
class Probe:
    """One look at the cluster: None topics when it could not be reached."""

    topics: dict[str, int] | None
    error: str = ""


async def probe_cluster(client: AIOKafkaClient, *, bootstrap: bool) -> Probe:
    """Every topic with its partition count, or why the cluster did not answer.

    `bootstrap`: the client has not reached the cluster yet (it knows no brokers).
    """
    try:
        if bootstrap:
            await asyncio.wait_for(client.bootstrap(), PROBE_TIMEOUT_SECONDS)
        cluster = await asyncio.wait_for(client.fetch_all_metadata(), PROBE_TIMEOUT_SECONDS)
    except Exception as exc:
        return Probe(None, describe_failure(exc, PROBE_TIMEOUT_SECONDS))
    return Probe({t: len(cluster.partitions_for_topic(t) or ()) for t in cluster.topics()})


class BrokerWatch:
    """Probes the cluster in the background and tells the engine what changed."""

    def __init__(
        self,
        app_name: str,
        settings: BrokerSettings,
        *,
        owned_topics: Callable[[], Collection[str]],
        input_partitions: Callable[[], dict[str, int]],
        on_reachable: Callable[[str | None], None],
        on_topics_lost: Callable[[list[str]], None],
        on_partitions_added: Callable[[dict[str, int]], None],
        interval: float = PROBE_SECONDS,
    ) -> None:
        self.app_name = app_name
        self.settings = settings
        self.owned_topics = owned_topics
        self.input_partitions = input_partitions
        self.on_reachable = on_reachable
        self.on_topics_lost = on_topics_lost
        self.on_partitions_added = on_partitions_added
        self.interval = interval
        #: Why the cluster is unreachable, while it is (None: reachable).
        self.outage: str | None = None
        self._outage_since = 0.0
        self._last_summary = 0.0
        self._gate = client_logs.install()
        self._task: asyncio.Task[None] | None = None
        metrics.BROKER_REACHABLE.labels(app_name).set(1)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"broker-watch:{self.app_name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        self._gate.outage(False)

    async def _run(self) -> None:
        client = AIOKafkaClient(
            client_id=f"aerogrid-watch-{self.app_name}",
            request_timeout_ms=int(PROBE_TIMEOUT_SECONDS * 1000),
            **self.settings.client_options(),
        )
        bootstrapped = False
        try:
            while True:
                probe = await probe_cluster(client, bootstrap=not bootstrapped)
                bootstrapped = bootstrapped or probe.topics is not None
                self.observe(probe)
                await asyncio.sleep(self.interval)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    def observe(self, probe: Probe) -> None:
        """Act on one probe (public so tests can feed probes without a broker)."""
        now = time.monotonic()
        if probe.topics is None:
            if self.outage is None:
                self.outage, self._outage_since, self._last_summary = probe.error, now, now
                self._gate.outage(True)
                metrics.BROKER_REACHABLE.labels(self.app_name).set(0)
                metrics.BROKER_OUTAGES.labels(self.app_name).inc()
                log.warning(
                    "app %s: Kafka at %s unreachable (%s); serving the last committed state, "
                    "processing resumes when it is back",
                    self.app_name,
                    self.settings.bootstrap,
                    probe.error,
                )
                self.on_reachable(self.describe_outage())
            elif now - self._last_summary >= SUMMARY_SECONDS:
                self._last_summary = now
                self.outage = probe.error
                log.warning(
                    "app %s: Kafka at %s still unreachable after %.0f s (%s); "
                    "%d client log lines held back",
                    self.app_name,
                    self.settings.bootstrap,
                    now - self._outage_since,
                    probe.error,
                    self._gate.take_held(),
                )
                self.on_reachable(self.describe_outage())
            return
        if self.outage is not None:
            log.info(
                "app %s: Kafka at %s reachable again after %.1f s (%d client log lines held back)",
                self.app_name,
                self.settings.bootstrap,
                now - self._outage_since,
                self._gate.take_held(),
            )
            self.outage = None
            self._gate.outage(False)
            metrics.BROKER_REACHABLE.labels(self.app_name).set(1)
            self.on_reachable(None)
        lost = sorted(t for t in self.owned_topics() if t not in probe.topics)
        if lost:
            self.on_topics_lost(lost)
            return
        added = {
            topic: probe.topics[topic]
            for topic, known in self.input_partitions().items()
            if probe.topics.get(topic, 0) > known
        }
        if added:
            self.on_partitions_added(added)

    def describe_outage(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(time.time() - self.elapsed()))
        return f"Kafka at {self.settings.bootstrap} unreachable since {since} ({self.outage})"

    def elapsed(self) -> float:
        return time.monotonic() - self._outage_since if self.outage is not None else 0.0
