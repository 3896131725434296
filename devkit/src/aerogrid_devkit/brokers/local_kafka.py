"""A real Apache Kafka (KRaft, one node) run from its Maven jars, left in the background.

The local Kafka mode's process: `kafka.Kafka` on a Java 17+ runtime, broker and controller
in one JVM, listening on 127.0.0.1 only, its data on disk (the workspace's
`.aerogrid/kafka-data`, formatted once and kept across restarts). Like the embedded broker it
runs detached and is recorded in a state file (`kafka.json` in the devkit's home), so later
commands find it and `aerogrid broker down` stops it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from aerogrid.net import LOOPBACK_HOST, free_port, port_is_free
from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded, frozen
from aerogrid_devkit.brokers.base import BrokerError, check_kafka
from aerogrid_devkit.brokers.java_runtime import JavaRuntime

__all__ = [
    "START_TIMEOUT",
    "STOP_GRACE",
    "KafkaState",
    "LocalKafka",
    "down",
    "read_state",
    "recorded_state",
    "state_file",
]

#: Seconds to wait for a new broker to answer (a cold JVM takes 5-15 s).
START_TIMEOUT = 120.0
#: Seconds a stopping broker gets to close its logs cleanly before it is killed.
STOP_GRACE = 30.0
HEAP = "512m"
MAIN_CLASS = "kafka.Kafka"

LOG4J2_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
"""


@dataclass(frozen=True)
class KafkaState:
    """What `broker up` recorded about the Kafka it left running."""

    pid: int
    port: int
    controller_port: int
    data_dir: str
    log: str
    started: float

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK_HOST}:{self.port}"


def state_file() -> Path:
    return embedded.home() / "kafka.json"


def recorded_state() -> KafkaState | None:
    """The recorded broker while its process lives, answering or not (a stale record goes)."""
    return embedded.recorded(state_file(), KafkaState, MAIN_CLASS)


def read_state() -> KafkaState | None:
    """The recorded broker, if it runs and accepts connections."""
    state = recorded_state()
    return state if state is not None and embedded.accepts(state.port) else None


def down() -> KafkaState | None:
    """Stop the recorded broker and wait until it has exited; returns it (None: none ran)."""
    state = recorded_state()
    if state is not None:
        embedded.stop_process_group(state.pid, grace=STOP_GRACE)
    state_file().unlink(missing_ok=True)
    return state


def new_cluster_id() -> str:
    """A new KRaft cluster id: a UUID in URL-safe base64 without padding, as Kafka makes."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's own tool avoids ids that read as flags
            return text


class LocalKafka:
    """One single-node KRaft Kafka whose data lives in `data_dir`; config and log beside it."""

    def __init__(
        self,
        data_dir: Path,
        java: JavaRuntime,
        libs: Path,
        port: int | None = None,
        *,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """`port`: None means 9092 when free, else any free port; 0 any free port."""
        if port is None:
            port = embedded.DEFAULT_PORT if port_is_free(embedded.DEFAULT_PORT) else 0
        self.port = port or free_port()
        self.data_dir = data_dir
        self.config_dir = data_dir.parent / "kafka"
        self.log_file = self.config_dir / "broker.log"
        self.java = java
        self.libs = libs
        self.on_progress = on_progress or (lambda _line: None)

    def properties(self, controller_port: int) -> dict[str, str]:
        """server.properties: one node that is broker and controller, on 127.0.0.1 only."""
        host = LOOPBACK_HOST
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{controller_port}",
            "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "num.partitions": "1",
            # One node: Kafka's internal topics cannot have more than one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "8",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # A developer's consumer group starts at once rather than after 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Replicas ask for a 3 s session timeout (failover); Kafka's default minimum is 6 s.
            "group.min.session.timeout.ms": "1000",
        }

    def _jvm(self, *options: str) -> list[str]:
        return [
            self.java.path,
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.config_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.config_dir}",
            *options,
            "-cp",
            str(self.libs / "*"),
        ]

    def start(self, timeout: float = START_TIMEOUT) -> KafkaState:
        if not port_is_free(self.port):
            raise BrokerError(f"port {self.port} on {LOOPBACK_HOST} is taken")
        controller_port = free_port()
        self.config_dir.mkdir(parents=True, exist_ok=True)
        _ignore_in_git(self.data_dir.parent)
        config = self.config_dir / "server.properties"
        properties = self.properties(controller_port)
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.config_dir / "log4j2.xml").write_text(LOG4J2_XML)
        env = frozen.child_env()
        with self.log_file.open("wb") as log:
            if not (self.data_dir / "meta.properties").is_file():
                self.on_progress(f"formatting Kafka's storage in {self.data_dir}")
                self._format(config, log, env)
            proc = subprocess.Popen(
                [
                    *self._jvm(f"-Xmx{HEAP}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"),
                    MAIN_CLASS,
                    str(config),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.config_dir,
                env=env,
                start_new_session=True,
            )
        state = KafkaState(
            proc.pid,
            self.port,
            controller_port,
            str(self.data_dir),
            str(self.log_file),
            time.time(),
        )
        self.on_progress(f"waiting for Kafka on {state.bootstrap} (up to {timeout:g} s)")
        self._wait_ready(proc, state, timeout)
        return state

    def _format(self, config: Path, log: BinaryIO, env: dict[str, str]) -> None:
        """`kafka.tools.StorageTool format` with a new cluster id (once per data folder)."""
        done = subprocess.run(
            [
                *self._jvm("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m"),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                new_cluster_id(),
                "-c",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.config_dir,
            env=env,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerError(
                f"Kafka could not format {self.data_dir} (exit code {done.returncode}); "
                f"its log:\n{self.log_tail()}"
            )

    def _wait_ready(self, proc: subprocess.Popen[bytes], state: KafkaState, timeout: float) -> None:
        settings = BrokerSettings.parse(state.bootstrap)
        deadline = time.monotonic() + timeout
        cause = "not checked yet"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"Kafka exited while starting (exit code {proc.returncode}); its log "
                    f"({self.log_file}):\n{self.log_tail()}"
                )
            if embedded.accepts(state.port):
                reach = check_kafka(settings, timeout=2.0)
                if reach.ok:
                    return
                cause = reach.cause
            time.sleep(0.2)
        embedded.stop_process_group(proc.pid, grace=STOP_GRACE)
        raise BrokerError(
            f"Kafka did not answer on {state.bootstrap} within {timeout:g} s ({cause}); its "
            f"log ({self.log_file}):\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "  (no log)"
        return "\n".join(f"  | {line}" for line in text.rstrip().splitlines()[-lines:])


def up(kafka: LocalKafka) -> tuple[KafkaState, bool]:
    """Start `kafka` unless a recorded one runs; returns the broker and whether it is new."""
    running = read_state()
    if running is not None:
        return running, False
    state = kafka.start()
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state)))
    return state, True


def _ignore_in_git(folder: Path) -> None:
    """A `.gitignore` of `*` in the workspace's `.aerogrid`: broker data is never committed."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / ".gitignore"
    if not marker.exists():
        marker.write_text("# the devkit's local state (aerogrid broker up): not for git\n*\n")
