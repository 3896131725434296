"""The supervisor against real app processes and the embedded broker: it runs apps,
restarts one that crashes (with backoff), and reloads one whose file is saved."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from aerogrid.client import GridClient
from aerogrid_devkit.supervisor import Supervisor
from aerogrid_devkit.tui.apps.screen import app_row
from support.apps import write_orders_app
from support.brokers import Broker


async def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_runs_restarts_and_reloads_apps(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    (tmp_path / "good").mkdir()
    good = write_orders_app(tmp_path / "good", f"{unique_name}-good", f"{unique_name}-orders")
    (tmp_path / "broken").mkdir()
    broken = tmp_path / "broken" / "app.py"
    broken.write_text("import aerogrid\nraise RuntimeError('not yet')\n")
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(
        {"good": good, "broken": broken},
        tansu.bootstrap,
        on_log=lambda app, line: lines.append((app, line)),
        backoff_start=0.2,
    )
    await supervisor.start()
    try:
        apps = supervisor.apps
        await wait_for(lambda: apps["good"].status == "running")
        await wait_for(lambda: apps["broken"].restarts >= 2)
        assert apps["broken"].status in ("crashed", "starting")
        assert any("not yet" in line for app, line in lines if app == "broken")
        # fix the broken app: the saved file reloads it, and it runs
        write_orders_app(tmp_path / "broken", f"{unique_name}-fixed", f"{unique_name}-orders")
        (tmp_path / "broken" / f"{unique_name}-fixed.py").replace(broken)
        await wait_for(lambda: apps["broken"].status == "running", timeout=60)
        async with GridClient(f"127.0.0.1:{apps['broken'].ports['grpc']}") as client:
            assert [a.name for a in await client.apps()] == [f"{unique_name}-fixed"]
        # a save in the good app's folder reloads it too, without counting a crash
        restarts = apps["good"].restarts
        first = apps["good"].ports["grpc"]
        good.write_text(good.read_text() + "\n# edited\n")
        await wait_for(
            lambda: (
                apps["good"].status == "running"
                and apps["good"].ports.get("grpc") not in (None, first)
            ),
            timeout=60,
        )
        assert apps["good"].restarts == restarts
    finally:
        await supervisor.stop()
    assert all(a.status == "stopped" for a in supervisor.apps.values())
    assert all(
        a.process is not None and a.process.returncode is not None for a in supervisor.apps.values()
    )


async def test_apps_with_requirements_get_their_own_cached_virtualenv(
    tansu: Broker, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aerogrid_devkit import envs

    monkeypatch.setenv("AEROGRID_HOME", str(tmp_path / "home"))
    folder = tmp_path / "needs-six"
    folder.mkdir()
    app_file = write_orders_app(folder, f"{unique_name}-six", f"{unique_name}-orders")
    app_file.write_text("import six  # from requirements.txt only\n" + app_file.read_text())
    (folder / "requirements.txt").write_text("# pinned\nsix==1.16.0\n")
    bad = tmp_path / "bad-reqs"
    bad.mkdir()
    bad_file = write_orders_app(bad, f"{unique_name}-bad", f"{unique_name}-orders")
    (bad / "requirements.txt").write_text("aerogrid-no-such-package-anywhere==0.0.1\n")
    lines: list[tuple[str, str]] = []
    supervisor = Supervisor(
        {"six": app_file, "bad": bad_file},
        tansu.bootstrap,
        python_for=envs.python_for,
        on_log=lambda app, line: lines.append((app, line)),
        backoff_start=0.2,
    )
    await supervisor.start()
    try:
        await wait_for(lambda: supervisor.apps["six"].status == "running", timeout=180)
        await wait_for(lambda: supervisor.apps["bad"].restarts >= 1, timeout=120)
    finally:
        await supervisor.stop()
    assert any("cannot install" in line for app, line in lines if app == "bad")
    python = envs.python_for(folder)  # cached: the same env, at once
    assert python != sys.executable and "envs" in python
    assert envs.python_for(tmp_path) == sys.executable  # no requirements: the devkit's own


async def test_stop_start_and_counters_of_one_app(
    tansu: Broker, unique_name: str, tmp_path: Path
) -> None:
    from support.apps import produce

    topic = f"{unique_name}-orders"
    app_file = write_orders_app(tmp_path, f"{unique_name}-app", topic)
    changes: list[str] = []
    supervisor = Supervisor({"app": app_file}, tansu.bootstrap, metrics_interval=0.2)
    supervisor.on_change.append(lambda app: changes.append(app.status))
    await supervisor.start()
    try:
        app = supervisor.apps["app"]
        await wait_for(lambda: app.status == "running")
        await produce(
            tansu.bootstrap,
            topic,
            [(b"k", b'{"product": "p", "quantity": 1}')] * 5 + [(b"bad", b"not json")],
        )
        await wait_for(lambda: app.stats.records_in >= 6 and app.stats.errors >= 1)
        assert app.stats.dead_lettered >= 1
        # The embedded broker has no transactions: the TUI's apps table says so.
        assert app.stats.health.startswith("checkpointed, not exactly-once"), app.stats.health
        assert "checkpointed, not exactly-once" in str(app_row(app).cells[-1])
        await supervisor.stop_app("app")
        assert app.status == "stopped" and app.process is not None
        assert app.process.returncode is not None
        supervisor.reload("app")  # a save while stopped does not start it
        await asyncio.sleep(0.5)
        assert app.status == "stopped"
        supervisor.start_app("app")
        await wait_for(lambda: app.status == "running")
        assert app.restarts == 0  # stopping by hand is not a crash
    finally:
        await supervisor.stop()
    assert changes[0] == "starting" and "stopped" in changes


async def test_its_temporary_folder_goes_on_stop_and_a_killed_ones_at_the_next_start(
    tansu: Broker, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    # A supervisor killed outright (SIGKILL) cannot clean up: its folder stays behind.
    killed = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import asyncio, sys\n"
            "from aerogrid_devkit.supervisor import Supervisor\n"
            "async def main():\n"
            "    await Supervisor({}, 'localhost:1').start()\n"
            "    print('started', flush=True)\n"
            "    await asyncio.sleep(60)\n"
            "asyncio.run(main())\n",
        ],
        env={**os.environ, "TMPDIR": str(temp)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert killed.stdout is not None and killed.stdout.readline() == "started\n"
    killed.kill()
    killed.wait(10)
    (left,) = temp.glob("aerogrid-dev-*")
    alive = temp / "aerogrid-dev-alive"  # a running supervisor's (this process's parent)
    alive.mkdir()
    (alive / "supervisor.pid").write_text(f"{os.getppid()}\n")
    unknown = temp / "aerogrid-dev-old"  # no pid: nothing proves its owner is gone
    unknown.mkdir()
    never_started = Supervisor({}, "localhost:1")  # as tests and `aerogrid` commands make them
    with pytest.raises(RuntimeError, match="has not started"):
        _ = never_started.workdir
    assert sorted(temp.glob("aerogrid-dev-*")) == sorted([left, alive, unknown])

    app_file = write_orders_app(tmp_path, f"{unique_name}-app", f"{unique_name}-orders")
    supervisor = Supervisor({"app": app_file}, tansu.bootstrap)
    await supervisor.start()
    try:
        await wait_for(lambda: supervisor.apps["app"].status == "running")
        assert (supervisor.workdir / "app-1.ready.json").exists()
        assert not left.exists() and alive.exists() and unknown.exists()
    finally:
        await supervisor.stop()
    assert not supervisor.workdir.exists()
    assert sorted(p.name for p in temp.iterdir()) == ["aerogrid-dev-alive", "aerogrid-dev-old"]
