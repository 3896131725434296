"""A workspace: a folder with `aerogrid.toml` (apps, broker, endpoint) and an app per folder.

The `[broker]` table says which local broker the devkit uses and how to reach it:

```toml
[broker]
mode = "auto"                 # auto | embedded | kafka | docker | external (default: embedded)
port = 9092                   # embedded, kafka and docker: the port on 127.0.0.1

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

The file's tables are declared as msgspec structures (`_Manifest` and the tables under it),
so a wrong type or an unknown key is caught where it is, and the error names its path
under the one sentence that says what the table needs:

    aerogrid.toml: [broker] port 'ninety' is not a port number (0-65535); at broker.port:
    expected `int | null`, got `str`

`[schema_registry]` (mode off | local | external) is described and checked in
`aerogrid_devkit.schema_registry.config`.

`[cloud.targets]` belongs to aerogrid-cloud (`aerogrid_cloud.targets`), which reads it.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import msgspec

from aerogrid.errors import ConfigurationError
from aerogrid.settings import SASL_MECHANISMS, BrokerSettings
from aerogrid_devkit.schema_registry.config import SchemaRegistryConfig, parse_schema_registry

if TYPE_CHECKING:
    from aerogrid_cloud.targets import CloudTarget

MANIFEST = "aerogrid.toml"
BROKER_MODES = ("auto", "embedded", "kafka", "docker", "external")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: The official Apache Kafka image, pinned to the release the test bed runs (tests/support).
DEFAULT_DOCKER_IMAGE = "apache/kafka:4.4.0"
DEFAULT_PASSWORD_ENV = "AEROGRID_SASL_PASSWORD"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: `[apps.NAME] replicas`: a desktop runs a few processes of an app, not a fleet.
MAX_REPLICAS = 16

_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_DockerName = Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")]
_T = TypeVar("_T")


class DockerConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`[broker.docker]`: what `--mode docker` runs (names are Docker object names)."""

    image: _NonEmpty = DEFAULT_DOCKER_IMAGE
    container: _DockerName = "aerogrid-kafka"
    volume: _DockerName = "aerogrid-kafka-data"
    start_timeout: Annotated[float, msgspec.Meta(gt=0)] = 120.0


