"""Per-app virtualenvs: an app whose requirements.txt lists packages gets its own.

Made with uv and cached by the hash of the requirements (and of the Python and
AeroGrid versions), so a second app with the same requirements, or the same app after
a restart, reuses it. The devkit's own packages (aerogrid among them) stay importable
through a `.pth` file, after the app's own: the app's pins win. In the desktop binary
there are no site-packages to share: the env gets the runtime's wheel shipped in the
bundle instead, made with the machine's uv and a Python it finds (see `frozen`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

from aerogrid_devkit import embedded, frozen


class AppEnvironmentError(RuntimeError):
    """An app's virtualenv could not be made (the message has uv's output)."""


def requirements(app_dir: Path) -> list[str]:
    path = app_dir / "requirements.txt"
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _uv() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def _devkit_paths() -> list[str]:
    """This interpreter's own import paths beyond the standard library.

    Its site-packages, and the source folders of editable installs (which a `.pth` in a
    folder that is not a site dir would not expand), so aerogrid imports in the app's env.
    """
    paths = [sysconfig.get_paths()["purelib"]]
    for entry in sys.path:
        outside_stdlib = entry and not entry.startswith(sys.base_prefix)
        if outside_stdlib and os.path.isdir(entry) and entry not in paths:
            paths.append(entry)
    return paths


def python_for(app_dir: Path) -> str:
    """The interpreter to run the app with: the devkit's own, or the app's cached env."""
    wanted = requirements(app_dir)
    if not wanted:
        return sys.executable
    key = hashlib.sha256(
        "\n".join([sys.version, version("aerogrid"), *sorted(wanted)]).encode()
    ).hexdigest()[:16]
    root = embedded.home() / "envs" / key
    python = root / "bin" / "python"
    if (root / ".complete").exists():
        return str(python)
    if frozen.is_frozen():
        # The binary is not a Python: the machine's uv makes the env with a Python >= 3.11
        # it finds (or fetches), and the runtime comes from the wheel inside the bundle.
        uv = frozen.uv_for_apps()
        env = frozen.child_env()
        interpreter, extra = ">=3.11", [str(frozen.runtime_wheel())]
    else:
        uv = _uv()
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        interpreter, extra = sys.executable, []
    partial = root.with_name(key + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        subprocess.run(
            [uv, "venv", "--quiet", "--python", interpreter, str(partial)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        if not frozen.is_frozen():
            site = next(partial.glob("lib/python*/site-packages"))
            (site / "zz_aerogrid_devkit.pth").write_text("".join(f"{p}\n" for p in _devkit_paths()))
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--python",
                str(partial / "bin" / "python"),
                *extra,
                *wanted,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise AppEnvironmentError(
            f"cannot install {app_dir / 'requirements.txt'}: {(exc.stderr or exc.stdout).strip()}"
        ) from None
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    (root / ".complete").touch()
    return str(python)
