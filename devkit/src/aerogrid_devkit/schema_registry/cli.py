"""What `aerogrid broker up/down/status` and `aerogrid dev` do about the schema registry.

One place decides when the devkit runs a local registry: `--schema-registry`, or the workspace's
`[schema_registry] mode = "local"`. The commands only print the lines these functions return.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aerogrid_devkit.brokers.local_kafka import _ignore_in_git
from aerogrid_devkit.schema_registry import local
from aerogrid_devkit.schema_registry.config import SchemaRegistryConfig
from aerogrid_devkit.workspace import MANIFEST, Workspace

__all__ = [
    "app_env",
    "registry_down",
    "registry_status",
    "registry_up",
    "wants_local",
    "workspace_registry",
]


def workspace_registry(
    workspace_dir: Path | None,
) -> tuple[Path | None, SchemaRegistryConfig | None]:
    """The workspace folder and its `[schema_registry]` (None, None outside a workspace)."""
    folder = workspace_dir if workspace_dir is not None else Path(".")
    if not (folder / MANIFEST).is_file():
        return None, None
    ws = Workspace.load(folder)
    return ws.root, ws.schema_registry


def wants_local(config: SchemaRegistryConfig | None, flag: bool) -> bool:
    return flag or (config is not None and config.mode == "local")


def registry_up(
    workspace_root: Path | None, config: SchemaRegistryConfig | None, port: int | None = None
) -> str:
    """Start (or find) the local registry; a line saying where apps find it.

    Raises RegistryError (not built, no Java, did not start) with what to do.
    """
    data_dir = local.data_dir_for(workspace_root)
    if workspace_root is not None:
        _ignore_in_git(data_dir.parent)
    wanted_port = port if port is not None else (config.port if config is not None else None)
    state, new = local.up(data_dir, wanted_port)
    verb = "started" if new else "already running"
    return (
        f"schema registry {verb}: {state.url} (Apicurio Registry, pid {state.pid}; apps get "
        f"AEROGRID_SCHEMA_REGISTRY={state.url})"
    )


def registry_down(workspace_root: Path | None, purge: bool) -> str | None:
    """Stop the local registry if one runs (and delete its schemas with `purge`)."""
    state = local.down()
    if purge:
        shutil.rmtree(local.data_dir_for(workspace_root), ignore_errors=True)
    if state is None:
        return None
    kept = "its schemas deleted" if purge else f"its schemas kept in {state.data_dir}"
    return f"schema registry stopped (was {state.url}; {kept})"


def registry_status() -> str | None:
    state = local.read_state()
    return None if state is None else f"schema registry: {state.url} (pid {state.pid})"


def app_env(workspace_root: Path, config: SchemaRegistryConfig | None) -> dict[str, str]:
    """The registry variables an app of the workspace runs with: the external registry, else
    the local one when it runs (started by the table or by `--schema-registry`)."""
    external = config is not None and config.mode == "external"
    running = None if external else local.read_state()
    local_url = running.url if running is not None else None
    if config is None:
        return {"AEROGRID_SCHEMA_REGISTRY": local_url} if local_url else {}
    return config.app_env(workspace_root, local_url)
