"""The container images, built for real by ``scripts/build_images.sh`` (``make images``).

The script builds aerogrid-runtime, aerogrid-platform and aerogrid-builder with buildah from
packaging/*.Dockerfile, on **stand-ins** for their public bases (``python:3.11-slim-bookworm``,
``debian:bookworm-slim``): no registry is reachable here, so the bases are made from Debian's
own packages (debootstrap, Debian's python3.11) and labelled ``org.aerogrid.stand-in-for``. The
Dockerfiles keep the public images as their defaults. Output (cached by the inputs' hash):
``~/.cache/aerogrid/images/<stamp>/<name>.oci.tar`` and ``images.json``.

    images = built_images()            # runs the script once per process (seconds when warm)
    images["aerogrid-runtime"].archive

Without root or buildah (and no way to install it) `ImagesUnavailable` says why: tests skip on a
developer machine and fail under CI=true (`support.ci.unavailable`).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from support.paths import REPO

BUILD_SCRIPT: Final = REPO / "scripts" / "build_images.sh"
RUNTIME: Final = "aerogrid-runtime"
PLATFORM: Final = "aerogrid-platform"
BUILDER: Final = "aerogrid-builder"
#: The label every stand-in base carries: which public image it stands in for.
STAND_IN_LABEL: Final = "org.aerogrid.stand-in-for"


class ImagesUnavailable(RuntimeError):
    """The images cannot be built here (not root, no buildah, no wheels): skip, or fail in CI."""


class ImagesBuildError(RuntimeError):
    """The build ran and failed; the message carries the script's log tail."""


@dataclass(frozen=True)
class BuiltImage:
    """One image as an OCI archive; `size_bytes` is its unpacked size (the sum of its layers)."""

    name: str
    tag: str
    archive: Path
    size_bytes: int
    archive_bytes: int
    #: The base it was built on (a stand-in's local name).
    base: str

    @property
    def reference(self) -> str:
        """The name an archive loads as (``localhost/<name>:<tag>`` in podman's storage)."""
        return f"localhost/{self.name}:{self.tag}"


def images_home() -> Path:
    root = os.environ.get("AEROGRID_CACHE") or str(Path.home() / ".cache" / "aerogrid")
    return Path(root) / "images"


def unavailable_reason() -> str | None:
    """Why the images cannot be built on this machine, or None when they can."""
    if os.geteuid() != 0:
        return (
            "building the images needs root (debootstrap and buildah's storage; "
            "scripts/build_images.sh)"
        )
    if not any((REPO / "dist").glob("aerogrid_cloud-*.whl")):
        return "dist/ has no aerogrid_cloud wheel: run `make dist` (or `make images`)"
    return None


@functools.cache
def built_images(timeout: float = 1800.0) -> dict[str, BuiltImage]:
    """Run scripts/build_images.sh (a no-op when nothing changed) and read its images.json."""
    reason = unavailable_reason()
    if reason is not None:
        raise ImagesUnavailable(reason)
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode == 3:
        raise ImagesUnavailable(proc.stderr.strip().splitlines()[-1])
    if proc.returncode != 0 or not proc.stdout.strip():
        tail = "\n".join(proc.stderr.splitlines()[-40:])
        raise ImagesBuildError(f"build_images.sh failed ({proc.returncode}):\n{tail}")
    folder = Path(proc.stdout.strip().splitlines()[-1])
    entries = json.loads((folder / "images.json").read_text())
    return {
        name: BuiltImage(
            name=name,
            tag=entry["tag"],
            archive=Path(entry["archive"]),
            size_bytes=int(entry["size_bytes"]),
            archive_bytes=int(entry["archive_bytes"]),
            base=entry["base"],
        )
        for name, entry in entries.items()
    }
