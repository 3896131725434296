"""The supervisor of the local loop: every app of a workspace in its own process.

Each app runs as `python -m aerogrid run app.py` (so a crash, a leak or a blocking call
in one app touches no other), is restarted with exponential backoff when it dies, and
is restarted when one of its files is saved. Its output is kept per app (and passed to
`on_log`), and its status is one of starting, running, crashed, reloading, stopped.

The apps' ready files live in a temporary `aerogrid-dev-*` folder, removed by `stop()`
(`aerogrid dev` stops on SIGINT and SIGTERM). A supervisor killed outright (SIGKILL)
leaves its folder behind; the folder holds the supervisor's pid, so the next one to
start removes the folders whose supervisor is provably gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles
from prometheus_client.parser import text_string_to_metric_families

from aerogrid.backoff import Backoff
from aerogrid.net import LOOPBACK_HOST
from aerogrid_devkit.embedded import signal_on_parent_death
from aerogrid_devkit.frozen import child_env, runtime_command

WORKDIR_PREFIX = "aerogrid-dev-"
#: Holds the pid of the supervisor that owns a workdir (see `remove_stale_workdirs`).
OWNER_FILE = "supervisor.pid"

LogSink = Callable[[str, str], None]
ChangeSink = Callable[["AppProcess"], None]


@dataclass
class AppStats:
    """What an app's /metrics said last (totals since it started, rate over the last poll)."""

    records_in: float = 0.0
    records_per_s: float = 0.0
    errors: float = 0.0
    dead_lettered: float = 0.0
    #: What a serving app's /readyz says it lacks (degraded, a weaker guarantee), or "".
    health: str = ""


@dataclass
class AppProcess:
    """One supervised app and what is known about it."""

    name: str
    path: Path
    status: str = "stopped"
    restarts: int = 0
    exit_code: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    logs: deque[str] = field(default_factory=lambda: deque(maxlen=5000))
    process: asyncio.subprocess.Process | None = None
    reload_requested: bool = False
    #: Stopped by the user (`stop_app`): not restarted until `start_app`.
    held: bool = False
    stats: AppStats = field(default_factory=AppStats)


