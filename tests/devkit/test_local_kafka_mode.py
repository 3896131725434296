"""The kafka mode: a real Apache Kafka from its Maven jars on the Java of the PATH, no Docker.

One broker is started for the module (through `aerogrid broker up`, as a user does) in a
temporary workspace; the tests read its status, list topics with the devkit's tools, and
the last one stops, restarts and purges it. Java 17+ is on the PATH in CI (without it the
module skips on a laptop and fails under CI=true).
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner
from compat.clients import CLIENTS, Client, observe
from compat.table import Outcome

from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded, kafka_tools
from aerogrid_devkit.brokers import (
    BrokerError,
    LocalKafkaMode,
    kafka_jars,
    local_kafka,
    open_broker,
)
from aerogrid_devkit.brokers.java_runtime import find_java
from aerogrid_devkit.brokers.kafka_jars import Jar, download_jars
from aerogrid_devkit.commands import broker as broker_cli
from aerogrid_devkit.commands import topics as topics_cli
from aerogrid_devkit.workspace import Workspace
from support.ci import unavailable

pytestmark = pytest.mark.timeout(240)

NO_DOCKER = "unix:///nonexistent/aerogrid-test-no-docker.sock"


@dataclass(frozen=True)
class Started:
    workspace: Path
    home: Path
    bootstrap: str
    pid: int
    output: str


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """`aerogrid broker up --mode kafka` in a fresh workspace, stopped after the module."""
    java, said = find_java()
    if java is None:
        unavailable(f"the kafka mode needs Java 17+: {said}")
    root = tmp_path_factory.mktemp("kafka-mode")
    workspace, home = root / "ws", root / "home"
    workspace.mkdir()
    (workspace / "aerogrid.toml").write_text('[broker]\nmode = "kafka"\nport = 0\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AEROGRID_HOME", str(home))
        patch.setenv("DOCKER_HOST", NO_DOCKER)
        patch.delenv("AEROGRID_BROKER", raising=False)
        done = CliRunner().invoke(broker_cli, ["up", "--workspace", str(workspace)])
        assert done.exit_code == 0, done.output
        state = local_kafka.read_state()
        assert state is not None
        try:
            yield Started(workspace, home, state.bootstrap, state.pid, done.output)
        finally:
            local_kafka.down()


def test_up_runs_apache_kafka_with_its_data_in_the_workspace(started: Started) -> None:
    data = started.workspace.resolve() / ".aerogrid" / "kafka-data"
    assert f"mode kafka ({started.workspace / 'aerogrid.toml'})" in started.output
    assert f"Apache Kafka 4.4.0 started on {started.bootstrap} (pid {started.pid}" in started.output
    assert f"data in {data}" in started.output
    assert (data / "meta.properties").is_file()
    # The workspace's .aerogrid is kept out of git.
    assert (started.workspace / ".aerogrid" / ".gitignore").read_text().endswith("*\n")
    again = CliRunner().invoke(broker_cli, ["up", "--workspace", str(started.workspace)])
    assert "already running" in again.stdout and local_kafka.read_state() is not None


def test_status_says_it_answers_and_which_clients_work(started: Started) -> None:
    shown = CliRunner().invoke(broker_cli, ["status", "--workspace", str(started.workspace)])
    assert shown.exit_code == 0, shown.output
    assert f"Apache Kafka 4.4.0 up on {started.bootstrap}" in shown.stdout
    assert "clients" in shown.stdout.splitlines()[-1]
    status = json.loads(
        CliRunner()
        .invoke(broker_cli, ["status", "--workspace", str(started.workspace), "--json"])
        .stdout
    )
    assert status["mode"] == "kafka" and status["running"] is True
    assert status["bootstrap"] == status["uri"] == started.bootstrap


def test_auto_uses_the_running_kafka(started: Started) -> None:
    chosen, why = open_broker("auto", None)
    assert isinstance(chosen, LocalKafkaMode)
    assert why == f"auto: Apache Kafka (kafka mode) already runs on {started.bootstrap}, using it"


async def _produce_batched_and_transactional(bootstrap: str, topic: str) -> None:
    """Eight records in one batch, then two transactions of four (each adds a commit marker)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=100)
    await producer.start()
    try:
        sent = [await producer.send(topic, b"v", partition=0) for _ in range(8)]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{topic}-txn")
    await txn.start()
    try:
        for _ in range(2):
            async with txn.transaction():
                for _ in range(4):
                    await txn.send(topic, b"t", partition=0)
    finally:
        await txn.stop()


def test_topics_count_records_not_offsets_on_kafka(started: Started) -> None:
    """16 records take 18 offsets (two commit markers): `topics` says 16, and the end 18."""
    asyncio.run(_produce_batched_and_transactional(started.bootstrap, "counted"))
    infos = asyncio.run(kafka_tools.list_topics(BrokerSettings.parse(started.bootstrap)))
    counted = next(i for i in infos if i.name == "counted")
    assert counted.ends == {0: 18}
    assert counted.records == 16 and counted.records_exact
    listed = CliRunner().invoke(topics_cli, ["--broker", started.bootstrap, "--json"])
    row = next(t for t in json.loads(listed.stdout) if t["name"] == "counted")
    assert row["records"] == 16 and row["records_exact"] is True
    # Without --broker, the tools find the running kafka-mode broker, whatever its port.
    assert kafka_tools.resolve_broker(None, started.workspace.parent).bootstrap == (
        started.bootstrap
    )


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name.replace(" ", "-"))
def test_standard_kafka_clients_use_it(started: Started, client: Client, unique_name: str) -> None:
    """What a developer's other tools need: kcat and the Kafka 4.4 CLI work, as the rest.

    The compatibility suite's scenario (the seed's orders, dead letters with their headers,
    a consumer group's lag) against the broker `aerogrid broker up` started, not the test bed's.
    """
    reason = client.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    assert observe(client, started.bootstrap, unique_name) == Outcome(True)


