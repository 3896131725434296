"""One Apicurio Registry process on loopback: start, wait until it answers, stop, restart.

Shared by the test bed (tests/support/schema_registry.py) and the devkit (`aerogrid broker up
--schema-registry`), so both run the registry the same way. Storage is H2: in memory when no
`data_dir` is given (schemas are lost on restart), else an H2 file there, written through on every
commit, so a restart (even after SIGKILL) keeps every schema and id: an outage test must not see
ids change. The JVM is kept small (`-Xmx128m`, serial GC, C1 only): about 230 MB RSS, ready in
3-5 s on two cores.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aerogrid.net import LOOPBACK_HOST, free_port, port_is_free
from aerogrid_devkit import embedded, frozen
from aerogrid_devkit.schema_registry.install import RUNNER, RegistryError, registry_app

__all__ = ["CCOMPAT_PATH", "HEAP", "RegistryOidc", "RegistryProcess", "RegistryTls"]

#: Where Apicurio serves the Confluent Schema Registry API.
CCOMPAT_PATH = "/apis/ccompat/v7"
HEAP = "128m"
START_TIMEOUT = 90.0
STOP_GRACE = 10.0


@dataclass(frozen=True)
class RegistryTls:
    """Serve HTTPS only, with this PEM certificate chain and key."""

    certfile: Path
    keyfile: Path
    cafile: Path | None = None  # what the readiness probe trusts (None: the system's)


@dataclass(frozen=True)
class RegistryOidc:
    """Apicurio's own authentication: tokens from an OIDC issuer; HTTP basic credentials are
    exchanged for a token with the client-credentials grant (client id = user name)."""

    issuer: str  # the realm URL: <issuer>/.well-known/openid-configuration must answer
    token_endpoint: str
    client_id: str = "registry-api"
    probe_user: tuple[str, str] | None = None  # credentials the readiness probe sends


@dataclass
class RegistryProcess:
    """A real Apicurio Registry on `host:port` (a free loopback port when `port` is 0)."""

    port: int = 0
    data_dir: Path | None = None
    log_file: Path | None = None
    tls: RegistryTls | None = None
    oidc: RegistryOidc | None = None
    java: str = "java"
    app_dir: Path | None = None
    heap: str = HEAP
    #: False for a registry that outlives this process (the devkit's `broker up`).
    die_with_parent: bool = True
    host: str = LOOPBACK_HOST
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def base_url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible API's URL, what clients are given."""
        return self.base_url + CCOMPAT_PATH

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def command(self) -> list[str]:
        app = self.app_dir or registry_app()
        options = {
            "quarkus.http.host": self.host,
            "quarkus.http.port": str(self.port),
            "quarkus.log.console.color": "false",
            "quarkus.banner.enabled": "false",
        }
        if self.tls is not None:
            options |= {
                "quarkus.http.ssl-port": str(self.port),
                "quarkus.http.insecure-requests": "disabled",
                "quarkus.http.ssl.certificate.files": str(self.tls.certfile),
                "quarkus.http.ssl.certificate.key-files": str(self.tls.keyfile),
            }
        return [
            self.java,
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:-UsePerfData",
            "-XX:+ExitOnOutOfMemoryError",
            *(f"-D{key}={value}" for key, value in options.items()),
            "-jar",
            str(app / RUNNER),
        ]

    def environment(self) -> dict[str, str]:
        env = frozen.child_env()
        if self.data_dir is not None:
            # WRITE_DELAY=0: every commit is on disk, so even a SIGKILL keeps the schemas.
            env["REGISTRY_DATASOURCE_URL"] = (
                f"jdbc:h2:file:{self.data_dir / 'registry'};WRITE_DELAY=0"
            )
        if self.oidc is not None:
            env |= {
                "REGISTRY_AUTH_ENABLED": "true",
                "CLIENT_CREDENTIALS_BASIC_AUTH_ENABLED": "true",
                "REGISTRY_AUTH_URL_CONFIGURED": self.oidc.issuer,
                "TOKEN_ENDPOINT": self.oidc.token_endpoint,
                "KEYCLOAK_API_CLIENT_ID": self.oidc.client_id,
            }
        return env

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start on `port` (the same one on every restart) and return once the API answers."""
        if self.pid is not None:
            return
        if not port_is_free(self.port, self.host):
            raise RegistryError(f"port {self.port} on {self.host} is taken")
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_file or Path(frozen.child_env().get("TMPDIR", "/tmp")) / (
            f"aerogrid-schema-registry-{self.port}.log"
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_file = log_path
        preexec = embedded.signal_on_parent_death(signal.SIGKILL) if self.die_with_parent else None
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                cwd=log_path.parent,
                start_new_session=True,
                preexec_fn=preexec,
            )
        self._wait_ready(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; returns once the JVM has exited."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        embedded.stop_process_group(proc.pid, grace=STOP_GRACE)
        proc.wait()

    def kill(self) -> None:
        """SIGKILL at once (a crash, not a shutdown)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        embedded.stop_process_group(proc.pid, grace=0.0)
        proc.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether GET <url>/subjects answers 200 now."""
        try:
            return self.get("/subjects", timeout=timeout)[0] == 200
        except (OSError, ValueError):
            return False

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, object]:
        """GET a path of the ccompat API: (status, parsed JSON body or None)."""
        headers: Mapping[str, str] = {}
        if self.oidc is not None and self.oidc.probe_user is not None:
            user, password = self.oidc.probe_user
            token = b64encode(f"{user}:{password}".encode()).decode()
            headers = {"Authorization": f"Basic {token}"}
        request = urllib.request.Request(self.url + path, headers=dict(headers))
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(
                cafile=str(self.tls.cafile) if self.tls.cafile else None
            )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            body = error.read()
            return error.code, json.loads(body) if body.startswith(b"{") else None

    def _wait_ready(self, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                raise RegistryError(
                    f"the schema registry exited while starting (exit code {proc.returncode}); "
                    f"its log ({self.log_file}):\n{self.log_tail()}"
                )
            if self.answers():
                return
            time.sleep(0.1)
        self.stop()
        raise RegistryError(
            f"the schema registry did not answer on {self.url} within {timeout:g} s; its log "
            f"({self.log_file}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace") if self.log_file else ""
        except OSError:
            return "  (no log)"
        return "\n".join(f"  | {line}" for line in text.rstrip().splitlines()[-lines:])
