"""The supervisor of the local loop: every app of a workspace in its own processes.

Each app runs as `python -m aerogrid run app.py` (so a crash, a leak or a blocking call
in one app touches no other), `[apps.NAME] replicas` times (each replica with its own
ports, ready file and `AEROGRID_REPLICA_ID=NAME-<k>`; the runtime makes one of them the
active and the others standbys). Each replica is restarted with exponential backoff
when it dies, and all are restarted when one of the app's files is saved. The output is
kept per app (and passed to `on_log`), and each replica's status is one of starting,
running, crashed, reloading, stopped (`app_process` has the app's, taken together).

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
from collections.abc import Callable, Mapping
from pathlib import Path

import watchfiles

from aerogrid.backoff import Backoff
from aerogrid_devkit.app_process import AppProcess, AppStats, ReplicaProcess
from aerogrid_devkit.embedded import signal_on_parent_death
from aerogrid_devkit.frozen import child_env, runtime_command
from aerogrid_devkit.replica_probe import http_get, probe_replica

__all__ = [
    "OWNER_FILE",
    "WORKDIR_PREFIX",
    "AppProcess",
    "AppStats",
    "ChangeSink",
    "LogSink",
    "ReplicaProcess",
    "Supervisor",
    "http_get",
    "remove_stale_workdirs",
]

WORKDIR_PREFIX = "aerogrid-dev-"
#: Holds the pid of the supervisor that owns a workdir (see `remove_stale_workdirs`).
OWNER_FILE = "supervisor.pid"

LogSink = Callable[[str, str], None]
ChangeSink = Callable[[AppProcess], None]


class Supervisor:
    """Runs, restarts and reloads the apps of a workspace (and their replicas) on one broker."""

    def __init__(
        self,
        apps: dict[str, Path],
        broker: str,
        *,
        replicas: Mapping[str, int] | None = None,
        on_log: LogSink | None = None,
        python_for: Callable[[Path], str] | None = None,
        backoff_start: float = 0.5,
        backoff_max: float = 15.0,
        stable_after: float = 30.0,
        metrics_interval: float = 1.0,
        env: dict[str, str] | None = None,
    ) -> None:
        counts = replicas or {}
        self.apps = {
            name: AppProcess(name, path.resolve(), counts.get(name, 1))
            for name, path in apps.items()
        }
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
        #: One task per replica, by replica id.
        self._replica_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        #: Made by `start()`, not here: a supervisor never started leaves no folder behind.
        self._workdir: Path | None = None

    @property
    def workdir(self) -> Path:
        """The temporary folder of the apps' ready files (made by `start()`, removed by
        `stop()`)."""
        if self._workdir is None:
            raise RuntimeError("the supervisor has not started: it has no workdir yet")
        return self._workdir

    async def start(self) -> None:
        await asyncio.to_thread(remove_stale_workdirs)
        self._workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
        (self._workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        for app in self.apps.values():
            self._spawn(app)
        self._tasks.append(asyncio.create_task(self._watch_files(), name="watch"))
        self._tasks.append(asyncio.create_task(self._poll_metrics(), name="metrics"))

    def _spawn(self, app: AppProcess) -> None:
        app.held = False
        for replica in app.replicas:
            task = self._replica_tasks.get(replica.id)
            if task is None or task.done():
                self._replica_tasks[replica.id] = asyncio.create_task(
                    self._keep_running(app, replica), name=f"app:{replica.id}"
                )

    def _running_tasks(self, app: AppProcess) -> list[asyncio.Task[None]]:
        tasks = (self._replica_tasks.get(replica.id) for replica in app.replicas)
        return [task for task in tasks if task is not None and not task.done()]

    async def stop_app(self, name: str, timeout: float = 10.0) -> None:
        """Stop one app (every replica) and keep it stopped (until `start_app`)."""
        app = self.apps[name]
        app.held = True
        _signal_all(app.replicas, signal.SIGTERM)
        tasks = self._running_tasks(app)
        if tasks:
            try:
                await asyncio.wait_for(asyncio.shield(asyncio.gather(*tasks)), timeout)
            except TimeoutError:
                _signal_all(app.replicas, signal.SIGKILL)
                await asyncio.gather(*tasks)
        for replica in app.replicas:
            self._set_status(app, replica, "stopped")
        self._log(app, f"[aerogrid dev] {name} stopped")

    def start_app(self, name: str) -> None:
        """Start an app that was stopped (running replicas are left alone)."""
        self._spawn(self.apps[name])

    def restart_app(self, name: str) -> None:
        """Restart an app now, as a save would (a stopped app is started)."""
        app = self.apps[name]
        if app.held or not self._running_tasks(app):
            self.start_app(name)
        else:
            self.reload(name)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every replica (they commit and exit within seconds), then SIGKILL."""
        self._stopping = True
        replicas = [r for app in self.apps.values() for r in app.replicas]
        _signal_all(replicas, signal.SIGTERM)
        waits = [r.process.wait() for r in replicas if r.process is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), timeout)
        _signal_all(replicas, signal.SIGKILL)
        tasks = [*self._tasks, *self._replica_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for app in self.apps.values():
            for replica in app.replicas:
                self._set_status(app, replica, "stopped")
        if self._workdir is not None:
            await asyncio.to_thread(shutil.rmtree, self._workdir, ignore_errors=True)

    def reload(self, name: str) -> None:
        """Restart every replica of an app with its saved files (a stopped app stays so)."""
        app = self.apps[name]
        if app.held:
            return
        for replica in app.replicas:
            replica.reload_requested = True
            self._set_status(app, replica, "reloading")
        _signal_all(app.replicas, signal.SIGTERM)

    # -- one replica's life --------------------------------------------------------------

    async def _keep_running(self, app: AppProcess, replica: ReplicaProcess) -> None:
        """Restart `replica` when it dies, after a delay growing from `backoff_start` to
        `backoff_max` (jittered, `aerogrid.backoff`); a reload or a long run starts over."""
        backoff = Backoff(initial=self.backoff_start, maximum=self.backoff_max)
        loop = asyncio.get_running_loop()
        while not self._stopping and not app.held:
            started = loop.time()
            await self._run_once(app, replica)
            if self._stopping or app.held:
                return
            if replica.reload_requested:
                replica.reload_requested = False
                backoff.reset()
                continue
            replica.restarts += 1
            self._set_status(app, replica, "crashed")
            if loop.time() - started > self.stable_after:
                backoff.reset()
            delay = backoff.next_delay()
            why = f"exited with {replica.exit_code}"
            self._log(app, f"[aerogrid dev] {app.label(replica)} {why}; restarting in {delay:.1f}s")
            await asyncio.sleep(delay)

    async def _run_once(self, app: AppProcess, replica: ReplicaProcess) -> None:
        ready = self.workdir / f"{replica.id}.ready.json"
        ready.unlink(missing_ok=True)
        replica.forget_report()
        status = "starting" if replica.status != "reloading" else "reloading"
        self._set_status(app, replica, status)
        env = {
            **os.environ,
            **self.env,
            "AEROGRID_BROKER": self.broker,
            "AEROGRID_REPLICA_ID": replica.id,
            "PYTHONUNBUFFERED": "1",
        }
        try:
            python = await asyncio.to_thread(self.python_for, app.path.parent)
        except Exception as exc:  # a bad requirements.txt: say why, retry with backoff
            self._log(app, f"[aerogrid dev] {app.label(replica)}: {exc}")
            replica.exit_code = None
            return
        try:
            replica.process = await self._start_process(app, python, ready, env)
        except (OSError, subprocess.SubprocessError) as exc:  # retried with backoff, said why
            self._log(app, f"[aerogrid dev] {app.label(replica)}: cannot start {python}: {exc}")
            replica.exit_code = None
            return
        watcher = asyncio.create_task(self._notice_ready(app, replica, ready))
        prefix = f"{replica.id}: " if len(app.replicas) > 1 else ""
        assert replica.process.stdout is not None
        async for raw in replica.process.stdout:
            self._log(app, prefix + raw.decode(errors="replace").rstrip())
        replica.exit_code = await replica.process.wait()
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

    async def _notice_ready(self, app: AppProcess, replica: ReplicaProcess, ready: Path) -> None:
        # The runner writes the file atomically once it serves; a tiny local file, polled.
        while not ready.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.05)
        info = json.loads(ready.read_text())  # noqa: ASYNC240
        replica.ports = {"grpc": info["grpc_port"], "http": info["http_port"]}
        if len(app.replicas) > 1 and replica.process is not None:
            self._log(app, f"[aerogrid dev] {replica.id} ready (pid {replica.process.pid})")
        self._set_status(app, replica, "running")

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
        """Read each running replica's counters and role (`replica_probe`), all at once."""
        while True:
            await asyncio.sleep(self.metrics_interval)
            running = [
                (app, replica)
                for app in list(self.apps.values())
                for replica in app.running()
                if "http" in replica.ports
            ]
            roles = [replica.role for _, replica in running]
            answered = await asyncio.gather(
                *(probe_replica(replica, self.metrics_interval) for _, replica in running)
            )
            for (app, replica), role, ok in zip(running, roles, answered, strict=True):
                if not ok:
                    continue
                if replica.role != role and len(app.replicas) > 1:
                    self._log(app, f"[aerogrid dev] {replica.id} is {replica.role}")
                self._changed(app)

    def _set_status(self, app: AppProcess, replica: ReplicaProcess, status: str) -> None:
        replica.status = status
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


def _signal_all(replicas: list[ReplicaProcess], sig: signal.Signals) -> None:
    """Signal each running replica's process group (the app's own children too)."""
    for replica in replicas:
        if replica.process is not None and replica.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(replica.process.pid, sig)
