"""One version number for every component, and `aerogrid --version` prints it."""

from __future__ import annotations

import json
import tomllib

from click.testing import CliRunner

from aerogrid import __version__
from aerogrid.cli import main
from support.paths import REPO


def test_every_component_has_the_runtimes_version() -> None:
    versions = {
        name: tomllib.loads((REPO / name).read_text())["project"]["version"]
        for name in (
            "pyproject.toml",
            "runtime/pyproject.toml",
            "devkit/pyproject.toml",
            "cloud/pyproject.toml",
        )
    }
    versions["excel/package.json"] = json.loads((REPO / "excel" / "package.json").read_text())[
        "version"
    ]
    assert versions == dict.fromkeys(versions, __version__), "run scripts/set_version.sh VERSION"


def test_version_option_prints_it() -> None:
    done = CliRunner().invoke(main, ["--version"], prog_name="aerogrid")
    assert done.exit_code == 0 and done.output.strip() == f"aerogrid, version {__version__}"
