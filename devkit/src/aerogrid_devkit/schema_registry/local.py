"""The devkit's background registry: `aerogrid broker up --schema-registry` leaves one running.

Like the local Kafka it runs detached and is recorded in a state file (`schema-registry.json` in
the devkit's home), so later commands find it and `aerogrid broker down` stops it. Its schemas
live on disk (H2 file storage in the workspace's `.aerogrid/schema-registry-data`, or the devkit
home without a workspace), so ids stay the same across restarts, as records on the broker do.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from aerogrid.net import LOOPBACK_HOST, port_is_free
from aerogrid_devkit import embedded
from aerogrid_devkit.brokers.java_runtime import find_java
from aerogrid_devkit.schema_registry.config import DEFAULT_PORT
from aerogrid_devkit.schema_registry.install import RegistryError, registry_app
from aerogrid_devkit.schema_registry.process import CCOMPAT_PATH, STOP_GRACE, RegistryProcess

__all__ = ["RegistryState", "data_dir_for", "down", "read_state", "recorded_state", "up"]

#: What the registry's command line has in it (a recycled pid is never signalled).
_MARKER = "apicurio-registry-runner.jar"


@dataclass(frozen=True)
class RegistryState:
    """What `broker up --schema-registry` recorded about the registry it left running."""

    pid: int
    port: int
    data_dir: str
    log: str
    started: float

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.port}{CCOMPAT_PATH}"


def state_file() -> Path:
    return embedded.home() / "schema-registry.json"


def data_dir_for(workspace_root: Path | None) -> Path:
    if workspace_root is None:
        return embedded.home() / "schema-registry-data"
    return workspace_root / ".aerogrid" / "schema-registry-data"


def recorded_state() -> RegistryState | None:
    """The recorded registry while its process lives (a stale record goes)."""
    return embedded.recorded(state_file(), RegistryState, _MARKER)


def read_state() -> RegistryState | None:
    """The recorded registry, if it runs and accepts connections."""
    state = recorded_state()
    return state if state is not None and embedded.accepts(state.port) else None


def up(data_dir: Path, port: int | None = None) -> tuple[RegistryState, bool]:
    """Start a registry unless a recorded one runs; returns it and whether it is new.

    `port`: None means 8081 when free, else any free port; 0 any free port.
    """
    running = read_state()
    if running is not None:
        return running, False
    java, said = find_java()
    if java is None:
        raise RegistryError(f"the local schema registry needs Java 17+: {said}")
    if port is None:
        port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else 0
    process = RegistryProcess(
        port=port,
        data_dir=data_dir,
        log_file=data_dir.parent / "schema-registry.log",
        java=java.path,
        app_dir=registry_app(),
        die_with_parent=False,
    )
    process.start()
    assert process.pid is not None and process.log_file is not None
    state = RegistryState(
        process.pid, process.port, str(data_dir), str(process.log_file), time.time()
    )
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state)))
    return state, True


def down() -> RegistryState | None:
    """Stop the recorded registry and wait until it has exited; returns it (None: none ran)."""
    state = recorded_state()
    if state is not None:
        embedded.stop_process_group(state.pid, grace=STOP_GRACE)
    state_file().unlink(missing_ok=True)
    return state
