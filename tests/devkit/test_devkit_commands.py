"""The devkit's commands as a user runs them: `aerogrid broker|topics|produce|tail`.

Each test gets its own AEROGRID_HOME, so the background broker it starts is its own,
and is always stopped at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aerogrid_devkit import embedded


def aerogrid(
    home: Path, *args: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AEROGRID_HOME": str(home)}
    env.pop("AEROGRID_BROKER", None)
    return subprocess.run(
        [sys.executable, "-m", "aerogrid", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    aerogrid(tmp_path, "broker", "down")


def test_broker_up_is_idempotent_and_down_stops_it(home: Path) -> None:
    first = aerogrid(home, "broker", "up", "--mode", "embedded", "--port", "0")
    assert first.returncode == 0, first.stderr
    assert "started on 127.0.0.1:" in first.stdout
    again = aerogrid(home, "broker", "up")
    assert "already running" in again.stdout
    status = json.loads(aerogrid(home, "broker", "status", "--json").stdout)
    assert status["running"] and status["bootstrap"].startswith("127.0.0.1:")
    pid = json.loads((home / "broker.json").read_text())["pid"]
    assert "stopped" in aerogrid(home, "broker", "down").stdout
    assert not embedded.alive(pid)
    assert json.loads(aerogrid(home, "broker", "status", "--json").stdout)["running"] is False
    assert "no broker running" in aerogrid(home, "broker", "down").stdout


def test_produce_topics_and_tail_against_the_local_broker(home: Path, tmp_path: Path) -> None:
    assert aerogrid(home, "broker", "up", "--mode", "embedded", "--port", "0").returncode == 0
    sent = aerogrid(
        home,
        "produce",
        "orders",
        '{"product": "tea", "quantity": 2}',
        "--key",
        "o1",
        "--header",
        "source=cli",
    )
    assert sent.returncode == 0, sent.stderr
    lines = tmp_path / "orders.jsonl"
    lines.write_text('{"product": "bun", "quantity": 1}\n\nnot json at all\n')
    from_file = aerogrid(home, "produce", "orders", "--file", str(lines), "--key", "o2")
    assert from_file.returncode == 0 and len(from_file.stdout.splitlines()) == 2
    listed = json.loads(aerogrid(home, "topics", "--json").stdout)
    orders = next(t for t in listed if t["name"] == "orders")
    assert sum(orders["ends"].values()) == 3
    tailed = aerogrid(
        home, "tail", "orders", "--from-beginning", "--max", "3", "--json", "--idle-timeout", "10"
    )
    assert tailed.returncode == 0, tailed.stderr
    records = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert sorted(json.dumps(r["value"]) for r in records) == sorted(
        json.dumps(v)
        for v in (
            {"product": "bun", "quantity": 1},
            {"product": "tea", "quantity": 2},
            "not json at all",
        )
    )
    tea = next(r for r in records if r["key"] == "o1")
    assert tea["headers"] == {"source": "cli"}
    text = aerogrid(
        home, "tail", "orders", "--from-beginning", "--max", "1", "--idle-timeout", "10"
    )
    assert "key=" in text.stdout


def test_clear_errors_without_a_broker_or_with_bad_input(home: Path) -> None:
    nowhere = ["--broker", "127.0.0.1:1"]
    produced = aerogrid(home, "produce", "orders", "x", *nowhere)
    assert produced.returncode == 1 and "cannot produce to orders at 127.0.0.1:1" in produced.stderr
    assert "Unclosed" not in produced.stderr
    listed = aerogrid(home, "topics", *nowhere)
    assert listed.returncode == 1 and "cannot reach the broker" in listed.stderr
    assert aerogrid(home, "produce", "orders").returncode == 1  # neither VALUE nor --file
    bad_header = aerogrid(home, "produce", "orders", "x", "--header", "nonsense", *nowhere)
    assert bad_header.returncode == 1 and "NAME=VALUE" in bad_header.stderr
    assert aerogrid(home, "broker", "up", "--mode", "embedded", "--port", "0").returncode == 0
    missing = aerogrid(home, "tail", "no-such-topic", "--idle-timeout", "2")
    assert missing.returncode == 1 and "no topic named 'no-such-topic'" in missing.stderr


def test_new_scaffolds_an_app_whose_own_test_passes(home: Path, tmp_path: Path) -> None:
    import tomllib

    from aerogrid.runner.loader import load_app

    workspace = tmp_path / "ws"
    made = aerogrid(home, "new", "shop", "--workspace", str(workspace))
    assert made.returncode == 0, made.stderr
    assert aerogrid(home, "new", "stock", "--workspace", str(workspace)).returncode == 0
    manifest = tomllib.loads((workspace / "aerogrid.toml").read_text())
    assert manifest["apps"] == {"shop": {"path": "shop"}, "stock": {"path": "stock"}}
    assert sorted(p.name for p in (workspace / "shop").iterdir()) == [
        "app.py",
        "requirements.txt",
        "test_app.py",
    ]
    app = load_app(workspace / "shop" / "app.py")
    assert app.name == "shop" and list(app.grids) == ["product_sum"]
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "shop"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout
    again = aerogrid(home, "new", "shop", "--workspace", str(workspace))
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = aerogrid(home, "new", "Bad Name!", "--workspace", str(workspace))
    assert bad.returncode == 1 and "app name" in bad.stderr


def test_dev_runs_the_workspace_and_stops_on_ctrl_c(home: Path, tmp_path: Path) -> None:
    import signal
    import time

    workspace = tmp_path / "ws"
    assert aerogrid(home, "new", "shop", "--workspace", str(workspace)).returncode == 0
    manifest = workspace / "aerogrid.toml"
    port = embedded.free_port()
    manifest.write_text(manifest.read_text().replace("port = 50051", f"port = {port}"))
    env = {**os.environ, "AEROGRID_HOME": str(home)}
    env.pop("AEROGRID_BROKER", None)
    dev = subprocess.Popen(
        [sys.executable, "-m", "aerogrid", "dev", str(workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 60
        assert dev.stdout is not None
        while time.monotonic() < deadline:
            line = dev.stdout.readline()
            seen.append(line)
            if "gRPC on" in line:
                break
        assert any(line.startswith("shop | ") and "gRPC on" in line for line in seen), seen
        assert any(f"local endpoint on http://localhost:{port}" in line for line in seen), seen
        # auto's choice, said in one line (kafka where Java 17+ is, else embedded)
        assert any(line.startswith("broker: auto: ") for line in seen), seen
        # the app is reachable through the local endpoint, by its declared name
        target = f"127.0.0.1:{port}"
        watched = aerogrid(home, "watch", "shop", "product_sum", "--target", target, "--once")
        assert watched.returncode == 0, watched.stderr
        unknown = aerogrid(home, "watch", "nope", "product_sum", "--target", target, "--once")
        assert unknown.returncode != 0 and "shop" in unknown.stderr  # names the known apps
        dev.send_signal(signal.SIGINT)
        rest, _ = dev.communicate(timeout=30)
    finally:
        if dev.poll() is None:
            dev.kill()
    assert dev.returncode == 0
    assert "stopping the apps" in rest
    assert json.loads(aerogrid(home, "broker", "status", "--json").stdout)["running"]


def test_dev_explains_a_folder_that_is_no_workspace(home: Path, tmp_path: Path) -> None:
    done = aerogrid(home, "dev", str(tmp_path))
    assert done.returncode == 1 and "no aerogrid.toml" in done.stderr


def test_topic_commands_use_the_workspace_broker(home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    closed = embedded.free_port()
    (workspace / "aerogrid.toml").write_text(
        f'[broker]\nmode = "external"\nbootstrap = "127.0.0.1:{closed}"\n'
    )
    done = aerogrid(home, "topics", cwd=workspace, timeout=90)
    assert done.returncode == 1 and f"127.0.0.1:{closed}" in done.stderr
    (workspace / "aerogrid.toml").write_text('[broker]\nmode = "sideways"\n')
    broken = aerogrid(home, "produce", "t", "v", cwd=workspace)
    assert broken.returncode == 1 and "sideways" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_apps_stop_when_dev_is_killed_hard(home: Path, tmp_path: Path) -> None:
    """A SIGKILLed `aerogrid dev` leaves no app running (they are in their own group)."""
    import signal
    import time

    import psutil  # type: ignore[import-untyped]

    workspace = tmp_path / "ws"
    assert aerogrid(home, "new", "shop", "--workspace", str(workspace)).returncode == 0
    manifest = workspace / "aerogrid.toml"
    manifest.write_text(
        manifest.read_text().replace("port = 50051", f"port = {embedded.free_port()}")
    )
    env = {**os.environ, "AEROGRID_HOME": str(home)}
    env.pop("AEROGRID_BROKER", None)
    dev = subprocess.Popen(
        [sys.executable, "-m", "aerogrid", "dev", str(workspace)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert dev.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "gRPC on" not in dev.stdout.readline():
            pass
        apps = [
            p
            for p in psutil.Process(dev.pid).children(recursive=True)
            if "run" in p.cmdline() and any(a.endswith("app.py") for a in p.cmdline())
        ]
        assert apps, "the app process was not found"
        dev.send_signal(signal.SIGKILL)
        dev.wait(10)
        _, alive = psutil.wait_procs(apps, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if dev.poll() is None:
            dev.kill()
