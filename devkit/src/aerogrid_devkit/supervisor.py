"""The supervisor of the local loop: every app of a workspace in its own process.

Each app runs as `python -m aerogrid run app.py` (so a crash, a leak or a blocking call
in one app touches no other), is restarted with exponential backoff when it dies, and
is restarted when one of its files is saved. Its output is kept per app (and passed to
`on_log`), and its status is one of starting, running, crashed, reloading, stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles

LogSink = Callable[[str, str], None]


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
    ) -> None:
        self.apps = {name: AppProcess(name, path.resolve()) for name, path in apps.items()}
        self.broker = broker
        self.on_log = on_log or (lambda app, line: None)
        #: The interpreter of each app folder (its own virtualenv when it has requirements).
        self.python_for = python_for or (lambda folder: sys.executable)
        self.backoff_start = backoff_start
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._workdir = Path(tempfile.mkdtemp(prefix="aerogrid-dev-"))

    async def start(self) -> None:
        for app in self.apps.values():
            self._tasks.append(asyncio.create_task(self._keep_running(app), name=f"app:{app.name}"))
        self._tasks.append(asyncio.create_task(self._watch_files(), name="watch"))

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
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for app in self.apps.values():
            app.status = "stopped"

    def reload(self, name: str) -> None:
        app = self.apps[name]
        app.reload_requested = True
        app.status = "reloading"
        _signal(app, signal.SIGTERM)

    # -- one app's life ------------------------------------------------------------------

    async def _keep_running(self, app: AppProcess) -> None:
        backoff = self.backoff_start
        loop = asyncio.get_running_loop()
        while not self._stopping:
            started = loop.time()
            await self._run_once(app)
            if self._stopping:
                return
            if app.reload_requested:
                app.reload_requested = False
                backoff = self.backoff_start
                continue
            app.status = "crashed"
            app.restarts += 1
            if loop.time() - started > self.stable_after:
                backoff = self.backoff_start
            why = f"exited with {app.exit_code}"
            self._log(app, f"[aerogrid dev] {app.name} {why}; restarting in {backoff:.1f}s")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max)

    async def _run_once(self, app: AppProcess) -> None:
        ready = self._workdir / f"{app.name}.ready.json"
        ready.unlink(missing_ok=True)
        app.status = "starting" if app.status != "reloading" else "reloading"
        app.ports = {}
        env = {**os.environ, "AEROGRID_BROKER": self.broker, "PYTHONUNBUFFERED": "1"}
        try:
            python = await asyncio.to_thread(self.python_for, app.path.parent)
        except Exception as exc:  # a bad requirements.txt: say why, retry with backoff
            self._log(app, f"[aerogrid dev] {app.name}: {exc}")
            app.exit_code = None
            return
        app.process = await asyncio.create_subprocess_exec(
            python,
            "-m",
            "aerogrid",
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
            env=env,
            cwd=str(app.path.parent),
            start_new_session=True,
        )
        watcher = asyncio.create_task(self._notice_ready(app, ready))
        assert app.process.stdout is not None
        async for raw in app.process.stdout:
            self._log(app, raw.decode(errors="replace").rstrip())
        app.exit_code = await app.process.wait()
        watcher.cancel()

    async def _notice_ready(self, app: AppProcess, ready: Path) -> None:
        # The runner writes the file atomically once it serves; a tiny local file, polled.
        while not ready.exists():  # noqa: ASYNC110, ASYNC240
            await asyncio.sleep(0.05)
        info = json.loads(ready.read_text())  # noqa: ASYNC240
        app.ports = {"grpc": info["grpc_port"], "http": info["http_port"]}
        app.status = "running"

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

    def _log(self, app: AppProcess, line: str) -> None:
        app.logs.append(line)
        self.on_log(app.name, line)


def _signal(app: AppProcess, sig: signal.Signals) -> None:
    if app.process is not None and app.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.process.pid, sig)
