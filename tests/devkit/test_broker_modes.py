"""The devkit's broker modes (embedded, docker, external) and `auto` choosing between them.

NO DOCKER DAEMON RUNS ON THESE MACHINES. The docker mode is tested against
`support.fake_docker.FakeDockerDaemon`, a fake Docker Engine API on a unix socket that stands
in for dockerd: the devkit talks to it through the real Docker SDK (DOCKER_HOST), and where
dockerd would run the apache/kafka container the fake starts the embedded broker (tansu) on
the published 127.0.0.1 port. So the requests the devkit makes (names, env, port bindings,
volume), its health wait and real Kafka traffic are checked; the image, the container and the
data kept in the volume across restarts are not (the fake's broker keeps data in memory).

External mode runs against real brokers: the session's tansu, a closed port, and an Apache
Kafka with a SASL_SSL listener and certificates made by the test.

Every test gets its own AEROGRID_HOME, and every broker a test starts is stopped.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

# The same skip-locally / fail-in-CI logic as the session brokers (tests/ is on sys.path).
from conftest import _session_broker

from aerogrid.errors import ConfigurationError
from aerogrid.settings import BrokerSettings
from aerogrid_devkit import embedded
from aerogrid_devkit.brokers import (
    DEFAULT_DOCKER_IMAGE,
    BrokerError,
    DockerMode,
    EmbeddedMode,
    ExternalMode,
    compatibility,
    open_broker,
)
from aerogrid_devkit.commands import broker as broker_cli
from aerogrid_devkit.workspace import DockerConfig, Workspace
from support.brokers import ApacheKafka, KafkaSecurity, TansuBroker
from support.fake_docker import FATAL_LINE, FakeDockerDaemon, free_port
from support.tls import TestPKI, make_test_pki

pytestmark = pytest.mark.timeout(180)

NO_DOCKER = "unix:///nonexistent/aerogrid-test-no-docker.sock"


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private AEROGRID_HOME and no Docker settings from the environment."""
    folder = tmp_path / "home"
    monkeypatch.setenv("AEROGRID_HOME", str(folder))
    for name in ("AEROGRID_BROKER", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)
    yield folder
    embedded.down()


