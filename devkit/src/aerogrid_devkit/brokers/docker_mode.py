"""The docker mode: the official `apache/kafka` image through the Docker SDK.

One named container, a named volume for its data (so topics survive `down`/`up`), the
port bound to 127.0.0.1 only, waited on until Kafka answers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests
from docker.models.containers import Container

from aerogrid.net import free_port, port_is_free
from aerogrid.settings import BrokerSettings
from aerogrid_devkit.brokers.base import (
    CHECK_TIMEOUT,
    DEFAULT_PORT,
    HOST,
    BrokerError,
    BrokerStatus,
    check_kafka,
)
from aerogrid_devkit.brokers.docker_daemon import docker_cause, docker_client
from aerogrid_devkit.brokers.kafka_image import (
    CONTAINER_PORT,
    DATA_DIR,
    kafka_environment,
    published_address,
)
from aerogrid_devkit.brokers.pull_progress import PullProgress, split_image
from aerogrid_devkit.workspace import DockerConfig

__all__ = ["DockerMode"]

LABEL_MANAGED = "aerogrid.managed"
LABEL_SPEC = "aerogrid.spec"
STOP_TIMEOUT = 20


class DockerMode:
    """Apache Kafka in a named container with a named volume, on 127.0.0.1 only."""

    mode = "docker"
    #: Why this mode was chosen (set by `open_broker`; shown by the TUI).
    chosen_because = ""

    def __init__(
        self,
        config: DockerConfig | None = None,
        port: int | None = None,
        *,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or DockerConfig()
        #: 0: any free port (chosen now, since the advertised listener must name it).
        self.port = free_port() if port == 0 else port or DEFAULT_PORT
        self.on_progress = on_progress or (lambda _line: None)

    @property
    def uri(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def name(self) -> str:
        return self.config.container

    def settings(self) -> BrokerSettings:
        return BrokerSettings.parse(self.uri)

    def app_env(self) -> dict[str, str]:
        return {"AEROGRID_BROKER": self.uri}

    def environment(self) -> dict[str, str]:
        return kafka_environment(self.port, self.config.volume)

    def spec(self) -> str:
        """A digest of what the container is made from: a change means recreate it."""
        made_of = {
            "image": self.config.image,
            "port": self.port,
            "volume": self.config.volume,
            "env": self.environment(),
        }
        return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]

    @contextmanager
    def _docker_errors(self) -> Iterator[None]:
        """Docker's and the HTTP layer's exceptions, as one BrokerError naming the container."""
        try:
            yield
        except docker.errors.APIError as exc:
            raise BrokerError(
                f"Docker refused a request for {self.name}: {exc.explanation or exc}"
            ) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise BrokerError(f"Docker failed for {self.name}: {docker_cause(exc)}") from None

    # - up -

    def up(self) -> BrokerStatus:
        client = self._client()
        with self._docker_errors():
            notes = [self._ensure_image(client), self._ensure_volume(client)]
            container, note = self._ensure_container(client)
            notes.append(note)
            container.reload()
            if container.status == "running":
                verb = "already running"
                self._wait_ready(container, quiet=True)
            else:
                if not port_is_free(self.port):
                    raise BrokerError(
                        f"port {self.port} on {HOST} is taken, so container {self.name} cannot "
                        "publish Kafka there (is another broker running? aerogrid broker "
                        "status --mode embedded); choose another with --port or [broker] port"
                    )
                self.on_progress(f"starting container {self.name}")
                container.start()
                verb = "started"
                self._wait_ready(container)
        said = "; ".join(n for n in notes if n)
        return BrokerStatus(
            self.mode,
            True,
            self.uri,
            f"Apache Kafka ({self.config.image}) {verb} in container {self.name} on {self.uri}, "
            f"data in volume {self.config.volume}" + (f" ({said})" if said else ""),
        )

    def _ensure_image(self, client: docker.DockerClient) -> str:
        try:
            client.images.get(self.config.image)
            return ""
        except docker.errors.ImageNotFound:
            pass
        repository, tag = split_image(self.config.image)
        self.on_progress(f"pulling {self.config.image} (once; later starts reuse it)")
        events = client.api.pull(repository, tag=tag, stream=True, decode=True)
        PullProgress(self.config.image, self.on_progress).follow(events)
        client.images.get(self.config.image)
        return f"pulled {self.config.image}"

    def _ensure_volume(self, client: docker.DockerClient) -> str:
        try:
            client.volumes.get(self.config.volume)
            return ""
        except docker.errors.NotFound:
            client.volumes.create(name=self.config.volume, labels={LABEL_MANAGED: "true"})
            return f"created volume {self.config.volume}"

    def _ensure_container(self, client: docker.DockerClient) -> tuple[Container, str]:
        note = ""
        try:
            found: Container | None = client.containers.get(self.name)
        except docker.errors.NotFound:
            found = None
        if found is not None:
            if found.labels.get(LABEL_MANAGED) != "true":
                raise BrokerError(
                    f"a container named {self.name} exists and aerogrid did not make it: "
                    "remove it, or name another in [broker.docker] container = ..."
                )
            if found.labels.get(LABEL_SPEC) == self.spec():
                return found, ""
            self.on_progress(
                f"container {self.name} was made with other settings (image, port or "
                f"config): recreating it; the data stays in volume {self.config.volume}"
            )
            if found.status == "running":
                found.stop(timeout=STOP_TIMEOUT)
            found.remove()
            note = "recreated the container with the new settings"
        container = client.containers.create(
            self.config.image,
            name=self.name,
            detach=True,
            environment=self.environment(),
            ports={f"{CONTAINER_PORT}/tcp": (HOST, self.port)},
            volumes={self.config.volume: {"bind": DATA_DIR, "mode": "rw"}},
            labels={LABEL_MANAGED: "true", LABEL_SPEC: self.spec()},
        )
        return container, note or f"created container {self.name}"

    def _wait_ready(self, container: Container, *, quiet: bool = False) -> None:
        """Until Kafka answers on the published port (and the health check, if any, passes)."""
        timeout = self.config.start_timeout
        if not quiet:
            self.on_progress(f"waiting for Kafka on {self.uri} (up to {timeout:g} s)")
        deadline = time.monotonic() + timeout
        settings = self.settings()
        cause = "not checked yet"
        while True:
            container.reload()
            state: Mapping[str, Any] = container.attrs.get("State") or {}
            status = state.get("Status")
            if status in ("exited", "dead"):
                raise BrokerError(
                    f"container {self.name} stopped while Kafka was starting "
                    f"(exit code {state.get('ExitCode')}); its last log lines:\n"
                    + self._logs(container)
                )
            health = (state.get("Health") or {}).get("Status")
            if health == "unhealthy":
                raise BrokerError(
                    f"container {self.name} is unhealthy (its health check fails); "
                    "its last log lines:\n" + self._logs(container)
                )
            remaining = deadline - time.monotonic()
            reach = check_kafka(settings, timeout=max(0.5, min(CHECK_TIMEOUT, remaining)))
            if reach.ok and health in (None, "healthy"):
                if reach.advertised and self.uri not in reach.advertised:
                    raise BrokerError(
                        f"Kafka in {self.name} advertises {', '.join(reach.advertised)}, not "
                        f"{self.uri}: clients would fail after connecting (recreate it: "
                        "aerogrid broker down --mode docker --purge, then up)"
                    )
                return
            cause = reach.cause if not reach.ok else f"health check: {health}"
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"Kafka in container {self.name} did not answer on {self.uri} within "
                    f"{timeout:g} s ({cause}). The container is left running to look at "
                    f"(docker logs {self.name}; aerogrid broker down --mode docker stops it). "
                    "Its last log lines:\n" + self._logs(container)
                )
            time.sleep(0.5)

    def _logs(self, container: Container, lines: int = 30) -> str:
        try:
            text = container.logs(tail=lines).decode("utf-8", "replace")
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return f"  (no logs: {docker_cause(exc)})"
        shown = [f"  | {line}" for line in text.rstrip().splitlines()]
        return "\n".join(shown) or "  (the container wrote nothing)"

    # - down, status -

    def down(self, *, purge: bool = False) -> BrokerStatus:
        client = self._client()
        said: list[str] = []
        volume = self.config.volume
        with self._docker_errors():
            container = self._find(client)
            if container is None:
                said.append(f"no container {self.name}")
            else:
                if container.status == "running":
                    container.stop(timeout=STOP_TIMEOUT)
                    said.append(f"stopped container {self.name}")
                else:
                    said.append(f"container {self.name} was not running")
                if purge:
                    container.remove()
                    said.append("removed it")
            try:
                found = client.volumes.get(volume)
            except docker.errors.NotFound:
                said.append(f"no volume {volume}")
            else:
                if purge:
                    found.remove()
                    said.append(f"removed volume {volume} (its topics are gone)")
                else:
                    said.append(
                        f"its data stays in volume {volume} "
                        "(aerogrid broker down --purge removes it)"
                    )
        return BrokerStatus(self.mode, False, None, "; ".join(said))

    def status(self) -> BrokerStatus:
        try:
            client = docker_client(timeout=10)
            container = self._find(client)
        except BrokerError as exc:
            return BrokerStatus(self.mode, False, None, str(exc))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return BrokerStatus(self.mode, False, None, f"Docker failed: {docker_cause(exc)}")
        if container is None:
            return BrokerStatus(
                self.mode,
                False,
                None,
                f"no container {self.name} (start one with: aerogrid broker up --mode docker)",
            )
        state: Mapping[str, Any] = container.attrs.get("State") or {}
        bootstrap = published_address(container) or self.uri
        if container.status != "running":
            return BrokerStatus(
                self.mode,
                False,
                None,
                f"container {self.name} is {container.status} (exit code "
                f"{state.get('ExitCode')}); data in volume {self.config.volume}; start it "
                "with: aerogrid broker up --mode docker",
            )
        reach = check_kafka(BrokerSettings.parse(bootstrap))
        health = (state.get("Health") or {}).get("Status")
        shown = f", health {health}" if health else ""
        if not reach.ok:
            return BrokerStatus(
                self.mode,
                False,
                bootstrap,
                f"container {self.name} runs{shown} but Kafka does not answer: {reach.cause}",
            )
        image = container.attrs.get("Config", {}).get("Image", self.config.image)
        return BrokerStatus(
            self.mode,
            True,
            bootstrap,
            f"Apache Kafka ({image}) up in container {self.name} on {bootstrap}{shown}, "
            f"data in volume {self.config.volume}",
        )

    def _client(self) -> docker.DockerClient:
        try:
            return docker_client()
        except BrokerError as exc:
            raise BrokerError(f"{exc}: start Docker, or use --mode embedded") from None

    def _find(self, client: docker.DockerClient) -> Container | None:
        try:
            return client.containers.get(self.name)
        except docker.errors.NotFound:
            return None
