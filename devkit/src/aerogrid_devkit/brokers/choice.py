"""Choosing a mode: the workspace's (or `--mode`'s) choice, and `auto`'s, with why.

`auto` uses a local broker that already runs (the embedded one, or the kafka mode's), else
docker when a Docker daemon answers, else the kafka mode when Java 17+ is on the PATH (a
real Apache Kafka, which every Kafka tool can use), else the embedded broker; it says which
and why in one line.
"""

from __future__ import annotations

from collections.abc import Callable

from aerogrid_devkit import embedded
from aerogrid_devkit.brokers import local_kafka
from aerogrid_devkit.brokers.base import BrokerError, LocalBroker
from aerogrid_devkit.brokers.docker_daemon import docker_client, docker_host
from aerogrid_devkit.brokers.docker_mode import DockerMode
from aerogrid_devkit.brokers.embedded_mode import EmbeddedMode
from aerogrid_devkit.brokers.external_mode import ExternalMode
from aerogrid_devkit.brokers.java_runtime import find_java
from aerogrid_devkit.brokers.kafka_jars import KAFKA_VERSION
from aerogrid_devkit.brokers.local_kafka_mode import LocalKafkaMode, workspace_data_dir
from aerogrid_devkit.workspace import BROKER_MODES, MANIFEST, DockerConfig, Workspace

__all__ = ["DOCKER_PING_TIMEOUT", "MODES", "open_broker"]

MODES = BROKER_MODES
#: Seconds `auto` waits for a Docker daemon before looking further.
DOCKER_PING_TIMEOUT = 2


def open_broker(
    mode: str,
    workspace: Workspace | None,
    *,
    port: int | None = None,
    source: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[LocalBroker, str]:
    """The broker for `mode` (auto|embedded|kafka|docker|external) and a sentence saying why.

    `port` overrides the workspace's `[broker] port`; `source` says where the mode came
    from ("--mode", the manifest) for that sentence; `on_progress` gets the progress of
    docker's pull and of the kafka mode's first fetch of its jars.
    """
    if mode not in MODES:
        raise BrokerError(f"unknown broker mode {mode!r}: use one of {', '.join(MODES)}")
    if port is None and workspace is not None:
        port = workspace.broker_port
    chosen: EmbeddedMode | LocalKafkaMode | DockerMode | ExternalMode
    if mode == "auto":
        chosen, why = _auto(workspace, port, on_progress)
    else:
        chosen = _named(mode, workspace, port, on_progress)
        why = f"mode {mode}" + (f" ({source})" if source else "")
        if isinstance(chosen, ExternalMode):
            why += f": {chosen.config.settings.bootstrap}"
    chosen.chosen_because = why
    return chosen, why


def _named(
    mode: str,
    workspace: Workspace | None,
    port: int | None,
    on_progress: Callable[[str], None] | None,
) -> EmbeddedMode | LocalKafkaMode | DockerMode | ExternalMode:
    if mode == "embedded":
        return EmbeddedMode(port)
    if mode == "kafka":
        return LocalKafkaMode(workspace_data_dir(workspace), port, on_progress=on_progress)
    if mode == "docker":
        config = workspace.docker if workspace is not None else DockerConfig()
        return DockerMode(config, port, on_progress=on_progress)
    if workspace is None or workspace.external is None:
        where = f"{workspace.root / MANIFEST}" if workspace is not None else "aerogrid.toml"
        raise BrokerError(
            f'external mode needs bootstrap = "host:port" in the [broker] table of {where}'
        )
    return ExternalMode(workspace.external)


def _auto(
    workspace: Workspace | None,
    port: int | None,
    on_progress: Callable[[str], None] | None,
) -> tuple[EmbeddedMode | LocalKafkaMode | DockerMode, str]:
    """A running local broker, else docker, else the kafka mode on Java 17+, else embedded."""
    running = embedded.read_state()
    if running is not None:
        return (
            EmbeddedMode(port),
            f"auto: the embedded broker already runs on {running.bootstrap}, using it",
        )
    kafka = local_kafka.read_state()
    if kafka is not None:
        return (
            LocalKafkaMode(workspace_data_dir(workspace), port, on_progress=on_progress),
            f"auto: Apache Kafka (kafka mode) already runs on {kafka.bootstrap}, using it",
        )
    config = workspace.docker if workspace is not None else DockerConfig()
    try:
        docker_client(timeout=DOCKER_PING_TIMEOUT).close()
    except BrokerError as exc:
        no_docker = str(exc)
    else:
        return (
            DockerMode(config, port, on_progress=on_progress),
            f"auto: a Docker daemon answered at {docker_host()}, using Apache Kafka in "
            f"Docker ({config.image})",
        )
    java, said = find_java()
    if java is not None:
        return (
            LocalKafkaMode(workspace_data_dir(workspace), port, on_progress=on_progress),
            f"auto: {no_docker}; {said}, so using Apache Kafka {KAFKA_VERSION} from its jars "
            "(mode kafka)",
        )
    return EmbeddedMode(port), f"auto: {no_docker}, and {said}: using the embedded broker"
