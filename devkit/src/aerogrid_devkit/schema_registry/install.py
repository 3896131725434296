"""Where the built Apicurio Registry lives, and what to say when it is not built yet.

The registry is built from Maven Central by `scripts/build_schema_registry.sh` (`make
schema-registry`): a Quarkus build that needs Maven and a JDK 17, run once into
`~/.cache/aerogrid/schema-registry/<version>/app` (AEROGRID_CACHE moves the root), the same place
for the tests and the devkit.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REGISTRY_VERSION", "RUNNER", "RegistryError", "registry_app", "registry_home"]

REGISTRY_VERSION = "2.4.2.Final"
#: The Quarkus runner jar in the app folder; its lib/ sits beside it.
RUNNER = "apicurio-registry-runner.jar"
BUILD_HINT = "build it once with `make schema-registry` (scripts/build_schema_registry.sh)"


class RegistryError(RuntimeError):
    """The schema registry is not built, or did not start, or did not stop."""


def registry_home(version: str = REGISTRY_VERSION) -> Path:
    root = os.environ.get("AEROGRID_CACHE") or Path.home() / ".cache" / "aerogrid"
    return Path(root) / "schema-registry" / version


def registry_app(version: str = REGISTRY_VERSION) -> Path:
    """The built app folder (raises RegistryError saying how to build it when missing)."""
    home = registry_home(version)
    app = home / "app"
    if not (home / ".complete").is_file() or not (app / RUNNER).is_file():
        raise RegistryError(f"Apicurio Registry {version} is not built in {home}: {BUILD_HINT}")
    return app