@pytest.fixture
def without_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A PATH with no java on it and no JAVA_HOME: `auto` cannot pick the kafka mode."""
    empty = tmp_path / "bin-without-java"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return "no Java runtime (no java on the PATH or in JAVA_HOME)"


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDockerDaemon]:
    """The stand-in for dockerd (none runs here), reached through DOCKER_HOST."""
    with FakeDockerDaemon() as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        yield daemon


def workspace(folder: Path, broker_table: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "aerogrid.toml").write_text(f"[broker]\n{broker_table}\n")
    return folder


async def roundtrip(settings: BrokerSettings, topic: str) -> list[tuple[bytes, bytes]]:
    """Produce one record and read it back: the broker really speaks Kafka."""
    producer = AIOKafkaProducer(acks="all", **settings.client_options())
    await producer.start()
    try:
        await producer.send_and_wait(topic, b'{"product": "tea"}', key=b"o1")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, auto_offset_reset="earliest", enable_auto_commit=False, **settings.client_options()
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            got = [(m.key, m.value) for records in batch.values() for m in records]
            if got:
                return got
        return []
    finally:
        await consumer.stop()


# --- docker mode, against the fake daemon ------------------------------------------------------


def test_docker_up_pulls_makes_a_named_volume_and_container_on_loopback_and_kafka_works(
    fake_docker: FakeDockerDaemon,
) -> None:
    port = free_port()
    progress: list[str] = []
    mode = DockerMode(DockerConfig(start_timeout=30), port, on_progress=progress.append)
    try:
        found = mode.up()
        assert found.running and found.bootstrap == f"127.0.0.1:{port}"
        assert "started in container aerogrid-kafka" in found.detail
        assert f"pulled {DEFAULT_DOCKER_IMAGE}" in found.detail
        assert any(line.startswith(f"pulling {DEFAULT_DOCKER_IMAGE}") for line in progress)

        # The image was missing, so it was pulled, by repository and tag.
        (pull,) = fake_docker.calls("POST", "/images/create")
        repository, tag = DEFAULT_DOCKER_IMAGE.split(":")
        assert pull.query == {"fromImage": repository, "tag": tag}
        # A named volume, then a named container using it, published on 127.0.0.1 only.
        (volume,) = fake_docker.calls("POST", "/volumes/create")
        assert volume.body["Name"] == "aerogrid-kafka-data"
        (create,) = fake_docker.calls("POST", "/containers/create")
        assert create.query == {"name": "aerogrid-kafka"}
        assert create.body["Image"] == DEFAULT_DOCKER_IMAGE
        host = create.body["HostConfig"]
        assert host["PortBindings"] == {
            "9092/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]
        }
        assert host["Binds"] == ["aerogrid-kafka-data:/var/lib/kafka/data:rw"]
        env = dict(item.split("=", 1) for item in create.body["Env"])
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
        assert f"HOST://127.0.0.1:{port}" in env["KAFKA_ADVERTISED_LISTENERS"]
        assert "HOST://:9092" in env["KAFKA_LISTENERS"]
        assert env["CLUSTER_ID"] and env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
        assert len(fake_docker.calls("POST", "/containers/[^/]+/start")) == 1
        # Every call but the version probe used the negotiated API version prefix.
        assert all(r.versioned for r in fake_docker.requests if r.path != "/version")

        assert asyncio.run(roundtrip(mode.settings(), "orders")) == [(b"o1", b'{"product": "tea"}')]

        again = mode.up()
        assert again.running and "already running" in again.detail
        assert len(fake_docker.calls("POST", "/containers/create")) == 1
        assert len(fake_docker.calls("POST", "/containers/[^/]+/start")) == 1
        assert len(fake_docker.calls("POST", "/images/create")) == 1
        status = mode.status()
        assert status.running and status.bootstrap == f"127.0.0.1:{port}"
        assert "up in container aerogrid-kafka" in status.detail
        assert fake_docker.unhandled == []
    finally:
        mode.down(purge=True)


def test_docker_down_keeps_the_volume_and_purge_removes_it(
    fake_docker: FakeDockerDaemon,
) -> None:
    port = free_port()
    mode = DockerMode(DockerConfig(start_timeout=30), port)
    mode.up()
    container = fake_docker.container("aerogrid-kafka")
    assert container is not None
    first_id = container.id

    stopped = mode.down()
    assert not stopped.running
    assert "stopped container aerogrid-kafka" in stopped.detail
    assert "its data stays in volume aerogrid-kafka-data" in stopped.detail
    assert "--purge" in stopped.detail
    assert container.status == "exited" and not embedded.accepts(port)
    assert "aerogrid-kafka-data" in fake_docker.volumes
    status = mode.status()
    assert not status.running and "exited" in status.detail

    # Up again: the same container (so the same volume) starts; nothing new is made.
    restarted = mode.up()
    assert restarted.running and "started" in restarted.detail
    assert len(fake_docker.calls("POST", "/containers/create")) == 1
    again = fake_docker.container("aerogrid-kafka")
    assert again is not None and again.id == first_id
    assert again.volumes == [("aerogrid-kafka-data", "/var/lib/kafka/data")]

    purged = mode.down(purge=True)
    assert "removed volume aerogrid-kafka-data" in purged.detail
    assert fake_docker.container("aerogrid-kafka") is None
    assert fake_docker.volumes == {}
    assert "no container aerogrid-kafka" in mode.status().detail
    assert fake_docker.unhandled == []


def test_docker_uses_a_present_image_without_pulling(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDockerDaemon(images=[DEFAULT_DOCKER_IMAGE]) as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        mode = DockerMode(DockerConfig(start_timeout=30), free_port())
        try:
            assert mode.up().running
            assert daemon.calls("POST", "/images/create") == []
        finally:
            mode.down(purge=True)


def test_docker_pull_refused_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeDockerDaemon(pullable=()) as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        mode = DockerMode(DockerConfig(image="example/not-there:1.0"), free_port())
        with pytest.raises(BrokerError, match="pull access denied for example/not-there"):
            mode.up()
        assert daemon.calls("POST", "/containers/create") == []


def test_docker_container_that_never_answers_fails_with_its_logs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeDockerDaemon(healthy=False) as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        port = free_port()
        mode = DockerMode(DockerConfig(start_timeout=2), port)
        began = time.monotonic()
        with pytest.raises(BrokerError) as caught:
            mode.up()
        assert time.monotonic() - began < 15
        message = str(caught.value)
        assert f"did not answer on 127.0.0.1:{port} within 2 s" in message
        assert "connection refused" in message
        assert "docker logs aerogrid-kafka" in message
        assert FATAL_LINE in message  # the container's own last log lines
        assert "aerogrid broker down --mode docker" in message
        mode.down(purge=True)


def test_docker_unhealthy_container_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    image = DEFAULT_DOCKER_IMAGE
    with FakeDockerDaemon(images=[image], healthcheck=[image], healthy=False) as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        mode = DockerMode(DockerConfig(start_timeout=60), free_port())
        began = time.monotonic()
        with pytest.raises(BrokerError, match="is unhealthy") as caught:
            mode.up()
        assert time.monotonic() - began < 15
        assert FATAL_LINE in str(caught.value)
        mode.down(purge=True)


def test_docker_healthy_container_with_a_healthcheck_is_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = DEFAULT_DOCKER_IMAGE
    with FakeDockerDaemon(images=[image], healthcheck=[image]) as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        mode = DockerMode(DockerConfig(start_timeout=30), free_port())
        try:
            assert mode.up().running
            assert "health healthy" in mode.status().detail
        finally:
            mode.down(purge=True)


def test_docker_says_when_the_port_is_taken(fake_docker: FakeDockerDaemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mode = DockerMode(DockerConfig(start_timeout=5), port)
        with pytest.raises(BrokerError, match=f"port {port} on 127.0.0.1 is taken"):
            mode.up()
    assert fake_docker.calls("POST", "/containers/[^/]+/start") == []
    mode.down(purge=True)


def test_docker_recreates_the_container_for_a_new_port_and_keeps_the_volume(
    fake_docker: FakeDockerDaemon,
) -> None:
    first, second = free_port(), free_port()
    try:
        DockerMode(DockerConfig(start_timeout=30), first).up()
        moved = DockerMode(DockerConfig(start_timeout=30), second).up()
        assert moved.running and moved.bootstrap == f"127.0.0.1:{second}"
        assert "recreated the container" in moved.detail
        assert len(fake_docker.calls("POST", "/containers/create")) == 2
        assert len(fake_docker.calls("POST", "/volumes/create")) == 1
        assert fake_docker.calls("DELETE", "/volumes/.*") == []
        assert not embedded.accepts(first) and embedded.accepts(second)
    finally:
        DockerMode(DockerConfig(), second).down(purge=True)


def test_docker_refuses_a_container_it_did_not_make(fake_docker: FakeDockerDaemon) -> None:
    client = docker.from_env()
    client.images.pull("busybox", tag="1")
    client.containers.create("busybox:1", name="aerogrid-kafka")
    client.close()
    with pytest.raises(BrokerError, match="exists and aerogrid did not make it"):
        DockerMode(DockerConfig(), free_port()).up()
    assert fake_docker.calls("DELETE", "/containers/.*") == []


def test_docker_without_a_daemon_says_where_it_looked() -> None:
    mode = DockerMode(DockerConfig(), free_port())
    with pytest.raises(BrokerError, match=f"no Docker daemon answered at {NO_DOCKER}"):
        mode.up()
    status = mode.status()
    assert not status.running and NO_DOCKER in status.detail


# --- auto ---------------------------------------------------------------------------------------


def test_auto_picks_docker_when_a_daemon_answers(fake_docker: FakeDockerDaemon) -> None:
    chosen, why = open_broker("auto", None)
    assert isinstance(chosen, DockerMode)
    assert why.startswith(f"auto: a Docker daemon answered at {fake_docker.url}")
    assert DEFAULT_DOCKER_IMAGE in why


def test_auto_picks_embedded_without_docker_or_java_and_keeps_a_running_one(
    monkeypatch: pytest.MonkeyPatch, without_java: str
) -> None:
    chosen, why = open_broker("auto", None, port=0)
    assert isinstance(chosen, EmbeddedMode)
    assert why == (
        f"auto: no Docker daemon answered at {NO_DOCKER} (no socket there), "
        f"and {without_java}: using the embedded broker"
    )
    assert chosen.chosen_because == why
    started = chosen.up()
    assert started.running and "embedded broker started on 127.0.0.1:" in started.detail
    # With the embedded broker running, auto keeps using it even once a daemon answers.
    with FakeDockerDaemon() as daemon:
        monkeypatch.setenv("DOCKER_HOST", daemon.url)
        again, why = open_broker("auto", None)
        assert isinstance(again, EmbeddedMode)
        assert why == f"auto: the embedded broker already runs on {started.bootstrap}, using it"
        assert again.uri == started.bootstrap
    assert chosen.down().detail.startswith("stopped the embedded broker")


# --- down waits until the broker has exited -----------------------------------------------------

#: A stand-in broker process: its command line has tansu's `--listener-url` (so the devkit
#: recognises the recorded pid), it ignores SIGTERM, and with a port it accepts connections.
_STUBBORN_BROKER = """
import signal, socket, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
if sys.argv[2] == "leader":  # listens, leaves a SIGTERM-deaf child in its group, obeys SIGTERM
    subprocess.Popen([sys.executable, "-c", sys.argv[3], "--listener-url", "child", ""])
    server = socket.create_server(("127.0.0.1", int(sys.argv[4])))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(120)
