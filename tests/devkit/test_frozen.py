"""Child processes of the desktop binary: what `aerogrid_devkit.frozen` changes when frozen.

The binary itself is exercised end to end in tests/packaging/test_binary.py; these pin the
rules with PyInstaller's markers set by hand (sys.frozen, sys._MEIPASS), so a change that
breaks them fails here, fast, without a build.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from aerogrid_devkit import frozen


@pytest.fixture
def as_frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    return tmp_path


def test_a_venv_runs_apps_with_python_dash_m() -> None:
    assert not frozen.is_frozen()
    assert frozen.runtime_command(sys.executable) == [sys.executable, "-m", "aerogrid"]
    env = {"LD_LIBRARY_PATH": "/x", "LD_LIBRARY_PATH_ORIG": "/y"}
    assert frozen.child_env(env) == env  # nothing to undo


def test_the_binary_runs_apps_itself_and_other_pythons_with_dash_m(as_frozen: Path) -> None:
    assert frozen.runtime_command(sys.executable) == [sys.executable]
    assert frozen.runtime_command("/venv/bin/python") == ["/venv/bin/python", "-m", "aerogrid"]


def test_children_get_the_library_path_the_bootloader_replaced(as_frozen: Path) -> None:
    env = frozen.child_env(
        {
            "LD_LIBRARY_PATH": f"{as_frozen}:/opt/lib",
            "LD_LIBRARY_PATH_ORIG": "/opt/lib",
            "DYLD_LIBRARY_PATH": str(as_frozen),
            "HOME": "/home/u",
        }
    )
    assert env["LD_LIBRARY_PATH"] == "/opt/lib"
    assert "LD_LIBRARY_PATH_ORIG" not in env
    assert "DYLD_LIBRARY_PATH" not in env  # set by the bootloader, nothing to restore
    assert env["HOME"] == "/home/u"
    # a child copy of the binary is a program of its own, not part of this one
    assert env["PYINSTALLER_RESET_ENVIRONMENT"] == "1"


def test_apps_with_requirements_need_uv_and_say_so(
    as_frozen: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AEROGRID_UV", raising=False)
    monkeypatch.setenv("PATH", str(as_frozen))  # no uv there
    with pytest.raises(frozen.FrozenEnvironmentError, match="install uv"):
        frozen.uv_for_apps()
    monkeypatch.setenv("AEROGRID_UV", "/opt/uv")
    assert frozen.uv_for_apps() == "/opt/uv"


def test_the_runtime_wheel_comes_from_the_bundle(as_frozen: Path) -> None:
    with pytest.raises(frozen.FrozenEnvironmentError, match="no runtime wheel"):
        frozen.runtime_wheel()
    wheels = as_frozen / frozen.WHEELS_DIR
    wheels.mkdir()
    (wheels / "aerogrid-0.1.0-py3-none-any.whl").write_bytes(b"")
    assert frozen.runtime_wheel() == wheels / "aerogrid-0.1.0-py3-none-any.whl"
