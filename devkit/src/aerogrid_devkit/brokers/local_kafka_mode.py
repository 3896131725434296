"""The kafka mode: a real Apache Kafka from its Maven jars, on this machine's Java, no Docker.

Standard Kafka tools (the Java console clients, kcat, Kafka UIs) all work against it, unlike
the embedded broker. The jars are fetched once into the user's cache (`kafka_jars`), the
broker runs in the background (`local_kafka`), and its data stays in the workspace's
`.aerogrid/kafka-data` across `down`/`up` (`down --purge` deletes it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded
from aerogrid_devkit.brokers import local_kafka
from aerogrid_devkit.brokers.base import DEFAULT_PORT, HOST, BrokerError, BrokerStatus, check_kafka
from aerogrid_devkit.brokers.java_runtime import find_java
from aerogrid_devkit.brokers.kafka_jars import KAFKA_VERSION, fetch_kafka
from aerogrid_devkit.workspace import MANIFEST, Workspace

__all__ = ["LocalKafkaMode", "workspace_data_dir"]


def workspace_data_dir(workspace: Workspace | None) -> Path:
    """Where the kafka mode keeps its data: the workspace's `.aerogrid/kafka-data`, or the
    devkit's home outside a workspace (a folder without aerogrid.toml gets no data)."""
    if workspace is None or not (workspace.root / MANIFEST).is_file():
        return embedded.home() / "kafka-data"
    return workspace.root.resolve() / ".aerogrid" / "kafka-data"


class LocalKafkaMode:
    """Apache Kafka (KRaft, one node) run from its jars by the Java on the PATH."""

    mode = "kafka"

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        *,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """`data_dir`: default the devkit home's; `port`: None 9092 when free, else any; 0 any."""
        self.data_dir = data_dir or workspace_data_dir(None)
        self.port = port
        self.on_progress = on_progress or (lambda _line: None)
        #: Why this mode was chosen (set by `open_broker`; shown by the TUI).
        self.chosen_because = ""

    @property
    def uri(self) -> str:
        state = local_kafka.read_state()
        if state is not None:
            return state.bootstrap
        return f"{HOST}:{self.port or DEFAULT_PORT}"

    def settings(self) -> BrokerSettings:
        return BrokerSettings.parse(self.uri)

    def app_env(self) -> dict[str, str]:
        return {"AEROGRID_BROKER": self.uri}

    def up(self) -> BrokerStatus:
        running = local_kafka.read_state()
        if running is not None:
            return self._found(running, "already running")
        java, said = find_java()
        if java is None:
            raise BrokerError(
                f"the kafka mode runs Apache Kafka on Java 17+, and there is {said}: install "
                "a JDK 17 or newer, or use --mode embedded (or docker)"
            )
        libs = fetch_kafka(KAFKA_VERSION, self.on_progress)
        kafka = local_kafka.LocalKafka(
            self.data_dir, java, libs, self.port, on_progress=self.on_progress
        )
        state, started = local_kafka.up(kafka)
        return self._found(state, "started" if started else "already running", java.major)

    def _found(
        self, state: local_kafka.KafkaState, verb: str, java: int | None = None
    ) -> BrokerStatus:
        on_java = f", Java {java}" if java else ""
        return BrokerStatus(
            self.mode,
            True,
            state.bootstrap,
            f"Apache Kafka {KAFKA_VERSION} {verb} on {state.bootstrap} (pid {state.pid}"
            f"{on_java}), data in {state.data_dir}; log {state.log}",
        )

    def down(self, *, purge: bool = False) -> BrokerStatus:
        try:
            state = local_kafka.down()
        except embedded.EmbeddedBrokerError as exc:
            raise BrokerError(f"kafka mode: {exc}") from None
        data = Path(state.data_dir) if state is not None else self.data_dir
        said = [
            f"stopped Apache Kafka on {state.bootstrap}" if state else "no broker running (kafka)"
        ]
        if purge:
            if data.exists():
                shutil.rmtree(data)
                said.append(f"removed its data in {data} (its topics are gone)")
        elif data.exists():
            said.append(f"its data stays in {data} (aerogrid broker down --purge removes it)")
        return BrokerStatus(self.mode, False, None, "; ".join(said))

    def status(self) -> BrokerStatus:
        state = local_kafka.recorded_state()
        if state is None:
            return BrokerStatus(
                self.mode,
                False,
                None,
                "no broker running (start one with: aerogrid broker up --mode kafka)",
            )
        reach = check_kafka(BrokerSettings.parse(state.bootstrap))
        if not reach.ok:
            return BrokerStatus(
                self.mode,
                False,
                state.bootstrap,
                f"Apache Kafka (pid {state.pid}) runs but does not answer: {reach.cause}; "
                f"log {state.log}",
            )
        return self._found(state, "up")