class _Tls(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[broker.tls]`; paths are relative to the workspace."""

    ca_file: _NonEmpty | None = None
    cert_file: _NonEmpty | None = None
    key_file: _NonEmpty | None = None
    verify: bool | None = None


class _Sasl(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[broker.sasl]`: never the password, only the variable that holds it."""

    mechanism: str | None = None
    username: str | None = None
    password_env: str | None = None


class _Broker(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: str = "embedded"
    port: _Port | None = None
    bootstrap: str | None = None
    security_protocol: str | None = None
    docker: DockerConfig = DockerConfig()
    tls: _Tls | None = None
    sasl: _Sasl | None = None


class _Endpoint(msgspec.Struct, frozen=True):
    port: _Port = 50051


class _App(msgspec.Struct, frozen=True):
    #: The app's folder, relative to the workspace (default: the app's name).
    path: _NonEmpty | None = None
    #: How many processes of the app the supervisor runs (one active, the others standby).
    replicas: Annotated[int, msgspec.Meta(ge=1, le=MAX_REPLICAS)] = 1


class _Manifest(msgspec.Struct, frozen=True):
    """aerogrid.toml. Unknown top-level tables are left alone (other tools may add some)."""

    apps: dict[str, Any] = {}
    broker: _Broker = _Broker()
    endpoint: _Endpoint = _Endpoint()
    #: aerogrid-cloud's table (`aerogrid_cloud.targets` reads it).
    cloud: dict[str, Any] | None = None
    #: `[schema_registry]`, checked by `aerogrid_devkit.schema_registry.config`.
    schema_registry: dict[str, Any] | None = None


#: The tables whose keys are checked, by path (for "unknown key ... (known: ...)").
_TABLES: dict[str, type[msgspec.Struct]] = {
    "broker": _Broker,
    "broker.docker": DockerConfig,
    "broker.tls": _Tls,
    "broker.sasl": _Sasl,
}
_PORT_RULE = "[{table}] port {value!r} is not a port number (0-65535)"
_NAME_RULE = "[broker.docker] {key} {value!r}: use letters, digits, '_', '.' or '-'"
#: The sentence that explains an error at each path ({table}, {key}, {value}).
_RULES = {
    "apps.*": "[{where}] must be a table with the app's path",
    "apps.*.path": "[{table}] path must be a folder name",
    "apps.*.replicas": (
        f"[{{table}}] replicas {{value!r}} must be a whole number from 1 to {MAX_REPLICAS}"
    ),
    "broker.mode": f"broker mode {{value!r}} is not one of {', '.join(BROKER_MODES)}",
    "broker.port": _PORT_RULE,
    "broker.bootstrap": '[broker] bootstrap must be a string: "host:port[,...]"',
    "broker.security_protocol": (
        f"[broker] security_protocol {{value!r}} is not one of {', '.join(SECURITY_PROTOCOLS)}"
    ),
    "broker.docker.image": "[broker.docker] image must be a non-empty string",
    "broker.docker.container": _NAME_RULE,
    "broker.docker.volume": _NAME_RULE,
    "broker.docker.start_timeout": "[broker.docker] start_timeout must be a positive number",
    "broker.tls.ca_file": "[broker.tls] ca_file must be a file path",
    "broker.tls.cert_file": "[broker.tls] cert_file must be a file path",
    "broker.tls.key_file": "[broker.tls] key_file must be a file path",
    "broker.tls.verify": "[broker.tls] verify must be true or false",
    "broker.sasl.mechanism": "[broker.sasl] mechanism must be one of " + ", ".join(SASL_MECHANISMS),
    "broker.sasl.username": "[broker.sasl] username must be a string",
    "broker.sasl.password_env": "[broker.sasl] password_env must be a variable's name",
    "endpoint.port": _PORT_RULE,
}
_ENV_RULE = (
    "[broker.sasl] password_env {value!r} is not an environment variable name "
    "(it names the variable holding the password)"
)


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
    #: `[apps.NAME] replicas`: processes per app (an app not listed runs one).
    replicas: dict[str, int] = field(default_factory=dict)
    #: auto | embedded | kafka | docker | external.
    broker_mode: str = "embedded"
    #: For broker mode "external": the URI apps connect with (no password: see ExternalConfig).
    broker_uri: str | None = None
    endpoint_port: int = 50051
    #: `[broker] port`: the local (embedded, kafka, docker) broker's port on 127.0.0.1
    #: (None: the default).
    broker_port: int | None = None
    docker: DockerConfig = field(default_factory=DockerConfig)
    external: ExternalConfig | None = None
    #: `[cloud.targets.NAME]`: where the TUI's promote sends apps (see `_cloud_targets`).
    cloud_targets: dict[str, CloudTarget] = field(default_factory=dict)
    #: `[schema_registry]` (None: no table).
    schema_registry: SchemaRegistryConfig | None = None

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
        try:
            _refuse_passwords(data)
            declared = _convert(data, _Manifest)
            app_tables = {
                name: _convert(table, _App, f"apps.{name}", "apps.*")
                for name, table in declared.apps.items()
            }
            broker = declared.broker
            if broker.mode not in BROKER_MODES:
                raise ConfigurationError(_RULES["broker.mode"].format(value=broker.mode))
            external = _external(root, broker, required=broker.mode == "external")
            targets = _cloud_targets(declared.cloud)
            registry = parse_schema_registry(declared.schema_registry)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{manifest}: {exc}") from None
        apps: dict[str, Path] = {}
        for name, app in app_tables.items():
            app_file = root / (app.path or name) / "app.py"
            if not app_file.is_file():
                raise ConfigurationError(f"{manifest}: app {name!r} has no {app_file}")
            apps[name] = app_file
        return cls(
            root=root,
            apps=apps,
            replicas={name: app.replicas for name, app in app_tables.items()},
            broker_mode=broker.mode,
            broker_uri=external.uri if external is not None else None,
            endpoint_port=declared.endpoint.port,
            broker_port=broker.port,
            docker=broker.docker,
            external=external,
            cloud_targets=targets,
            schema_registry=registry,
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


# -- the typed file's errors, as sentences -------------------------------------------------


def _convert(data: object, kind: type[_T], where: str = "", rule_where: str = "") -> _T:
    """`data` as `kind`, or a ConfigurationError that says what is wrong, and where.

    `where` is the path of `data` in the file (for messages), `rule_where` the same with
    names replaced by `*` (for `_RULES`).
    """
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        detail, _, at = str(exc).partition(" - at `$")
        relative = at.rstrip("`").lstrip(".")
        path = ".".join(p for p in (where, relative) if p)
        rule_path = ".".join(p for p in (rule_where or where, relative) if p)
        raise ConfigurationError(_sentence(detail, path, rule_path, _at(data, relative))) from None


def _sentence(detail: str, path: str, rule_path: str, value: object) -> str:
    unknown = re.fullmatch(r"Object contains unknown field `(.+)`", detail)
    if unknown:
        known = ", ".join(sorted(_TABLES[rule_path].__struct_fields__))
        return f"unknown key {unknown[1]!r} in [{path}] (known: {known})"
    table, _, key = path.rpartition(".")
    rule = _RULES.get(rule_path)
    if rule is None:
        rule = "[{where}] must be a table" if detail.startswith("Expected `object`") else "{where}"
    sentence = rule.format(where=path, table=table, key=key, value=value)
    return f"{sentence}; at {path}: {detail[:1].lower()}{detail[1:]}"


def _at(data: object, path: str) -> object:
    """The value at a dotted path of the raw file (None where there is none)."""
    for key in filter(None, path.split(".")):
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _refuse_passwords(data: Mapping[str, Any]) -> None:
    broker = data.get("broker")
    if isinstance(broker, dict):
        if "password" in broker:
            raise _inline_password("[broker] password")
        sasl = broker.get("sasl")
        if isinstance(sasl, dict) and "password" in sasl:
            raise _inline_password("[broker.sasl] password")


def _inline_password(where: str) -> ConfigurationError:
    return ConfigurationError(
        f"{where}: do not write passwords in aerogrid.toml; put it in an environment "
        f'variable and name that variable instead: password_env = "{DEFAULT_PASSWORD_ENV}"'
    )


# -- mode external: what the tables say together -------------------------------------------


def _given(table: msgspec.Struct | None) -> bool:
    """Whether the file has the table with at least one key in it."""
    return table is not None and any(
        getattr(table, name) is not None for name in table.__struct_fields__
    )


def _external(root: Path, broker: _Broker, *, required: bool) -> ExternalConfig | None:
    bootstrap = broker.bootstrap
    if not bootstrap:
        if required:
            raise ConfigurationError('broker mode external needs bootstrap = "host:port"')
        return None
    if "://" in bootstrap and "@" in bootstrap.partition("://")[2].split("/")[0]:
        raise ConfigurationError(
            "[broker] bootstrap has credentials in it: put the user in [broker.sasl] "
            "username and the password in an environment variable named by password_env"
        )
    tls, sasl = broker.tls or _Tls(), broker.sasl or _Sasl()
    has_tls, has_sasl = _given(broker.tls), _given(broker.sasl)
    # `parse_unchecked` leaves SASL checks for later: the password arrives from the environment.
    base = BrokerSettings.parse_unchecked(bootstrap)
    protocol = broker.security_protocol
    if protocol is None:
        protocol = base.security_protocol
        if has_sasl and not protocol.startswith("SASL"):
            protocol = "SASL_SSL"
        elif has_tls and protocol == "PLAINTEXT":
            protocol = "SSL"
    protocol = protocol.upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise ConfigurationError(_RULES["broker.security_protocol"].format(value=protocol))
    if has_tls and protocol not in ("SSL", "SASL_SSL"):
        raise ConfigurationError(f"[broker.tls] is set but security_protocol is {protocol}")
    if has_sasl and not protocol.startswith("SASL"):
        raise ConfigurationError(f"[broker.sasl] is set but security_protocol is {protocol}")

    def path(value: str | None) -> str | None:
        return str((root / Path(value).expanduser()).resolve()) if value else None

    settings = replace(
        base,
        security_protocol=protocol,
        ssl_cafile=path(tls.ca_file) or base.ssl_cafile,
        ssl_certfile=path(tls.cert_file) or base.ssl_certfile,
        ssl_keyfile=path(tls.key_file) or base.ssl_keyfile,
        ssl_verify=base.ssl_verify if tls.verify is None else tls.verify,
    )
    password_env: str | None = None
    if protocol.startswith("SASL"):
        mechanism = (sasl.mechanism or base.sasl_mechanism or "PLAIN").upper()
        if mechanism not in SASL_MECHANISMS:
            raise ConfigurationError(
                f"[broker.sasl] mechanism {mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
            )
        password_env = sasl.password_env or DEFAULT_PASSWORD_ENV
        if not _ENV_NAME.match(password_env):
            raise ConfigurationError(_ENV_RULE.format(value=password_env))
        settings = replace(
            settings,
            sasl_mechanism=mechanism,
            sasl_username=sasl.username or None,
            sasl_password=None,
        )
    return ExternalConfig(settings=settings, password_env=password_env)