"""


def _record_stubborn_broker(home: Path, role: str, port: int) -> int:
    """Start the stand-in as the recorded background broker; returns its pid (its group)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _STUBBORN_BROKER,
            "--listener-url",
            role,
            _STUBBORN_BROKER,
            str(port),
        ],
        start_new_session=True,
    )
    if role == "leader":
        deadline = time.monotonic() + 10
        while not embedded.accepts(port) and time.monotonic() < deadline:
            time.sleep(0.05)
    home.mkdir(parents=True, exist_ok=True)
    state = {"pid": proc.pid, "port": port, "log": str(home / "x.log"), "started": time.time()}
    (home / "broker.json").write_text(json.dumps(state))
    return proc.pid


@pytest.mark.parametrize(
    "role",
    [
        # Answers, exits on SIGTERM, but its child (same group) ignores it: down used to
        # return when the leader exited, the child still running.
        "leader",
        # Hung (no answer, deaf to SIGTERM): down used to drop the record and leave it running.
        "hung",
    ],
)
def test_down_returns_only_after_every_broker_process_exited(home: Path, role: str) -> None:
    group = _record_stubborn_broker(home, role, free_port())
    assert embedded.group_alive(group)
    stopped = CliRunner().invoke(broker_cli, ["down", "--mode", "embedded"])
    assert stopped.exit_code == 0, stopped.output
    assert "stopped the embedded broker" in stopped.stdout
    assert not embedded.group_alive(group)
    assert not (home / "broker.json").exists()


