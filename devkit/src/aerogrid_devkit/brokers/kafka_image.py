"""How the apache/kafka image runs here: its single-node KRaft config, data and port.

The docker mode (`docker_mode`) creates the container from this and reads it back.
"""

from __future__ import annotations

import base64
import uuid

from docker.models.containers import Container

from aerogrid_devkit.brokers.base import HOST

__all__ = ["CONTAINER_PORT", "DATA_DIR", "cluster_id", "kafka_environment", "published_address"]

#: The port Kafka listens on inside the container (published on 127.0.0.1:<port>).
CONTAINER_PORT = 9092
#: The image's declared data volume: a named volume mounted here keeps topics across restarts.
DATA_DIR = "/var/lib/kafka/data"


def cluster_id(volume: str) -> str:
    """A KRaft cluster id fixed by the volume's name.

    The image formats its storage with CLUSTER_ID once; a recreated container must bring
    the same id or Kafka refuses the volume's data.
    """
    raw = uuid.uuid5(uuid.NAMESPACE_URL, f"aerogrid:{volume}").bytes
    text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return "A" + text[1:] if text.startswith("-") else text


def kafka_environment(port: int, volume: str) -> dict[str, str]:
    """The full single-node KRaft config of the apache/kafka image.

    The image drops its own defaults once any KAFKA_* variable is set, so every setting is
    given. Clients use the HOST listener, advertised as 127.0.0.1:<host port> because that
    is where Docker publishes it; the broker's own traffic stays inside the container.
    """
    return {
        "CLUSTER_ID": cluster_id(volume),
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:19092,CONTROLLER://:19093,HOST://:{CONTAINER_PORT}",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://localhost:19092,HOST://{HOST}:{port}",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
        ),
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:19093",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_LOG_DIRS": DATA_DIR,
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        # Short consumer session timeouts make restarts in the dev loop quick.
        "KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS": "500",
    }


def published_address(container: Container) -> str | None:
    """127.0.0.1:<port> where the container publishes Kafka, from its own config."""
    bindings = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
    for binding in bindings.get(f"{CONTAINER_PORT}/tcp") or ():
        if binding.get("HostPort"):
            return f"{binding.get('HostIp') or HOST}:{binding['HostPort']}"
    return None
