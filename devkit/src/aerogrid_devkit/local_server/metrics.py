"""The local endpoint's `/metrics`: the devkit's own samples and every running app's.

The apps serve their metrics on their own ephemeral HTTP ports; a Prometheus scrape of
the one local endpoint should see them. So a GET of `/metrics` is answered by the
runtime's app as usual (which decides who may read metrics), and when it answers 200
its body is merged with each running app's `/metrics`, scraped over loopback with a
short timeout (an app that does not answer in time is left out of this scrape). Each
sample gets an `app` label (the app's workspace key) where it has none, and a `replica`
label (NAME-<k>) when the app runs several processes, so their series stay apart; the
same series is never listed twice, and a metric without samples is not listed.
Parsing and writing the text format is prometheus_client's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from aerogrid.net import LOOPBACK_HOST
from aerogrid.server.web import ASGIApp, ASGIMessage, ASGIReceive, ASGIScope, ASGISend
from aerogrid_devkit.supervisor import Supervisor, http_get

__all__ = ["SCRAPE_TIMEOUT", "WorkspaceMetrics", "merge_metrics"]

log = logging.getLogger(__name__)

#: How long one app's /metrics may take (apps are on loopback: it answers in ms).
SCRAPE_TIMEOUT: Final = 1.0


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def merge_metrics(own: str, apps: dict[str, str], replicas: dict[str, str] | None = None) -> bytes:
    """`own` and each app's exposition (by app or replica id) as one, in the text format.

    `replicas` maps a key of `apps` that is a replica's id to its app's key.
    """
    replica_of = replicas or {}
    merged: dict[str, Metric] = {}
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()

    def add(families: Iterable[Metric], source: str | None) -> None:
        for family in families:
            target = merged.get(family.name)
            if target is None:
                target = merged[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                labels = dict(sample.labels)
                if source is not None:
                    labels.setdefault("app", replica_of.get(source, source))
                    if source in replica_of:
                        labels.setdefault("replica", source)
                series = (sample.name, tuple(sorted(labels.items())))
                if series in seen:
                    continue
                seen.add(series)
                target.samples.append(sample._replace(labels=labels))

    add(text_string_to_metric_families(own), None)
    for source, text in apps.items():
        try:
            add(text_string_to_metric_families(text), source)
        except ValueError as exc:
            log.warning("local endpoint: the metrics of %s do not parse: %s", source, exc)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families([family for family in merged.values() if family.samples]))
    return generate_latest(registry)


class WorkspaceMetrics:
    """ASGI: `app`, with each running app's samples added to its `/metrics` answers."""

    def __init__(self, app: ASGIApp, supervisor: Supervisor) -> None:
        self._app = app
        self._supervisor = supervisor

    async def __call__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        if not (
            scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/metrics"
        ):
            await self._app(scope, receive, send)
            return
        start: ASGIMessage | None = None
        body = bytearray()

        async def keep(message: ASGIMessage) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self._app(scope, receive, keep)
        if start is None:
            return
        if start["status"] == 200:
            merged = merge_metrics(body.decode(), await self._scrape(), self._replica_apps())
            headers = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                (b"content-length", str(len(merged)).encode()),
            ]
            start = {**start, "headers": headers}
            body = bytearray(merged)
        await send(start)
        await send({"type": "http.response.body", "body": bytes(body)})

    def _replica_apps(self) -> dict[str, str]:
        """Each replica's id to its app's key, for the apps that run several."""
        return {
            replica.id: app.name
            for app in self._supervisor.apps.values()
            if len(app.replicas) > 1
            for replica in app.replicas
        }

    async def _scrape(self) -> dict[str, str]:
        """Each running replica's /metrics (by app key, or replica id when several), at once;
        those that fail are left out."""
        ports = {
            app.label(replica): replica.ports["http"]
            for app in self._supervisor.apps.values()
            for replica in app.running()
            if "http" in replica.ports
        }
        answers = await asyncio.gather(
            *(http_get(LOOPBACK_HOST, port, "/metrics", SCRAPE_TIMEOUT) for port in ports.values()),
            return_exceptions=True,
        )
        texts = {}
        for name, answer in zip(ports, answers, strict=True):
            if isinstance(answer, str):
                texts[name] = answer
            else:
                log.debug("local endpoint: no metrics from %s: %s", name, answer)
        return texts
