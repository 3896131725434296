"""Running child processes from the desktop binary (PyInstaller) as well as from a venv.

A frozen `aerogrid` differs in three ways that matter to the devkit:

* `sys.executable` is the `aerogrid` program itself, not a Python: the same binary runs
  an app as `aerogrid run APP.py`, since the runtime is inside it;
* the bootloader puts its own folder first on `LD_LIBRARY_PATH` (the original value is
  kept in `LD_LIBRARY_PATH_ORIG`), which would make children (the broker, uv, an app's
  Python) load the bundle's libraries instead of their own: restore it for them; and it
  leaves `_PYI_*` variables that make a child copy of the binary believe it is part of
  this process (`PYINSTALLER_RESET_ENVIRONMENT=1` tells it that it is a new program);
* there is no site-packages to share with an app's own virtualenv, so an app with
  requirements gets the runtime from the wheel shipped inside the bundle, and needs uv and
  a Python from the machine.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

__all__ = [
    "FrozenEnvironmentError",
    "bundle_dir",
    "child_env",
    "is_frozen",
    "runtime_command",
    "runtime_wheel",
    "uv_for_apps",
]

#: Where the spec puts the runtime's wheel inside the bundle (for apps' virtualenvs).
WHEELS_DIR: Final = "aerogrid_wheels"
_LIBRARY_PATHS: Final = ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")


class FrozenEnvironmentError(RuntimeError):
    """The binary lacks something it needs from the machine; the message says what."""


def is_frozen() -> bool:
    """True inside a PyInstaller build."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def bundle_dir() -> Path:
    """The folder the bundle's files are in (one-dir: next to the program; one-file: unpacked)."""
    return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))


def runtime_command(python: str) -> list[str]:
    """The command that runs `aerogrid …` with `python` (the devkit's own or an app's venv).

    In the binary the devkit's "own interpreter" is the binary, which is the `aerogrid`
    command: it runs apps directly; any other interpreter gets `-m aerogrid`.
    """
    if is_frozen() and python == sys.executable:
        return [sys.executable]
    return [python, "-m", "aerogrid"]


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with the library paths the bootloader changed restored."""
    result = dict(os.environ if env is None else env)
    if not is_frozen():
        return result
    for name in _LIBRARY_PATHS:
        original = result.pop(name + "_ORIG", None)
        if original is not None:
            result[name] = original
        else:
            result.pop(name, None)
    result["PYINSTALLER_RESET_ENVIRONMENT"] = "1"
    return result


def runtime_wheel() -> Path:
    """The runtime's wheel inside the bundle: what an app's own virtualenv installs."""
    wheels = sorted((bundle_dir() / WHEELS_DIR).glob("aerogrid-*.whl"))
    if not wheels:
        raise FrozenEnvironmentError(
            f"this aerogrid binary has no runtime wheel in {bundle_dir() / WHEELS_DIR}"
        )
    return wheels[-1]


def uv_for_apps() -> str:
    """uv from the machine, for apps with requirements; a clear error when there is none."""
    found = os.environ.get("AEROGRID_UV") or shutil.which("uv")
    if not found:
        raise FrozenEnvironmentError(
            "this app lists packages in requirements.txt, which the aerogrid binary installs "
            "into a virtualenv with uv: install uv (https://docs.astral.sh/uv/, one file) and "
            "put it on PATH, or remove the requirements to run the app on the bundled runtime"
        )
    return found
