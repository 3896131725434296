"""A fake Docker Engine API, because no Docker daemon runs on these machines.

It stands in for dockerd so the devkit's docker broker mode can be tested through the real
Docker SDK (`docker.from_env()` honours DOCKER_HOST): an HTTP server on a unix socket that
answers the few endpoints that mode uses, under the API version prefix (`/v1.47/...`):

* `/_ping`, `/version`;
* images: inspect, pull (`POST /images/create`, streamed as chunked JSON progress events);
* volumes: create, inspect, remove (refused while a container uses the volume);
* containers: create, inspect, list, start, stop, remove, logs (multiplexed frames).

Every request is recorded (`requests`, `calls`), and anything it does not implement answers
404 and is listed in `unhandled`, so a test notices when the devkit starts using more.

Starting a container really starts a Kafka-compatible broker: the embedded broker (tansu) on
the container's published 127.0.0.1 host port, advertising what the container's
KAFKA_ADVERTISED_LISTENERS says for that listener. So the docker mode's health wait, its
advertised-listener check and a produce/consume through it are real; what is fake is the
container itself (no image is run, volumes hold no files: tansu keeps data in memory, so
data surviving a restart is NOT exercised, only that the same named volume is kept and
mounted again). Brokers always bind 127.0.0.1, whatever HostIp a request asks for.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

from aerogrid_devkit import embedded
from support.lifecycle import Started

API_VERSION = "1.47"
_VERSIONED = re.compile(r"^/v(\d+\.\d+)(/.*)$")
#: What the fake's Kafka stand-in prints when it is told never to become healthy.
FATAL_LINE = "ERROR Exiting Kafka due to fatal exception during startup. (kafka.Kafka$)"


@dataclass(frozen=True)
class Request:
    """One API call as the SDK made it (path without the version prefix)."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    versioned: bool


