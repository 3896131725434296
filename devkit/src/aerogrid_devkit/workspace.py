"""A workspace: a folder with `aerogrid.toml` (apps, broker, endpoint) and an app per folder.

The `[broker]` table says which local broker the devkit uses and how to reach it:

```toml
[broker]
mode = "auto"                 # auto | embedded | docker | external (default: embedded)
port = 9092                   # embedded and docker: the port on 127.0.0.1

[broker.docker]               # mode docker (all optional)
image = "apache/kafka:4.4.0"
container = "aerogrid-kafka"
volume = "aerogrid-kafka-data"
start_timeout = 120           # seconds to wait for Kafka to answer

# mode external: a cluster run by others
bootstrap = "kafka-1.corp:9093,kafka-2.corp:9093"
security_protocol = "SASL_SSL"  # optional: derived from the tables below

[broker.tls]                  # optional; paths are relative to the workspace
ca_file = "certs/ca.pem"
cert_file = "certs/me.pem"    # client certificate (mutual TLS)
key_file = "certs/me.key"
verify = true

[broker.sasl]                 # optional
mechanism = "SCRAM-SHA-512"   # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
username = "alice"
password_env = "KAFKA_PASSWORD"  # the variable holding the password: never the password here
```
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aerogrid.errors import ConfigurationError
from aerogrid.settings import SASL_MECHANISMS, BrokerSettings

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget

MANIFEST = "aerogrid.toml"
BROKER_MODES = ("auto", "embedded", "docker", "external")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: The official Apache Kafka image, pinned to the release the test bed runs (tests/support).
DEFAULT_DOCKER_IMAGE = "apache/kafka:4.4.0"
DEFAULT_PASSWORD_ENV = "AEROGRID_SASL_PASSWORD"
_DOCKER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BROKER_KEYS = {"mode", "port", "bootstrap", "security_protocol", "docker", "tls", "sasl"}
_DOCKER_KEYS = {"image", "container", "volume", "start_timeout"}
_TLS_KEYS = {"ca_file", "cert_file", "key_file", "verify"}
_SASL_KEYS = {"mechanism", "username", "password_env"}


@dataclass(frozen=True)
class DockerConfig:
    """`[broker.docker]`: what `--mode docker` runs (names are Docker object names)."""

    image: str = DEFAULT_DOCKER_IMAGE
    container: str = "aerogrid-kafka"
    volume: str = "aerogrid-kafka-data"
    start_timeout: float = 120.0


@dataclass(frozen=True)
class ExternalConfig:
    """`[broker]` of mode external: the cluster and how to authenticate, minus the password.

    The password lives in the environment variable `password_env`, so aerogrid.toml can be
    committed; `resolve` reads it when a connection is made.
    """

    #: Everything but the SASL password (sasl_password is always None here).
    settings: BrokerSettings
    password_env: str | None = None

    def resolve(self, environ: Mapping[str, str] | None = None) -> BrokerSettings:
        """The full settings: the password from `password_env`, the user from the env if unset."""
        env = os.environ if environ is None else environ
        settings = self.settings
        if not settings.security_protocol.startswith("SASL"):
            return settings
        username = settings.sasl_username or env.get("AEROGRID_SASL_USERNAME")
        if not username:
            raise ConfigurationError(
                "[broker.sasl] needs a username (in aerogrid.toml or AEROGRID_SASL_USERNAME)"
            )
        variable = self.password_env or DEFAULT_PASSWORD_ENV
        password = env.get(variable)
        if not password:
            raise ConfigurationError(
                f"SASL user {username!r}: the password variable {variable} is not set "
                f"(export {variable}=...; [broker.sasl] password_env names it)"
            )
        settings = replace(settings, sasl_username=username, sasl_password=password)
        settings.validate()
        return settings

    @property
    def uri(self) -> str:
        """The URI `aerogrid run --broker` takes, without the password (see `app_env`)."""
        return settings_uri(self.settings)


def settings_uri(settings: BrokerSettings) -> str:
    """A broker URI for `settings`, never with the password in it."""
    scheme = {
        "PLAINTEXT": "",
        "SSL": "kafka+ssl",
        "SASL_PLAINTEXT": "kafka+sasl",
        "SASL_SSL": "kafka+sasl_ssl",
    }[settings.security_protocol]
    query: dict[str, str] = {}
    if settings.security_protocol.startswith("SASL") and settings.sasl_mechanism:
        query["mechanism"] = settings.sasl_mechanism
    for key, value in (
        ("cafile", settings.ssl_cafile),
        ("certfile", settings.ssl_certfile),
        ("keyfile", settings.ssl_keyfile),
    ):
        if value:
            query[key] = value
    if not settings.ssl_verify:
        query["verify"] = "false"
    if not scheme:
        return settings.bootstrap
    user = f"{quote(settings.sasl_username, safe='')}@" if settings.sasl_username else ""
    tail = f"?{urlencode(query)}" if query else ""
    return f"{scheme}://{user}{settings.bootstrap}{tail}"


@dataclass(frozen=True)
class Workspace:
    root: Path
    apps: dict[str, Path] = field(default_factory=dict)
    #: auto | embedded | docker | external.
    broker_mode: str = "embedded"
    #: For broker mode "external": the URI apps connect with (no password: see ExternalConfig).
    broker_uri: str | None = None
    endpoint_port: int = 50051
    #: `[broker] port`: the embedded or docker broker's port on 127.0.0.1 (None: the default).
    broker_port: int | None = None
    docker: DockerConfig = field(default_factory=DockerConfig)
    external: ExternalConfig | None = None
    #: `[cloud.targets.NAME]`: where the TUI's promote sends apps (see `_cloud_targets`).
    cloud_targets: dict[str, CloudTarget] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path) -> Workspace:
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise ConfigurationError(
                f"{root} is not a workspace: no {MANIFEST} (make one with aerogrid new)"
            )
        try:
            data = tomllib.loads(manifest.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{manifest}: {exc}") from None
        apps: dict[str, Path] = {}
        for name, spec in data.get("apps", {}).items():
            folder = root / str(spec.get("path", name))
            app_file = folder / "app.py"
            if not app_file.is_file():
                raise ConfigurationError(f"{manifest}: app {name!r} has no {app_file}")
            apps[name] = app_file
        try:
            broker = _BrokerTable(root, _table(data, "broker"))
            mode, port, docker = broker.mode(), broker.port(), broker.docker()
            external = broker.external(required=mode == "external")
            targets = _cloud_targets(data.get("cloud"))
        except ConfigurationError as exc:
            raise ConfigurationError(f"{manifest}: {exc}") from None
        return cls(
            root=root,
            apps=apps,
            broker_mode=mode,
            broker_uri=external.uri if external is not None else None,
            endpoint_port=int(data.get("endpoint", {}).get("port", 50051)),
            broker_port=port,
            docker=docker,
            external=external,
            cloud_targets=targets,
        )


def _cloud_targets(cloud: object) -> dict[str, CloudTarget]:
    """`[cloud.targets]`, read by aerogrid-cloud (which owns that table) when it is installed.

    Without `aerogrid-devkit[cloud]` nothing here can promote, so the table is not read.
    """
    if cloud is None:
        return {}
    try:
        from aerogrid_cloud.targets import parse_targets
    except ImportError:
        return {}
    return parse_targets(cloud)


def _table(
    data: Mapping[str, Any],
    name: str,
    allowed: set[str] | None = None,
    *,
    label: str | None = None,
) -> dict[str, Any]:
    """`data[name]` as a table with only `allowed` keys; errors name it `[label]`."""
    label = label or name
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise ConfigurationError(f"[{label}] must be a table")
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ConfigurationError(
                f"unknown key {unknown[0]!r} in [{label}] (known: {', '.join(sorted(allowed))})"
            )
    return value


class _BrokerTable:
    """Reads and checks `[broker]`, so each mistake gets one clear sentence."""

    def __init__(self, root: Path, table: dict[str, Any]) -> None:
        self.root = root
        self.table = table
        if "password" in table:
            raise _inline_password("[broker] password")
        unknown = sorted(set(table) - _BROKER_KEYS)
        if unknown:
            raise ConfigurationError(
                f"unknown key {unknown[0]!r} in [broker] (known: {', '.join(sorted(_BROKER_KEYS))})"
            )

    def mode(self) -> str:
        mode = self.table.get("mode", "embedded")
        if mode not in BROKER_MODES:
            raise ConfigurationError(
                f"broker mode {mode!r} is not one of {', '.join(BROKER_MODES)}"
            )
        return str(mode)

    def port(self) -> int | None:
        port = self.table.get("port")
        if port is None:
            return None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigurationError(f"[broker] port {port!r} is not a port number (0-65535)")
        return port

    def docker(self) -> DockerConfig:
        table = _table(self.table, "docker", _DOCKER_KEYS)
        default = DockerConfig()
        names: dict[str, str] = {}
        for key in ("image", "container", "volume"):
            value = table.get(key, getattr(default, key))
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"[broker.docker] {key} must be a non-empty string")
            if key != "image" and not _DOCKER_NAME.match(value):
                raise ConfigurationError(
                    f"[broker.docker] {key} {value!r}: use letters, digits, '_', '.' or '-'"
                )
            names[key] = value
        timeout = table.get("start_timeout", default.start_timeout)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigurationError("[broker.docker] start_timeout must be a positive number")
        return DockerConfig(
            image=names["image"],
            container=names["container"],
            volume=names["volume"],
            start_timeout=float(timeout),
        )

    def external(self, *, required: bool) -> ExternalConfig | None:
        bootstrap = self.table.get("bootstrap")
        if not bootstrap:
            if required:
                raise ConfigurationError('broker mode external needs bootstrap = "host:port"')
            return None
        if not isinstance(bootstrap, str):
            raise ConfigurationError('[broker] bootstrap must be a string: "host:port[,...]"')
        if "://" in bootstrap and "@" in bootstrap.partition("://")[2].split("/")[0]:
            raise ConfigurationError(
                "[broker] bootstrap has credentials in it: put the user in [broker.sasl] "
                "username and the password in an environment variable named by password_env"
            )
        tls = _table(self.table, "tls", _TLS_KEYS)
        if "password" in _table(self.table, "sasl"):
            raise _inline_password("[broker.sasl] password")
        sasl = _table(self.table, "sasl", _SASL_KEYS)
        # `_parse` leaves SASL checks for later: the password arrives from the environment.
        base = BrokerSettings._parse(bootstrap)
        protocol = self.table.get("security_protocol")
        if protocol is None:
            protocol = base.security_protocol
            if sasl and not protocol.startswith("SASL"):
                protocol = "SASL_SSL"
            elif tls and protocol == "PLAINTEXT":
                protocol = "SSL"
        protocol = str(protocol).upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ConfigurationError(
                f"[broker] security_protocol {protocol!r} is not one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        uses_tls = protocol in ("SSL", "SASL_SSL")
        if tls and not uses_tls:
            raise ConfigurationError(f"[broker.tls] is set but security_protocol is {protocol}")
        if sasl and not protocol.startswith("SASL"):
            raise ConfigurationError(f"[broker.sasl] is set but security_protocol is {protocol}")
        settings = replace(
            base,
            security_protocol=protocol,
            ssl_cafile=self._path(tls, "ca_file") or base.ssl_cafile,
            ssl_certfile=self._path(tls, "cert_file") or base.ssl_certfile,
            ssl_keyfile=self._path(tls, "key_file") or base.ssl_keyfile,
            ssl_verify=bool(tls.get("verify", base.ssl_verify)),
        )
        password_env: str | None = None
        if protocol.startswith("SASL"):
            mechanism = str(sasl.get("mechanism", base.sasl_mechanism or "PLAIN")).upper()
            if mechanism not in SASL_MECHANISMS:
                raise ConfigurationError(
                    f"[broker.sasl] mechanism {mechanism!r} is not one of "
                    f"{', '.join(SASL_MECHANISMS)}"
                )
            password_env = str(sasl.get("password_env", DEFAULT_PASSWORD_ENV))
            if not _ENV_NAME.match(password_env):
                raise ConfigurationError(
                    f"[broker.sasl] password_env {password_env!r} is not an environment "
                    "variable name (it names the variable holding the password)"
                )
            username = sasl.get("username")
            settings = replace(
                settings,
                sasl_mechanism=mechanism,
                sasl_username=str(username) if username else None,
                sasl_password=None,
            )
        return ExternalConfig(settings=settings, password_env=password_env)

    def _path(self, table: Mapping[str, Any], key: str) -> str | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"[broker.tls] {key} must be a file path")
        return str((self.root / Path(value).expanduser()).resolve())


def _inline_password(where: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where}: do not write passwords in aerogrid.toml; put it in an environment "
        f'variable and name that variable instead: password_env = "{DEFAULT_PASSWORD_ENV}"'
    )