def test_a_recorded_pid_now_used_by_another_program_is_never_signalled(home: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home.mkdir(parents=True, exist_ok=True)
        state = {"pid": other.pid, "port": free_port(), "log": "x", "started": time.time()}
        (home / "broker.json").write_text(json.dumps(state))
        assert "no broker running" in EmbeddedMode().down().detail
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


# --- the CLI ------------------------------------------------------------------------------------


def test_cli_docker_mode_from_the_workspace(fake_docker: FakeDockerDaemon, tmp_path: Path) -> None:
    port = free_port()
    ws = workspace(
        tmp_path / "ws",
        f'mode = "docker"\nport = {port}\n\n[broker.docker]\n'
        'container = "ws-kafka"\nvolume = "ws-kafka-data"\nstart_timeout = 30',
    )
    runner = CliRunner()
    try:
        started = runner.invoke(broker_cli, ["up", "--workspace", str(ws)])
        assert started.exit_code == 0, started.output
        assert f"mode docker ({ws / 'aerogrid.toml'})" in started.stdout
        assert f"started in container ws-kafka on 127.0.0.1:{port}" in started.stdout
        assert "pulling apache/kafka" in started.stderr  # progress goes to stderr
        shown = runner.invoke(broker_cli, ["status", "--workspace", str(ws), "--json"])
        status = json.loads(shown.stdout)
        assert status["mode"] == "docker" and status["running"] is True
        assert status["bootstrap"] == status["uri"] == f"127.0.0.1:{port}"
    finally:
        purged = runner.invoke(broker_cli, ["down", "--workspace", str(ws), "--purge"])
    assert purged.exit_code == 0, purged.output
    assert "removed volume ws-kafka-data" in purged.stdout
    assert fake_docker.volumes == {}


def test_cli_auto_without_docker_or_java_says_why_and_uses_embedded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, without_java: str
) -> None:
    monkeypatch.chdir(tmp_path)  # no aerogrid.toml here: the mode defaults to auto
    runner = CliRunner()
    started = runner.invoke(broker_cli, ["up", "--port", "0"])
    assert started.exit_code == 0, started.output
    assert f"auto: no Docker daemon answered at {NO_DOCKER}" in started.stdout
    assert "using the embedded broker" in started.stdout
    assert "embedded broker started on 127.0.0.1:" in started.stdout
    status = json.loads(runner.invoke(broker_cli, ["status", "--json"]).stdout)
    assert status["mode"] == "embedded" and status["running"] is True
    assert "already runs" in status["why"]
    stopped = runner.invoke(broker_cli, ["down"])
    assert "stopped the embedded broker" in stopped.stdout
    explicit = runner.invoke(broker_cli, ["status", "--mode", "embedded"])
    assert "mode embedded (--mode)" in explicit.stdout
    assert "no broker running" in explicit.stdout