class Supervisor:
    """Runs, restarts and reloads the apps of a workspace against one broker."""

    def __init__(
        self,
        apps: dict[str, Path],
        broker: str,
        *,
        on_log: LogSink | None = None,
        python_for: Callable[[Path], str] | None = None,
        backoff_start: float = 0.5,
        backoff_max: float = 15.0,
        stable_after: float = 30.0,
        metrics_interval: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.apps = {name: AppProcess(name, path.resolve()) for name, path in apps.items()}
        self.broker = broker
        self.on_log = on_log or (lambda app, line: None)
        #: The interpreter of each app folder (its own virtualenv when it has requirements).
        self.python_for = python_for or (lambda folder: sys.executable)
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.metrics_interval = metrics_interval
        #: Extra environment for every app (a broker's SASL credentials, say).
        self.env = dict(env or {})
        #: Called (on the event loop) whenever an app's status, ports or counters change.
        self.on_change: list[ChangeSink] = []
        self._app_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self._workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")

    @property
    def workdir(self) -> Path:
        """The temporary folder of the apps' ready files (removed by `stop()`)."""
        return self._workdir

    async def start(self) -> None:
        await asyncio.to_thread(remove_stale_workdirs)
        for app in self.apps.values():
            self._spawn(app)
        self._tasks.append(asyncio.create_task(self._watch_files(), name="watch"))
        self._tasks.append(asyncio.create_task(self._poll_metrics(), name="metrics"))

    def _spawn(self, app: AppProcess) -> None:
        app.held = False
        task = self._app_tasks.get(app.name)
        if task is None or task.done():
            self._app_tasks[app.name] = asyncio.create_task(
                self._keep_running(app), name=f"app:{app.name}"
            )

    async def stop_app(self, name: str, timeout: float = 10.0) -> None:
        """Stop one app and keep it stopped (until `start_app`)."""
        app = self.apps[name]
        app.held = True
        _signal(app, signal.SIGTERM)
        task = self._app_tasks.get(name)
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except TimeoutError:
                _signal(app, signal.SIGKILL)
                await task
        self._set_status(app, "stopped")
        self._log(app, f"[aerogrid dev] {name} stopped")

    def start_app(self, name: str) -> None:
        """Start an app that was stopped (a running app is left alone)."""
        self._spawn(self.apps[name])

    def restart_app(self, name: str) -> None:
        """Restart an app now, as a save would (a stopped app is started)."""
        app = self.apps[name]
        if app.held or name not in self._app_tasks or self._app_tasks[name].done():
            self.start_app(name)
        else:
            self.reload(name)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every app (they commit and exit within seconds), then SIGKILL."""
        self._stopping = True
        for app in self.apps.values():
            _signal(app, signal.SIGTERM)
        waits = [app.process.wait() for app in self.apps.values() if app.process is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        for app in self.apps.values():
            _signal(app, signal.SIGKILL)
        tasks = [*self._tasks, *self._app_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for app in self.apps.values():
            self._set_status(app, "stopped")
        await asyncio.to_thread(shutil.rmtree, self._workdir, ignore_errors=True)

    def reload(self, name: str) -> None:
        app = self.apps[name]
        if app.held:
            return
        app.reload_requested = True
        self._set_status(app, "reloading")
        _signal(app, signal.SIGTERM)

    # -- one app's life ------------------------------------------------------------------

    async def _keep_running(self, app: AppProcess) -> None:
        """Restart `app` when it dies, after a delay growing from `backoff_start` to
        `backoff_max` (jittered, `aerogrid.backoff`); a reload or a long run starts over."""
        backoff = Backoff(initial=self.backoff_start, maximum=self.backoff_max)
        loop = asyncio.get_running_loop()
        while not self._stopping and not app.held:
            started = loop.time()
            await self._run_once(app)
            if self._stopping or app.held:
                return
            if app.reload_requested:
                app.reload_requested = False
                backoff.reset()
                continue
            app.restarts += 1
            self._set_status(app, "crashed")
            if loop.time() - started > self.stable_after:
                backoff.reset()
            delay = backoff.next_delay()
            why = f"exited with {app.exit_code}"
            self._log(app, f"[aerogrid dev] {app.name} {why}; restarting in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _run_once(self, app: AppProcess) -> None:
        ready = self._workdir / f"{app.name}.ready.json"
        ready.unlink(missing_ok=True)
        app.ports = {}
        app.stats = AppStats()
        self._set_status(app, "starting" if app.status != "reloading" else "reloading")
        env = {
            **os.environ,
            **self.env,
            "AEROGRID_BROKER": self.broker,
            "PYTHONUNBUFFERED": "1",
        }
        try:
            python = await asyncio.to_thread(self.python_for, app.path.parent)
        except Exception as exc:  # a bad requirements.txt: say why, retry with backoff
            self._log(app, f"[aerogrid dev] {app.name}: {exc}")
            app.exit_code = None
            return
        try:
            app.process = await self._start_process(app, python, ready, env)
        except (OSError, subprocess.SubprocessError) as exc:  # retried with backoff, said why
            self._log(app, f"[aerogrid dev] {app.name}: cannot start {python}: {exc}")
            app.exit_code = None
            return
        watcher = asyncio.create_task(self._notice_ready(app, ready))
        assert app.process.stdout is not None
        async for raw in app.process.stdout:
            self._log(app, raw.decode(errors="replace").rstrip())
        app.exit_code = await app.process.wait()
        watcher.cancel()

    async def _start_process(
        self, app: AppProcess, python: str, ready: Path, env: dict[str, str]
    ) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *runtime_command(python),
            "run",
            str(app.path),
            "--port",
            "0",
            "--ready-file",
            str(ready),
            "--broker",
            self.broker,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            env=child_env(env),
            cwd=str(app.path.parent),
            start_new_session=True,
            # SIGTERM when the supervisor dies, even by SIGKILL: apps are in their own
            # process group, so nothing else would stop them; they commit and exit.
            preexec_fn=signal_on_parent_death(signal.SIGTERM),
        )

    async def _notice_ready(self, app: AppProcess, ready: Path) -> None:
        # The runner writes the file atomically once it serves; a tiny local file, polled.
        while not ready.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.05)
        info = json.loads(ready.read_text())  # noqa: ASYNC240
        app.ports = {"grpc": info["grpc_port"], "http": info["http_port"]}
        self._set_status(app, "running")

    async def _watch_files(self) -> None:
        folders = {app.path.parent for app in self.apps.values()}
        async for changes in watchfiles.awatch(*folders, debounce=300):
            changed = [Path(path) for _, path in changes]
            for app in self.apps.values():
                folder = app.path.parent
                if any(
                    p.suffix in (".py", ".txt", ".toml") and p.is_relative_to(folder)
                    for p in changed
                ):
                    self._log(app, f"[aerogrid dev] {app.name}: files changed, reloading")
                    self.reload(app.name)

    async def _poll_metrics(self) -> None:
        """Scrape each running app's /metrics for the counters a developer watches."""
        while True:
            await asyncio.sleep(self.metrics_interval)
            for app in list(self.apps.values()):
                if app.status != "running" or "http" not in app.ports:
                    continue
                try:
                    text = await http_get(LOOPBACK_HOST, app.ports["http"], "/metrics")
                    ready = await http_get(LOOPBACK_HOST, app.ports["http"], "/readyz")
                except (OSError, ValueError):
                    continue
                totals = _totals(text)
                previous = app.stats.records_in
                records_in = totals.get("aerogrid_records_in", 0.0)
                app.stats = AppStats(
                    records_in=records_in,
                    records_per_s=max(0.0, records_in - previous) / self.metrics_interval,
                    errors=totals.get("aerogrid_decode_errors", 0.0)
                    + totals.get("aerogrid_handler_errors", 0.0)
                    + totals.get("aerogrid_task_errors", 0.0),
                    dead_lettered=totals.get("aerogrid_dead_lettered", 0.0),
                    health=ready.strip().removeprefix("ready").removeprefix(":").strip(),
                )
                self._changed(app)

    def _set_status(self, app: AppProcess, status: str) -> None:
        app.status = status
        self._changed(app)

    def _changed(self, app: AppProcess) -> None:
        for sink in self.on_change:
            sink(app)

    def _log(self, app: AppProcess, line: str) -> None:
        app.logs.append(line)
        self.on_log(app.name, line)


def remove_stale_workdirs(parent: Path | None = None) -> list[Path]:
    """Remove the `aerogrid-dev-*` folders of supervisors that are gone; returns them.

    Gone means provably: the folder is ours and names a pid that no longer exists. A
    folder without a pid (an older devkit's) or whose pid runs (maybe reused) is kept.
    """
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        try:
            if folder.stat().st_uid != os.getuid():
                continue
            pid = int((folder / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if pid <= 0 or pid == os.getpid() or _alive(pid):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _signal(app: AppProcess, sig: signal.Signals) -> None:
    if app.process is not None and app.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.process.pid, sig)


async def http_get(host: str, port: int, path: str, timeout: float = 2.0) -> str:
    """A tiny HTTP/1.0 GET for loopback scrapes (no client library in the loop for this)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise ValueError(f"GET {path}: {head[:80]!r}")
    return body.decode()


def _totals(metrics_text: str) -> dict[str, float]:
    """Each counter/gauge family summed over its labels (`_total` samples for counters)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue
            totals[family.name] = totals.get(family.name, 0.0) + sample.value
    return totals
