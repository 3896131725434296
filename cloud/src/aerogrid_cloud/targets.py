"""Where promoted apps go: the `[cloud.targets.NAME]` tables of a workspace's aerogrid.toml.

```toml
[cloud.targets.prod]
tenant = "trading"                      # the tenant apps run for (its namespace)
context = "prod-eu"                     # the kubeconfig context (default: the current one)
endpoint = "https://grids.example.com"  # the cluster's endpoint for Excel, shown after a promote
```

The cloud package owns this part of the file: `aerogrid promote --target`, `apps`,
`stop`, `start` and `delete` read it here without the devkit, and the devkit's workspace
hands its `[cloud]` table here (with `aerogrid-devkit[cloud]` installed). The table is a
typed model; a mistake is one sentence naming the table and key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aerogrid.errors import ConfigurationError

__all__ = ["MANIFEST", "CloudTarget", "find_workspace", "load_targets", "parse_targets"]

MANIFEST: Final = "aerogrid.toml"

_NonEmpty = Annotated[str, Field(min_length=1)]


class CloudTarget(BaseModel):
    """A cluster apps are promoted to: a kubeconfig context and the tenant they run for."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: The table's NAME in `[cloud.targets.NAME]` (not a key of the table).
    name: str
    tenant: _NonEmpty
    #: The kubeconfig context (None: the current one).
    context: _NonEmpty | None = None
    #: The cluster's endpoint for Excel (the Istio gateway's URL), shown after a promote.
    endpoint: _NonEmpty | None = None


#: The keys a `[cloud.targets.NAME]` table may hold.
_TARGET_KEYS: Final = sorted(set(CloudTarget.model_fields) - {"name"})


def find_workspace(start: Path) -> Path | None:
    """The nearest folder from `start` upwards that holds an aerogrid.toml."""
    for folder in (start, *start.parents):
        if (folder / MANIFEST).is_file():
            return folder
    return None


def load_targets(root: Path) -> dict[str, CloudTarget]:
    """The targets of the workspace at `root`; errors start with the manifest's path."""
    manifest = root / MANIFEST
    try:
        data = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"{manifest}: {exc}") from None
    try:
        return parse_targets(data.get("cloud"))
    except ConfigurationError as exc:
        raise ConfigurationError(f"{manifest}: {exc}") from None


def parse_targets(cloud: object) -> dict[str, CloudTarget]:
    """The targets in a workspace's `[cloud]` table (None: there is none)."""
    if cloud is None:
        return {}
    table = _table(cloud, "cloud")
    unknown = sorted(set(table) - {"targets"})
    if unknown:
        raise ConfigurationError(f"unknown key {unknown[0]!r} in [cloud] (known: targets)")
    targets = _table(table.get("targets", {}), "cloud.targets")
    return {name: _target(name, spec) for name, spec in targets.items()}


def _table(value: object, label: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigurationError(f"[{label}] must be a table")
    return value


def _target(name: str, spec: object) -> CloudTarget:
    where = f"cloud.targets.{name}"
    table = _table(spec, where)
    if "name" in table:
        raise _unknown_key("name", where)
    try:
        return CloudTarget.model_validate({**table, "name": name})
    except ValidationError as exc:
        raise ConfigurationError(_sentence(where, exc.errors()[0])) from None


def _sentence(where: str, error: Mapping[str, Any]) -> str:
    """One sentence for the first thing wrong in a target's table."""
    key = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return str(_unknown_key(key, where))
    if error["type"] == "missing" and key == "tenant":
        return f'[{where}] needs tenant = "..." (the tenant apps run for)'
    return f"[{where}] {key} must be a non-empty string"


def _unknown_key(key: str, where: str) -> ConfigurationError:
    return ConfigurationError(
        f"unknown key {key!r} in [{where}] (known: {', '.join(_TARGET_KEYS)})"
    )
