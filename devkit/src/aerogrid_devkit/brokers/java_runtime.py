"""Finding a Java runtime for the local Kafka mode: JAVA_HOME's, else the PATH's, 17 or newer.

Apache Kafka 4.x needs Java 17+ (its brokers refuse older runtimes), so `auto` only picks the
local Kafka mode when `find_java` returns a runtime.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MIN_JAVA", "JavaRuntime", "find_java", "java_missing"]

#: The oldest Java that Apache Kafka 4.x brokers run on.
MIN_JAVA = 17
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@dataclass(frozen=True)
class JavaRuntime:
    """A `java` executable and its major version (8 for "1.8.0_392")."""

    path: str
    major: int


def _candidate() -> str | None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return shutil.which("java")


def _major(java: str) -> int | None:
    try:
        said = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(said)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def find_java() -> tuple[JavaRuntime | None, str]:
    """The runtime to run Kafka with, or None, and a sentence saying what was found."""
    java = _candidate()
    if java is None:
        return None, "no Java runtime (no java on the PATH or in JAVA_HOME)"
    major = _major(java)
    if major is None:
        return None, f"{java} did not say its version"
    if major < MIN_JAVA:
        return None, f"{java} is Java {major}; Apache Kafka needs Java {MIN_JAVA}+"
    return JavaRuntime(java, major), f"Java {major} at {java}"


def java_missing() -> str | None:
    """Why the local Kafka mode cannot run here (None: it can)."""
    runtime, said = find_java()
    return None if runtime is not None else said