@dataclass
class FakeContainer:
    id: str
    name: str
    image: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    status: str = "created"
    exit_code: int = 0
    started_at: str = "0001-01-01T00:00:00Z"
    log: list[str] = field(default_factory=list)
    broker: subprocess.Popen[bytes] | None = None
    broker_port: int | None = None

    @property
    def env(self) -> dict[str, str]:
        pairs = (item.partition("=") for item in self.config.get("Env") or [])
        return {k: v for k, _, v in pairs}

    @property
    def volumes(self) -> list[tuple[str, str]]:
        """(volume name, mount point) of each named-volume bind."""
        found = []
        for bind in self.host_config.get("Binds") or []:
            source, _, rest = bind.partition(":")
            if not source.startswith("/"):
                found.append((source, rest.split(":")[0]))
        return found


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    fake: FakeDockerDaemon


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet (and the base's version fails on unix sockets, which have no address)."""

    def _dispatch(self) -> None:
        self.close_connection = True
        try:
            self.server.fake._handle(self)
        except Exception as exc:  # a bug in the fake must show as a 500, not hang the SDK
            self.reply(500, {"message": f"fake docker daemon error: {exc!r}"})

    do_GET = do_POST = do_DELETE = do_HEAD = _dispatch

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def reply(self, code: int, payload: Any = None, *, content_type: str | None = None) -> None:
        if isinstance(payload, bytes):
            data = payload
        elif isinstance(payload, str):
            data, content_type = payload.encode(), content_type or "text/plain; charset=utf-8"
        elif payload is None:
            data = b""
        else:
            data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Type", content_type or "application/json")
        self.send_header("Connection", "close")
        if code not in (204, 304):
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data and code not in (204, 304) and self.command != "HEAD":
            self.wfile.write(data)

    def stream(self, events: Iterable[dict[str, Any]]) -> None:
        """Chunked JSON lines, as dockerd streams a pull's progress."""
        self.send_response(200)
        self.send_header("Api-Version", API_VERSION)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            data = json.dumps(event).encode() + b"\r\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


class FakeDockerDaemon(Started):
    """A Docker Engine API stand-in on a unix socket; `url` is the DOCKER_HOST to use.

    `images`: image references present from the start (others are pulled on demand).
    `pullable`: what a pull may fetch (None: anything). `healthy`: False makes started
    containers never answer (no broker starts; the log shows `FATAL_LINE`).
    `healthcheck`: images given a HEALTHCHECK, whose containers then report State.Health.
    """

    def __init__(
        self,
        *,
        images: Iterable[str] = (),
        pullable: Iterable[str] | None = None,
        healthy: bool = True,
        healthcheck: Iterable[str] = (),
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="fakedocker-"))  # short: sun_path limit
        self.socket_path = self.workdir / "docker.sock"
        self.pullable = None if pullable is None else set(pullable)
        self.healthy = healthy
        self.healthcheck = set(healthcheck)
        self.images: dict[str, dict[str, Any]] = {}
        for image in images:
            self._add_image(image)
        self.volumes: dict[str, dict[str, Any]] = {}
        self.containers: dict[str, FakeContainer] = {}
        self.requests: list[Request] = []
        self.unhandled: list[Request] = []
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., None]]] = [
            (m, re.compile(f"^{p}$"), f)
            for m, p, f in (
                ("GET", "/_ping", self._ping),
                ("HEAD", "/_ping", self._ping),
                ("GET", "/version", self._version),
                ("GET", "/images/(?P<name>.+)/json", self._image_inspect),
                ("POST", "/images/create", self._image_pull),
                ("POST", "/volumes/create", self._volume_create),
                ("GET", "/volumes/(?P<name>[^/]+)", self._volume_inspect),
                ("DELETE", "/volumes/(?P<name>[^/]+)", self._volume_remove),
                ("GET", "/containers/json", self._container_list),
                ("POST", "/containers/create", self._container_create),
                ("GET", "/containers/(?P<ref>[^/]+)/json", self._container_inspect),
                ("POST", "/containers/(?P<ref>[^/]+)/start", self._container_start),
                ("POST", "/containers/(?P<ref>[^/]+)/stop", self._container_stop),
                ("GET", "/containers/(?P<ref>[^/]+)/logs", self._container_logs),
                ("DELETE", "/containers/(?P<ref>[^/]+)", self._container_remove),
            )
        ]

    # - lifecycle -

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> Self:
        server = _Server(str(self.socket_path), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="fake-docker", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the server and every broker a container started; remove the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for container in self.containers.values():
                self._kill_broker(container)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # - what tests look at -

    def calls(self, method: str, path_pattern: str) -> list[Request]:
        """Recorded requests with this method whose path matches the regex fully."""
        pattern = re.compile(f"^{path_pattern}$")
        with self._lock:
            return [r for r in self.requests if r.method == method and pattern.match(r.path)]

    def container(self, name: str) -> FakeContainer | None:
        with self._lock:
            return next((c for c in self.containers.values() if c.name == name), None)

    # - dispatch -

    def _handle(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        match = _VERSIONED.match(path)
        versioned = match is not None
        if match is not None:
            path = match.group(2)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        request = Request(handler.command, path, query, handler.body(), versioned)
        with self._lock:
            self.requests.append(request)
        for method, pattern, func in self._routes:
            found = pattern.match(path)
            if method == handler.command and found:
                with self._lock:
                    func(handler, request, **found.groupdict())
                return
        with self._lock:
            self.unhandled.append(request)
        handler.reply(
            404,
            {"message": f"the fake Docker daemon does not implement {handler.command} {path}"},
        )

    # - system -

    def _ping(self, h: _Handler, r: Request) -> None:
        h.reply(200, "OK")

    def _version(self, h: _Handler, r: Request) -> None:
        h.reply(
            200,
            {
                "Version": "27.5.1-fake",
                "ApiVersion": API_VERSION,
                "MinAPIVersion": "1.24",
                "Os": "linux",
                "Arch": "amd64",
                "Components": [{"Name": "fake-dockerd", "Version": "0"}],
            },
        )

    # - images -

    def _add_image(self, reference: str) -> dict[str, Any]:
        digest = hashlib.sha256(reference.encode()).hexdigest()
        config: dict[str, Any] = {"ExposedPorts": {"9092/tcp": {}}, "Env": [], "Labels": {}}
        if reference in self.healthcheck:
            config["Healthcheck"] = {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
        image = {"Id": f"sha256:{digest}", "RepoTags": [reference], "Config": config}
        self.images[reference] = image
        return image

    def _image_inspect(self, h: _Handler, r: Request, name: str) -> None:
        image = self.images.get(name) or self.images.get(f"{name}:latest")
        if image is None:
            h.reply(404, {"message": f"No such image: {name}"})
        else:
            h.reply(200, image)

    def _image_pull(self, h: _Handler, r: Request) -> None:
        repository = r.query.get("fromImage", "")
        reference = f"{repository}:{r.query.get('tag') or 'latest'}"
        if self.pullable is not None and reference not in self.pullable:
            h.reply(
                404,
                {
                    "message": f"pull access denied for {repository}, repository does not "
                    "exist or may require 'docker login'"
                },
            )
            return
        layers = [hashlib.sha256(f"{reference}{i}".encode()).hexdigest()[:12] for i in range(2)]
        events: list[dict[str, Any]] = [
            {"status": f"Pulling from {repository}", "id": r.query.get("tag") or "latest"}
        ]
        for layer in layers:
            events += [
                {"status": "Pulling fs layer", "progressDetail": {}, "id": layer},
                {
                    "status": "Downloading",
                    "progressDetail": {"current": 1_000_000, "total": 2_000_000},
                    "id": layer,
                },
                {"status": "Download complete", "progressDetail": {}, "id": layer},
                {"status": "Pull complete", "progressDetail": {}, "id": layer},
            ]
        self._add_image(reference)
        events += [
            {"status": f"Digest: {self.images[reference]['Id']}"},
            {"status": f"Status: Downloaded newer image for {reference}"},
        ]
        h.stream(events)

    # - volumes -

    def _volume_json(self, name: str) -> dict[str, Any]:
        return self.volumes[name]

    def _create_volume(self, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
        if name not in self.volumes:
            self.volumes[name] = {
                "Name": name,
                "Driver": "local",
                "Mountpoint": f"/var/lib/docker/volumes/{name}/_data",
                "Labels": labels or {},
                "Scope": "local",
                "Options": {},
            }
        return self.volumes[name]

    def _volume_create(self, h: _Handler, r: Request) -> None:
        body = r.body or {}
        name = body.get("Name") or uuid.uuid4().hex
        h.reply(201, self._create_volume(name, body.get("Labels")))

    def _volume_inspect(self, h: _Handler, r: Request, name: str) -> None:
        if name not in self.volumes:
            h.reply(404, {"message": f"get {name}: no such volume"})
        else:
            h.reply(200, self.volumes[name])

    def _volume_remove(self, h: _Handler, r: Request, name: str) -> None:
        if name not in self.volumes:
            h.reply(404, {"message": f"get {name}: no such volume"})
            return
        users = [c.id for c in self.containers.values() if name in dict(c.volumes)]
        if users:
            h.reply(409, {"message": f"remove {name}: volume is in use - {users}"})
            return
        del self.volumes[name]
        h.reply(204)

    # - containers -

    def _find(self, ref: str) -> FakeContainer | None:
        for container in self.containers.values():
            if ref in (container.name, container.id) or (
                len(ref) >= 12 and container.id.startswith(ref)
            ):
                return container
        return None

    def _inspect_json(self, c: FakeContainer) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Status": c.status,
            "Running": c.status == "running",
            "Paused": False,
            "Restarting": False,
            "Dead": False,
            "ExitCode": c.exit_code,
            "StartedAt": c.started_at,
        }
        if "Healthcheck" in c.config:
            if c.status == "running":
                state["Health"] = {"Status": "healthy" if c.broker else "unhealthy"}
            else:
                state["Health"] = {"Status": "unhealthy" if c.exit_code else "starting"}
        ports = {
            port: [{"HostIp": b.get("HostIp", ""), "HostPort": b.get("HostPort", "")} for b in bs]
            for port, bs in (c.host_config.get("PortBindings") or {}).items()
        }
        return {
            "Id": c.id,
            "Name": f"/{c.name}",
            "Image": self.images[c.image]["Id"] if c.image in self.images else c.image,
            "Created": "2026-01-01T00:00:00Z",
            "Config": c.config,
            "HostConfig": c.host_config,
            "State": state,
            "Mounts": [
                {"Type": "volume", "Name": v, "Destination": d, "RW": True} for v, d in c.volumes
            ],
            "NetworkSettings": {"Ports": ports if c.status == "running" else {}},
        }

    def _container_list(self, h: _Handler, r: Request) -> None:
        show_all = r.query.get("all") in ("1", "True", "true")
        listed = [
            {
                "Id": c.id,
                "Names": [f"/{c.name}"],
                "Image": c.image,
                "State": c.status,
                "Labels": c.config.get("Labels") or {},
            }
            for c in self.containers.values()
            if show_all or c.status == "running"
        ]
        h.reply(200, listed)

    def _container_create(self, h: _Handler, r: Request) -> None:
        body: dict[str, Any] = dict(r.body or {})
        name = r.query.get("name") or f"fake_{uuid.uuid4().hex[:8]}"
        image = body.get("Image", "")
        if self._find(name) is not None:
            h.reply(
                409,
                {"message": f'Conflict. The container name "/{name}" is already in use.'},
            )
            return
        if image not in self.images:
            h.reply(404, {"message": f"No such image: {image}"})
            return
        host_config: dict[str, Any] = body.pop("HostConfig", None) or {}
        config = {**body, "Tty": bool(body.get("Tty"))}
        if "Healthcheck" in self.images[image]["Config"] and "Healthcheck" not in config:
            config["Healthcheck"] = self.images[image]["Config"]["Healthcheck"]
        container = FakeContainer(
            id=hashlib.sha256(uuid.uuid4().bytes).hexdigest(),
            name=name,
            image=image,
            config=config,
            host_config=host_config,
        )
        for volume, _ in container.volumes:
            self._create_volume(volume)  # dockerd makes a missing named volume on create
        self.containers[container.id] = container
        h.reply(201, {"Id": container.id, "Warnings": []})

    def _container_inspect(self, h: _Handler, r: Request, ref: str) -> None:
        container = self._find(ref)
        if container is None:
            h.reply(404, {"message": f"No such container: {ref}"})
        else:
            h.reply(200, self._inspect_json(container))

    def _container_start(self, h: _Handler, r: Request, ref: str) -> None:
        container = self._find(ref)
        if container is None:
            h.reply(404, {"message": f"No such container: {ref}"})
            return
        if container.status == "running":
            h.reply(304)
            return
        bindings = (container.host_config.get("PortBindings") or {}).get("9092/tcp") or []
        host_port = int(bindings[0]["HostPort"]) if bindings else None
        if host_port is not None and not embedded.port_is_free(host_port):
            h.reply(
                500,
                {
                    "message": "driver failed programming external connectivity on endpoint "
                    f"{container.name}: Bind for 127.0.0.1:{host_port} failed: port is "
                    "already allocated"
                },
            )
            return
        container.log += [
            "===> User",
            "uid=1000(appuser) gid=1000(appuser) groups=1000(appuser)",
            "===> Configuring ...",
            "Running in KRaft mode...",
            "===> Launching ... ",
            f"===> Using provided cluster id {container.env.get('CLUSTER_ID')} ...",
        ]
        container.status, container.exit_code = "running", 0
        container.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.healthy and host_port is not None:
            self._start_broker(container, host_port)
        else:
            container.log.append(FATAL_LINE)
        h.reply(204)

    def _start_broker(self, container: FakeContainer, host_port: int) -> None:
        """The Kafka stand-in: tansu on the published port, advertising what Kafka would."""
        advertised = _advertised(container.env, container_port=9092) or f"127.0.0.1:{host_port}"
        log_path = self.workdir / f"{container.name}-{host_port}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")
        }
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    embedded.binary(),
                    "broker",
                    "--listener-url",
                    f"tcp://127.0.0.1:{host_port}",
                    "--advertised-listener-url",
                    f"tcp://{advertised}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        container.broker, container.broker_port = proc, host_port
        deadline = time.monotonic() + 20
        while not embedded.accepts(host_port) and time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            time.sleep(0.02)
        container.log.append(
            f"[fake docker] Kafka stand-in (tansu, pid {proc.pid}) on 127.0.0.1:{host_port}, "
            f"advertising {advertised}"
        )

    def _kill_broker(self, container: FakeContainer) -> None:
        proc = container.broker
        if proc is not None:
            if proc.poll() is None:
                embedded.stop_process_group(proc.pid)
            proc.wait(10)
        container.broker = None

    def _container_stop(self, h: _Handler, r: Request, ref: str) -> None:
        container = self._find(ref)
        if container is None:
            h.reply(404, {"message": f"No such container: {ref}"})
            return
        if container.status != "running":
            h.reply(304)
            return
        self._kill_broker(container)
        container.status, container.exit_code = "exited", 143
        container.log.append("[fake docker] stopped (SIGTERM)")
        h.reply(204)

    def _container_remove(self, h: _Handler, r: Request, ref: str) -> None:
        container = self._find(ref)
        if container is None:
            h.reply(404, {"message": f"No such container: {ref}"})
            return
        force = r.query.get("force", "").lower() in ("1", "true")
        if container.status == "running" and not force:
            h.reply(
                409,
                {
                    "message": f"cannot remove container /{container.name}: container is "
                    "running: stop the container before removing or force remove"
                },
            )
            return
        self._kill_broker(container)
        del self.containers[container.id]
        h.reply(204)

    def _container_logs(self, h: _Handler, r: Request, ref: str) -> None:
        container = self._find(ref)
        if container is None:
            h.reply(404, {"message": f"No such container: {ref}"})
            return
        lines = container.log
        tail = r.query.get("tail", "all")
        if tail.isdigit():
            lines = lines[-int(tail) :] if int(tail) else []
        frames = b""
        for line in lines:
            payload = (line + "\n").encode()
            frames += struct.pack(">BxxxL", 1, len(payload)) + payload  # stream 1: stdout
        h.reply(200, frames, content_type="application/vnd.docker.raw-stream")


def _advertised(env: dict[str, str], container_port: int) -> str | None:
    """host:port that Kafka would advertise for the listener bound to `container_port`."""
    listeners = dict(_listener_pairs(env.get("KAFKA_LISTENERS", "")))
    advertised = dict(_listener_pairs(env.get("KAFKA_ADVERTISED_LISTENERS", "")))
    for name, address in listeners.items():
        if address.rpartition(":")[2] == str(container_port) and name in advertised:
            return advertised[name]
    return None


def _listener_pairs(text: str) -> list[tuple[str, str]]:
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, address = item.partition("://")
        pairs.append((name, address))
    return pairs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
