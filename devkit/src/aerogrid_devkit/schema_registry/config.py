"""`[schema_registry]` in aerogrid.toml: which registry the workspace's apps use.

```toml
[schema_registry]
mode = "local"          # off (default: none started) | local | external
port = 8081             # local: the port on 127.0.0.1 (default: 8081 when free, else any)

# mode external: a registry run by others (Confluent, Apicurio, Karapace, Redpanda)
url = "https://registry.corp:8081"
username = "svc-orders"
password_env = "REGISTRY_PASSWORD"   # the variable holding the password: never the password here
ca_file = "certs/registry-ca.pem"    # relative to the workspace
```

`local` runs the real Apicurio Registry (Java 17+, built once with `make schema-registry`) beside
the local broker, its schemas in the workspace's `.aerogrid/schema-registry-data`. The apps get
the registry through the variables the runtime reads (`app_env`): AEROGRID_SCHEMA_REGISTRY and,
for `external`, _USERNAME, _PASSWORD and _CAFILE. With `off` the devkit starts none, but one
started by hand (`aerogrid broker up --schema-registry`) is still given to the apps.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec

from aerogrid.errors import ConfigurationError

__all__ = [
    "DEFAULT_PASSWORD_ENV",
    "DEFAULT_PORT",
    "REGISTRY_MODES",
    "SchemaRegistryConfig",
    "parse_schema_registry",
]

REGISTRY_MODES = ("off", "local", "external")
DEFAULT_PORT = 8081
DEFAULT_PASSWORD_ENV = "AEROGRID_SCHEMA_REGISTRY_PASSWORD"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SchemaRegistryConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The `[schema_registry]` table as declared (paths still relative to the workspace)."""

    mode: str = "off"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] | None = None
    url: str | None = None
    username: str | None = None
    password_env: str | None = None
    ca_file: str | None = None

    def app_env(
        self, root: Path, local_url: str | None, environ: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The registry variables for an app process (`local_url`: the running local one)."""
        if self.mode != "external" or self.url is None:
            return {"AEROGRID_SCHEMA_REGISTRY": local_url} if local_url else {}
        env = os.environ if environ is None else environ
        given = {"AEROGRID_SCHEMA_REGISTRY": self.url}
        if self.username:
            given["AEROGRID_SCHEMA_REGISTRY_USERNAME"] = self.username
            password = env.get(self.password_env or DEFAULT_PASSWORD_ENV)
            if password:
                given["AEROGRID_SCHEMA_REGISTRY_PASSWORD"] = password
        if self.ca_file:
            given["AEROGRID_SCHEMA_REGISTRY_CAFILE"] = str(root / self.ca_file)
        return given


def parse_schema_registry(table: Any) -> SchemaRegistryConfig | None:
    """The table checked (None when absent), with errors that say what it needs."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigurationError("[schema_registry] must be a table")
    if "password" in table:
        raise ConfigurationError(
            "[schema_registry] password: never put a password in aerogrid.toml; name the "
            f"variable holding it with password_env (default {DEFAULT_PASSWORD_ENV})"
        )
    try:
        config = msgspec.convert(table, SchemaRegistryConfig)
    except msgspec.ValidationError as exc:
        raise ConfigurationError(f"[schema_registry] {exc}") from None
    if config.mode not in REGISTRY_MODES:
        raise ConfigurationError(
            f"[schema_registry] mode {config.mode!r} is not one of {', '.join(REGISTRY_MODES)}"
        )
    if config.mode == "external" and not config.url:
        raise ConfigurationError('[schema_registry] mode "external" needs url = "https://..."')
    if config.url is not None and not config.url.startswith(("http://", "https://")):
        raise ConfigurationError(f"[schema_registry] url {config.url!r} is not http(s)://...")
    if config.password_env is not None and not _ENV_NAME.match(config.password_env):
        raise ConfigurationError(
            f"[schema_registry] password_env {config.password_env!r} is not a variable name"
        )
    return config