def test_down_waits_for_exit_keeps_the_data_and_up_finds_it_again(started: Started) -> None:
    runner = CliRunner()
    ws = ["--workspace", str(started.workspace)]
    stopped = runner.invoke(broker_cli, ["down", *ws])
    assert stopped.exit_code == 0, stopped.output
    assert f"stopped Apache Kafka on {started.bootstrap}" in stopped.stdout
    assert not embedded.group_alive(started.pid)  # down returned after the JVM exited
    assert "its data stays in" in stopped.stdout
    again = runner.invoke(broker_cli, ["up", *ws])
    assert again.exit_code == 0, again.output
    state = local_kafka.read_state()
    assert state is not None
    infos = asyncio.run(kafka_tools.list_topics(BrokerSettings.parse(state.bootstrap)))
    assert next(i for i in infos if i.name == "counted").records == 16
    purged = runner.invoke(broker_cli, ["down", "--purge", *ws])
    assert "removed its data" in purged.stdout
    assert not (started.workspace / ".aerogrid" / "kafka-data").exists()
    assert not embedded.group_alive(state.pid)


# --- without a broker ---------------------------------------------------------------------------


def test_auto_picks_kafka_when_java_is_present_and_docker_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java, said = find_java()
    if java is None:
        unavailable(f"needs Java 17+: {said}")
    assert java is not None
    monkeypatch.setenv("AEROGRID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    (tmp_path / "aerogrid.toml").write_text('[broker]\nmode = "auto"\n')
    chosen, why = open_broker("auto", Workspace.load(tmp_path))
    assert isinstance(chosen, LocalKafkaMode)
    assert chosen.data_dir == tmp_path.resolve() / ".aerogrid" / "kafka-data"
    # A folder that is no workspace (the TUI opened anywhere) keeps no broker data.
    elsewhere, _ = open_broker("kafka", Workspace(root=tmp_path / "nowhere", broker_mode="auto"))
    assert isinstance(elsewhere, LocalKafkaMode)
    assert elsewhere.data_dir == tmp_path / "home" / "kafka-data"
    assert why == (
        f"auto: no Docker daemon answered at {NO_DOCKER} (no socket there); Java {java.major} "
        f"at {java.path}, so using Apache Kafka 4.4.0 from its jars (mode kafka)"
    )


def test_kafka_mode_without_java_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AEROGRID_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(BrokerError, match=r"Java 17\+, and there is no Java runtime.*JDK 17"):
        LocalKafkaMode(tmp_path / "data", 0).up()


# --- the jars' download, against a local repository --------------------------------------------


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server standing in for Maven Central."""
    root = tmp_path / "repo"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def _publish(root: Path, path: str, data: bytes) -> Jar:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)
    return Jar(path, len(data), hashlib.sha256(data).hexdigest())


def test_download_checks_every_jar_and_reports_progress(
    repository: tuple[str, Path], tmp_path: Path
) -> None:
    url, root = repository
    jars = [_publish(root, f"org/x/a{i}/1/a{i}-1.jar", bytes([i]) * 1000) for i in range(3)]
    said: list[str] = []
    download_jars(jars, tmp_path / "libs", repository=url, on_progress=said.append)
    assert sorted(p.name for p in (tmp_path / "libs").iterdir()) == [j.name for j in jars]
    assert said[-1].startswith("  3 of 3 jars")
    tampered = Jar(jars[0].path, jars[0].size, "0" * 64)
    with pytest.raises(BrokerError, match="is not the pinned file"):
        download_jars([tampered], tmp_path / "other", repository=url)
    assert not (tmp_path / "other" / tampered.name).exists()
    with pytest.raises(BrokerError, match="cannot download"):
        download_jars([Jar("org/x/missing.jar", 1, "0" * 64)], tmp_path / "o", repository=url)


def test_fetch_without_maven_downloads_the_pinned_list_once(
    repository: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = repository
    jar = _publish(root, "org/apache/kafka/kafka_2.13/9.9.9/kafka_2.13-9.9.9.jar", b"k" * 5000)
    monkeypatch.setattr(kafka_jars, "pinned_jars", lambda: ("9.9.9", [jar]))
    monkeypatch.setenv("AEROGRID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AEROGRID_MAVEN_REPOSITORY", url)
    monkeypatch.setenv("PATH", str(tmp_path))  # no mvn
    said: list[str] = []
    libs = kafka_jars.fetch_kafka("9.9.9", said.append)
    assert libs == tmp_path / "cache" / "kafka" / "9.9.9" / "libs"
    assert (libs / jar.name).read_bytes() == b"k" * 5000
    assert said[0] == f"downloading Apache Kafka 9.9.9 from {url} into {libs} (once)"
    (root / jar.path).unlink()  # cached: no second download
    assert kafka_jars.fetch_kafka("9.9.9") == libs
    with pytest.raises(BrokerError, match="no pinned jar list"):
        kafka_jars.fetch_kafka("9.9.8")