def test_cli_external_unreachable_fails_with_the_cause(tmp_path: Path) -> None:
    port = free_port()
    ws = workspace(tmp_path / "ws", f'mode = "external"\nbootstrap = "127.0.0.1:{port}"')
    runner = CliRunner()
    up = runner.invoke(broker_cli, ["up", "--workspace", str(ws)])
    assert up.exit_code == 1
    assert "external broker: nothing to start" in up.stdout
    assert f"cannot reach 127.0.0.1:{port}: connection refused" in up.stdout
    status = json.loads(
        runner.invoke(broker_cli, ["status", "--workspace", str(ws), "--json"]).stdout
    )
    assert status["running"] is False and "connection refused" in status["detail"]
    down = runner.invoke(broker_cli, ["down", "--workspace", str(ws)])
    assert down.exit_code == 0 and "nothing to stop" in down.stdout


def test_cli_reports_a_bad_workspace(tmp_path: Path) -> None:
    ws = workspace(tmp_path / "ws", 'mode = "cloud"')
    done = CliRunner().invoke(broker_cli, ["status", "--workspace", str(ws)])
    assert done.exit_code == 1
    modes = "auto, embedded, kafka, docker, external"
    assert f"broker mode 'cloud' is not one of {modes}" in done.stderr
    missing = CliRunner().invoke(broker_cli, ["up", "--workspace", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no aerogrid.toml" in missing.stderr


# --- external mode ------------------------------------------------------------------------------


def test_external_mode_reaches_a_real_broker(tansu: TansuBroker, tmp_path: Path) -> None:
    ws = Workspace.load(
        workspace(tmp_path / "ws", f'mode = "external"\nbootstrap = "{tansu.bootstrap}"')
    )
    chosen, why = open_broker(ws.broker_mode, ws, source="aerogrid.toml")
    assert isinstance(chosen, ExternalMode)
    assert why == f"mode external (aerogrid.toml): {tansu.bootstrap}"
    assert chosen.uri == ws.broker_uri == tansu.bootstrap
    status = chosen.status()
    assert status.running and status.bootstrap == tansu.bootstrap
    assert status.detail == f"external Kafka at {tansu.bootstrap} answers (PLAINTEXT)"
    up = chosen.up()
    assert up.running and up.detail.startswith("external broker: nothing to start")
    assert "nothing to stop" in chosen.down().detail
    assert tansu.running  # down left it alone
    assert chosen.app_env() == {"AEROGRID_BROKER": tansu.bootstrap}


def test_external_mode_names_the_cause_of_a_closed_port(tmp_path: Path) -> None:
    port = free_port()
    ws = Workspace.load(
        workspace(tmp_path / "ws", f'mode = "external"\nbootstrap = "127.0.0.1:{port}"')
    )
    chosen, _ = open_broker("external", ws)
    began = time.monotonic()
    status = chosen.status()
    assert time.monotonic() - began < 5
    assert not status.running
    assert status.detail == f"cannot reach 127.0.0.1:{port}: connection refused"


def test_external_tls_and_sasl_settings_come_from_the_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = workspace(
        tmp_path / "ws",
        'mode = "external"\nbootstrap = "kafka-1.corp:9093,kafka-2.corp:9093"\n\n'
        '[broker.tls]\nca_file = "certs/ca.pem"\n\n'
        '[broker.sasl]\nmechanism = "scram-sha-512"\nusername = "alice"\n'
        'password_env = "CORP_KAFKA_PASSWORD"',
    )
    ws = Workspace.load(folder)
    assert ws.external is not None
    ca = str((folder / "certs" / "ca.pem").resolve())
    assert ws.external.settings == BrokerSettings(
        bootstrap_servers=("kafka-1.corp:9093", "kafka-2.corp:9093"),
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password=None,
        ssl_cafile=ca,
    )
    assert ws.external.password_env == "CORP_KAFKA_PASSWORD"
    assert ws.broker_uri == (
        "kafka+sasl_ssl://alice@kafka-1.corp:9093,kafka-2.corp:9093"
        f"?mechanism=SCRAM-SHA-512&cafile={ca.replace('/', '%2F')}"
    )
    chosen = ExternalMode(ws.external)
    monkeypatch.delenv("CORP_KAFKA_PASSWORD", raising=False)
    with pytest.raises(BrokerError, match="the password variable CORP_KAFKA_PASSWORD is not set"):
        chosen.settings()
    monkeypatch.setenv("CORP_KAFKA_PASSWORD", "s3cret-pass")
    with pytest.raises(BrokerError, match=r"ca_file .*ca\.pem does not exist"):
        chosen.settings()
    made = make_test_pki(folder / "pki")
    (folder / "certs").mkdir()
    (folder / "certs" / "ca.pem").write_bytes(made.ca_cert.read_bytes())
    settings = chosen.settings()
    assert settings.sasl_password == "s3cret-pass" and settings.ssl_cafile == ca
    assert "ssl_context" in settings.client_options()
    env = chosen.app_env()
    assert env["AEROGRID_SASL_USERNAME"] == "alice"
    assert env["AEROGRID_SASL_PASSWORD"] == "s3cret-pass"
    assert "s3cret" not in env["AEROGRID_BROKER"] and "s3cret" not in repr(settings)
    # An app given that environment connects with exactly these settings.
    monkeypatch.setenv("AEROGRID_SASL_PASSWORD", "s3cret-pass")
    assert BrokerSettings.from_env(env["AEROGRID_BROKER"]) == settings


def test_external_mutual_tls_without_sasl(tmp_path: Path) -> None:
    folder = workspace(
        tmp_path / "ws",
        'mode = "external"\nbootstrap = "kafka.corp:9094"\n\n'
        '[broker.tls]\nca_file = "/etc/corp/ca.pem"\ncert_file = "me.pem"\n'
        'key_file = "me.key"\nverify = false',
    )
    external = Workspace.load(folder).external
    assert external is not None
    settings = external.resolve({})
    assert settings.security_protocol == "SSL" and settings.sasl_mechanism is None
    assert settings.ssl_cafile == "/etc/corp/ca.pem"
    assert settings.ssl_certfile == str((folder / "me.pem").resolve())
    assert settings.ssl_keyfile == str((folder / "me.key").resolve())
    assert settings.ssl_verify is False


SECURE_USER, SECURE_PASSWORD = "alice", "alice-secret"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_kafka(pki: TestPKI) -> Iterator[ApacheKafka]:
    """A real Apache Kafka with a SASL_SSL listener (SCRAM-SHA-512), for this module."""
    security = KafkaSecurity(
        users={SECURE_USER: SECURE_PASSWORD},
        mechanisms=("SCRAM-SHA-512",),
        tls_cert_chain=pki.server_cert,
        tls_key=pki.server_key,
    )
    yield from _session_broker(ApacheKafka(security=security))


def test_external_mode_over_sasl_ssl_against_a_secured_kafka(
    secure_kafka: ApacheKafka, pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = secure_kafka.address("SASL_SSL")
    ws = Workspace.load(
        workspace(
            tmp_path / "ws",
            f'mode = "external"\nbootstrap = "{address}"\n\n'
            f'[broker.tls]\nca_file = "{pki.ca_cert}"\n\n'
            f'[broker.sasl]\nmechanism = "SCRAM-SHA-512"\nusername = "{SECURE_USER}"\n'
            'password_env = "TEST_KAFKA_PASSWORD"',
        )
    )
    chosen, _ = open_broker("external", ws)
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", SECURE_PASSWORD)
    status = chosen.status()
    assert status.running, status.detail
    assert status.detail == (
        f"external Kafka at {address} answers (SASL_SSL, SCRAM-SHA-512 as 'alice')"
    )
    assert asyncio.run(roundtrip(chosen.settings(), "secured-orders")) == [
        (b"o1", b'{"product": "tea"}')
    ]
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "not-alices-password")
    refused = chosen.status()
    assert not refused.running
    assert "authentication failed" in refused.detail
    assert "not-alices-password" not in refused.detail
    # A CA that did not sign the broker's certificate: the cause says so.
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", SECURE_PASSWORD)
    stranger = make_test_pki(tmp_path / "other-ca")
    (tmp_path / "ws" / "aerogrid.toml").write_text(
        (tmp_path / "ws" / "aerogrid.toml")
        .read_text()
        .replace(str(pki.ca_cert), str(stranger.ca_cert))
    )
    untrusted, _ = open_broker("external", Workspace.load(tmp_path / "ws"))
    assert "TLS certificate verification failed" in untrusted.status().detail


# --- workspace errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            'mode = "cloud"',
            "broker mode 'cloud' is not one of auto, embedded, kafka, docker, external",
        ),
        ('mode = "external"', 'broker mode external needs bootstrap = "host:port"'),
        (
            'mode = "external"\nbootstrap = "h:9093"\n[broker.sasl]\nusername = "a"\n'
            'password = "hunter2"',
            "[broker.sasl] password: do not write passwords in aerogrid.toml",
        ),
        ('password = "hunter2"', "[broker] password: do not write passwords in aerogrid.toml"),
        (
            'mode = "external"\nbootstrap = "kafka+sasl_ssl://alice:hunter2@h:9093"',
            "[broker] bootstrap has credentials in it",
        ),
        ('bootsrap = "h:9092"', "unknown key 'bootsrap' in [broker]"),
        (
            'mode = "external"\nbootstrap = "h:9093"\n[broker.sasl]\npassword_env = "my password"',
            "password_env 'my password' is not an environment variable name",
        ),
        (
            'mode = "external"\nbootstrap = "h:9093"\nsecurity_protocol = "SASL_PLAINTEXT"\n'
            '[broker.sasl]\nusername = "a"\n[broker.tls]\nca_file = "ca.pem"',
            "[broker.tls] is set but security_protocol is SASL_PLAINTEXT",
        ),
        ('mode = "external"\nbootstrap = "no-port"', "broker address 'no-port' is not host:port"),
        ('port = "ninety"', "[broker] port 'ninety' is not a port number"),
        ('[broker.docker]\ncontainer = "my kafka"', "[broker.docker] container 'my kafka'"),
        ("[broker.docker]\nstart_timeout = 0", "start_timeout must be a positive number"),
    ],
)
def test_workspace_broker_errors_are_clear(tmp_path: Path, table: str, message: str) -> None:
    folder = workspace(tmp_path / "ws", table)
    with pytest.raises(ConfigurationError) as caught:
        Workspace.load(folder)
    text = str(caught.value)
    assert text.startswith(f"{folder / 'aerogrid.toml'}: ")
    assert message in text
    assert "hunter2" not in text


