"""`aerogrid new NAME`: a new app folder in a workspace, ready to run and to test."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

from aerogrid.errors import ConfigurationError

WORKSPACE_FILE = "aerogrid.toml"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _template(name: str) -> str:
    return files("aerogrid_devkit").joinpath("templates", name).read_text()


def new_app(workspace: Path, name: str) -> Path:
    """Create `workspace/name/` (app.py, requirements.txt, test_app.py) and register it."""
    if not _NAME.match(name):
        raise ConfigurationError(
            f"app name {name!r}: use lower-case letters, digits, '-' or '_', starting with a letter"
        )
    folder = workspace / name
    if folder.exists():
        raise ConfigurationError(f"{folder} already exists")
    manifest = workspace / WORKSPACE_FILE
    if manifest.exists():
        try:
            apps = tomllib.loads(manifest.read_text()).get("apps", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{manifest}: {exc}") from None
        if name in apps:
            raise ConfigurationError(f"{manifest} already has an app named {name!r}")
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(_template("app.py.tmpl").format(name=name))
    (folder / "test_app.py").write_text(_template("test_app.py.tmpl").format(name=name))
    (folder / "requirements.txt").write_text(
        "# Packages this app needs beyond aerogrid, one per line (pin versions).\n"
    )
    if not manifest.exists():
        manifest.write_text(_template("aerogrid.toml.tmpl"))
    with manifest.open("a") as out:
        out.write(f'\n[apps.{name}]\npath = "{name}"\n')
    return folder
