"""The desktop binary (PyInstaller one-dir, `make binary`) runs on its own.

From a folder outside the checkout, with a PATH that has no project virtualenv (nor uv, nor
node) and a fresh HOME: `--version`, the demo end to end with its exact final grid (the
embedded broker, the orders app as a child of the same binary, the local endpoint, the
feed), and an app with requirements refused with what the binary needs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aerogrid import __version__
from aerogrid_devkit import embedded
from aerogrid_devkit.demo import MENU
from support.paths import REPO

BINARY = REPO / "dist" / "binary" / "onedir" / "aerogrid" / "aerogrid"
BARE_PATH = "/usr/bin:/bin"


@pytest.fixture(scope="module")
def binary() -> Path:
    if not BINARY.is_file():
        reason = f"{BINARY.relative_to(REPO)} is not built: run `make binary`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + " (CI=true: the binary's smoke test must run)", pytrace=False)
        pytest.skip(reason)
    return BINARY


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """What a user's shell might have: no venv, no uv, no project paths."""
    env = {"HOME": str(home), "PATH": BARE_PATH, "LANG": "C.UTF-8"}
    env["AEROGRID_DEVCERT_DIR"] = str(home / "devcert")
    return {**env, **extra}


def run(
    binary: Path, *args: str, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_bare_path_has_no_python_environment_of_ours() -> None:
    assert str(REPO) not in BARE_PATH and sys.prefix not in BARE_PATH


def test_version_is_the_projects(binary: Path, tmp_path: Path) -> None:
    done = run(binary, "--version", cwd=tmp_path, env=bare_env(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aerogrid, version {__version__}"


def test_demo_from_the_binary_ends_with_the_exact_final_grid(binary: Path, tmp_path: Path) -> None:
    done = run(
        binary,
        "demo",
        "--headless",
        "--duration",
        "20",
        "--json",
        "--port",
        "0",
        cwd=tmp_path,
        env=bare_env(tmp_path),
        timeout=240,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    final = json.loads(out.strip().splitlines()[-1])
    grid = final["product_sum"]
    summary = re.search(r"(\d+) orders sent \((\d+) malformed.*?\); (\d+) units in the grid", out)
    assert summary is not None, out
    sent, malformed, units = map(int, summary.groups())
    # The demo itself compares the grid with every order the feed sent (exit 1 otherwise).
    assert sent > 100 and malformed == sent // 97
    assert sum(row["units_sold"] for row in grid.values()) == units > sent - malformed - 1
    assert set(grid) <= set(MENU) and len(grid) >= 5
    assert re.search(r"first grid update \d+\.\d+s after start", out)


def test_an_app_with_requirements_says_what_the_binary_needs(binary: Path, tmp_path: Path) -> None:
    """No uv on PATH: the app is not started, and the log says what to install, and why."""
    env = bare_env(tmp_path, AEROGRID_HOME=str(tmp_path / "home"))
    created = run(binary, "new", "needy", "--workspace", "ws", cwd=tmp_path, env=env, timeout=60)
    assert created.returncode == 0, created.stderr
    workspace = tmp_path / "ws"
    manifest = workspace / "aerogrid.toml"
    port = embedded.free_port()
    manifest.write_text(manifest.read_text().replace("port = 50051", f"port = {port}"))
    (workspace / "needy" / "requirements.txt").write_text("six\n")
    dev = subprocess.Popen(
        [str(binary), "dev", str(workspace), "--mode", "embedded"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    try:
        assert dev.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("install uv" in line for line in seen):
            line = dev.stdout.readline()
            if not line:
                break
            seen.append(line)
        dev.send_signal(signal.SIGINT)
        dev.communicate(timeout=30)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        run(binary, "broker", "down", "--workspace", "ws", cwd=tmp_path, env=env, timeout=60)
    said = [line for line in seen if "install uv" in line]
    assert said and "requirements.txt" in said[0], "".join(seen)


def strip_ansi(data: bytes) -> str:
    return re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]", b"", data).decode(errors="replace")


def test_the_tui_runs_from_the_binary(binary: Path, tmp_path: Path) -> None:
    """`aerogrid demo` in a terminal: Textual's lazily imported widgets and the .tcss files
    are in the bundle, the live grid is drawn, and q (back), q (quit) leave with 0."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    env = bare_env(tmp_path, TERM="xterm-256color")
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the binary, in a 120x40 terminal
        os.chdir(tmp_path)
        os.execve(str(binary), [str(binary), "demo", "--port", "0"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    screen = b""

    def read_for(seconds: float) -> bool:
        """Read the terminal for `seconds`; False once the child has closed it."""
        nonlocal screen
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    screen += os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    return False
        return True

    try:
        # Wait for a product's row, not only the grid's header: the demo's producer may
        # still be starting when the (empty) grid is first drawn.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (
            "units_sold" in (drawn := strip_ansi(screen))
            and any(product in drawn for product in MENU)
        ):
            read_for(0.5)
        drawn = strip_ansi(screen)
        assert "product_sum" in drawn and "units_sold" in drawn, drawn[-3000:]
        assert any(product in drawn for product in MENU), drawn[-3000:]
        # The grid view's q goes back to the apps, the apps' q quits: press q once a second
        # until it has quit (a busy machine may still be switching screens on the second).
        for _ in range(30):
            os.write(fd, b"q")
            if not read_for(1.0):
                # The TUI has quit and closed the terminal; the process then stops its
                # apps (each commits and exits within 10 s) and its broker.
                deadline = time.monotonic() + 30
                while (reaped := os.waitpid(pid, os.WNOHANG))[0] == 0:
                    assert time.monotonic() < deadline, "the demo did not exit after its TUI"
                    time.sleep(0.1)
                status = reaped[1]
                break
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
        else:
            raise AssertionError("the TUI did not quit on q: " + strip_ansi(screen)[-2000:])
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(fd)