def test_workspace_defaults_and_the_earlier_form_still_load(tmp_path: Path) -> None:
    plain = Workspace.load(workspace(tmp_path / "a", 'mode = "embedded"'))
    assert plain.broker_mode == "embedded" and plain.broker_port is None
    assert plain.broker_uri is None and plain.external is None
    assert plain.docker == DockerConfig()
    assert plain.docker.image == DEFAULT_DOCKER_IMAGE
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "aerogrid.toml").write_text("[endpoint]\nport = 50100\n")
    bare = Workspace.load(tmp_path / "b")
    assert bare.broker_mode == "embedded" and bare.endpoint_port == 50100
    old = Workspace.load(
        workspace(tmp_path / "c", 'mode = "external"\nbootstrap = "kafka.corp:9092"')
    )
    assert old.broker_mode == "external" and old.broker_uri == "kafka.corp:9092"
    docker_ws = Workspace.load(
        workspace(tmp_path / "d", 'mode = "auto"\nport = 19092\n[broker.docker]\nimage = "x:1"')
    )
    assert docker_ws.broker_mode == "auto" and docker_ws.broker_port == 19092
    assert docker_ws.docker == DockerConfig(image="x:1")


def test_workspace_cloud_targets(tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    folder.mkdir()
    manifest = folder / "aerogrid.toml"
    manifest.write_text(
        "[cloud.targets.prod]\n"
        'tenant = "trading"\ncontext = "prod-eu"\nendpoint = "https://grids.example.com"\n'
        '[cloud.targets.lab]\ntenant = "research"\n'
    )
    targets = Workspace.load(folder).cloud_targets
    assert targets["prod"].context == "prod-eu" and targets["prod"].tenant == "trading"
    assert targets["lab"].context is None and targets["lab"].endpoint is None
    manifest.write_text('[cloud.targets.prod]\ncontext = "prod-eu"\n')
    with pytest.raises(ConfigurationError, match=r"\[cloud.targets.prod\] needs tenant"):
        Workspace.load(folder)
    manifest.write_text('[cloud.targets.prod]\ntenant = "t"\nnamespace = "x"\n')
    with pytest.raises(
        ConfigurationError, match=r"unknown key 'namespace' in \[cloud.targets.prod\]"
    ):
        Workspace.load(folder)


# --- which clients work: read from the compatibility suite's table -----------------------------


def test_status_names_the_clients_that_work_and_those_that_fail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = {
        "brokers": {
            "embedded": {"title": "tansu 0.6.0", "modes": ["embedded"]},
            "apache-kafka": {"title": "Apache Kafka 4.4.0", "modes": ["kafka", "docker"]},
        },
        "clients": {"aiokafka": "aiokafka 0.14.0", "kcat": "kcat 1.7.1"},
        "results": {
            "embedded": {
                "aiokafka": {"works": True, "reason": ""},
                "kcat": {"works": False, "reason": "ApiVersions: Read underflow"},
            },
            "apache-kafka": {
                "aiokafka": {"works": True, "reason": ""},
                "kcat": {"works": True, "reason": ""},
            },
        },
    }
    monkeypatch.setattr(compatibility, "_table", lambda: table)
    assert compatibility.clients_line("embedded") == (
        "clients (tested on tansu 0.6.0): work: aiokafka 0.14.0; "
        "fail: kcat 1.7.1 (ApiVersions: Read underflow)"
    )
    assert compatibility.clients_line("docker") == (
        "clients (tested on Apache Kafka 4.4.0): work: aiokafka 0.14.0, kcat 1.7.1"
    )
    shown = CliRunner().invoke(broker_cli, ["status", "--mode", "embedded", "--json"])
    assert "fail: kcat 1.7.1" in json.loads(shown.stdout)["clients"]
    monkeypatch.setattr(compatibility, "_table", dict)
    assert "not measured for mode kafka" in compatibility.clients_line("kafka")
