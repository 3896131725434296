"""Which schema registry the devkit's topic tools use: the same one the workspace's apps get.

In this order: `--schema-registry URL`, AEROGRID_SCHEMA_REGISTRY (with its _USERNAME,
_PASSWORD, _CAFILE... variables), the workspace's `[schema_registry]` (external, or the
local one when it runs), a local registry started by `aerogrid broker up
--schema-registry`. None when there is none: records are then shown as stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from aerogrid.schemas.registry_settings import ENV_URL, RegistrySettings
from aerogrid_devkit.schema_registry import cli as registry_cli
from aerogrid_devkit.schema_registry import local

__all__ = ["NAME_A_TOOLS_REGISTRY", "resolve_registry"]

#: How the topic tools are given a registry, in `resolve_registry`'s order: the `how` of
#: their "no schema registry is configured" messages (`aerogrid.schemas...no_registry`).
NAME_A_TOOLS_REGISTRY = (
    f"pass --schema-registry URL, set {ENV_URL}, add [schema_registry] to aerogrid.toml "
    "or run `aerogrid broker up --schema-registry`"
)


def resolve_registry(
    explicit: str | None, workspace: Path | None = None
) -> RegistrySettings | None:
    """The registry the topic tools use, or None. ConfigurationError for broken settings."""
    if explicit or os.environ.get(ENV_URL):
        return RegistrySettings.from_env(explicit)
    root, config = registry_cli.workspace_registry(workspace or Path.cwd())
    if root is not None:
        given = registry_cli.app_env(root, config)
        url = given.get(ENV_URL)
        if url is None:
            return None
        return RegistrySettings(
            url=url,
            username=given.get("AEROGRID_SCHEMA_REGISTRY_USERNAME"),
            password=given.get("AEROGRID_SCHEMA_REGISTRY_PASSWORD"),
            cafile=given.get("AEROGRID_SCHEMA_REGISTRY_CAFILE"),
        )
    running = local.read_state()
    return RegistrySettings(url=running.url) if running is not None else None
