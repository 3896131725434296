"""Choosing a mode: the workspace's (or `--mode`'s) choice, and `auto`'s, with why.

`auto` uses the embedded broker when one already runs, else docker when a Docker daemon
answers, else the embedded broker, and says which and why.
"""

from __future__ import annotations

from collections.abc import Callable

from aerogrid_devkit import embedded
from aerogrid_devkit.brokers.base import BrokerError, LocalBroker
from aerogrid_devkit.brokers.docker_daemon import docker_client, docker_host
from aerogrid_devkit.brokers.docker_mode import DockerMode
from aerogrid_devkit.brokers.embedded_mode import EmbeddedMode
from aerogrid_devkit.brokers.external_mode import ExternalMode
from aerogrid_devkit.workspace import BROKER_MODES, MANIFEST, DockerConfig, Workspace

__all__ = ["DOCKER_PING_TIMEOUT", "MODES", "open_broker"]

MODES = BROKER_MODES
#: Seconds `auto` waits for a Docker daemon before choosing the embedded broker.
DOCKER_PING_TIMEOUT = 2


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
