"""Apache Kafka's jars, fetched once into the user's cache for the local Kafka mode.

Kafka ships as plain jars on Maven Central (`org.apache.kafka:kafka_2.13` and its runtime
dependencies), so no tarball from elsewhere is needed. With Maven on the PATH,
`dependency:copy-dependencies` resolves them (as the test bed's scripts/fetch_kafka.sh does);
without it, the pinned list in `kafka_jars.json` (path, size, SHA-256 of each jar) is
downloaded from Maven Central and every file checked. The result goes to
`~/.cache/aerogrid/kafka/<version>/libs` with a `.complete` stamp: the same place the test
bed uses, so either fills it for both. Progress is reported as a few lines.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aerogrid_devkit.brokers.base import BrokerError

__all__ = [
    "KAFKA_VERSION",
    "LOG4J_VERSION",
    "MAVEN_CENTRAL",
    "Jar",
    "download_jars",
    "fetch_kafka",
    "kafka_home",
    "pinned_jars",
]

#: The Apache Kafka release the local Kafka mode runs (the docker mode's image is the same).
KAFKA_VERSION = "4.4.0"
#: Kafka 4.4 logs through log4j 2.25 and slf4j 1.7; this binding makes it write a log at all.
LOG4J_VERSION = "2.25.5"
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_POM = """\
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.aerogrid.devkit</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Jar:
    """One jar of the pinned list: its path under a Maven repository, size and SHA-256."""

    path: str
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def pinned_jars() -> tuple[str, list[Jar]]:
    """The Kafka version `kafka_jars.json` pins and its jars (its runtime dependencies)."""
    data = json.loads(resources.files(__package__).joinpath("kafka_jars.json").read_text())
    jars = [Jar(j["path"], int(j["size"]), j["sha256"]) for j in data["jars"]]
    return str(data["kafka_2.13"]), jars


def kafka_home(version: str = KAFKA_VERSION) -> Path:
    """`~/.cache/aerogrid/kafka/<version>` (AEROGRID_CACHE moves the root)."""
    root = os.environ.get("AEROGRID_CACHE") or Path.home() / ".cache" / "aerogrid"
    return Path(root) / "kafka" / version


def fetch_kafka(version: str = KAFKA_VERSION, on_progress: Progress | None = None) -> Path:
    """The libs folder of Kafka `version`, fetched first if it is not cached yet."""
    emit = on_progress or (lambda _line: None)
    home = kafka_home(version)
    libs, stamp = home / "libs", home / ".complete"
    if stamp.is_file() and libs.is_dir():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home / ".lock"):
        if stamp.is_file() and libs.is_dir():  # another process fetched it meanwhile
            return libs
        partial = home / "libs.partial"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(libs, ignore_errors=True)
        pinned_version, jars = pinned_jars()
        mvn = shutil.which("mvn")
        if mvn is not None:
            emit(f"fetching Apache Kafka {version} with Maven into {libs} (once)")
            _maven_copy(mvn, version, partial, emit)
        elif version == pinned_version:
            emit(f"downloading Apache Kafka {version} from {_repository()} into {libs} (once)")
            download_jars(jars, partial, repository=_repository(), on_progress=emit)
        else:
            raise BrokerError(
                f"Apache Kafka {version} is not cached and has no pinned jar list (this "
                f"devkit pins {pinned_version}): install Maven (mvn) to fetch it"
            )
        if not (partial / f"kafka_2.13-{version}.jar").is_file():
            raise BrokerError(f"fetched Kafka {version}, but kafka_2.13-{version}.jar is missing")
        partial.rename(libs)
        stamp.write_text(f"kafka_2.13 {version}\nlog4j {LOG4J_VERSION}\n")
    emit(f"Apache Kafka {version} is cached in {libs}")
    return libs


def _repository() -> str:
    return (os.environ.get("AEROGRID_MAVEN_REPOSITORY") or MAVEN_CENTRAL).rstrip("/")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One fetch at a time on this machine (two commands starting at once wait for one)."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _maven_copy(mvn: str, version: str, target: Path, emit: Progress) -> None:
    """`mvn dependency:copy-dependencies` of kafka_2.13 and the log4j binding into `target`."""
    with tempfile.TemporaryDirectory(prefix="aerogrid-kafka-pom-") as work:
        pom = Path(work) / "pom.xml"
        pom.write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
        command = [
            mvn,
            "-B",
            "-f",
            str(pom),
            f"{DEPENDENCY_PLUGIN}:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={target}",
        ]
        said: list[str] = []
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as maven:
            assert maven.stdout is not None
            for line in maven.stdout:
                said.append(line.rstrip())
                if line.startswith("Downloaded from") and ".jar " in line:
                    emit(f"  downloaded {line.split('/')[-1].split(' ')[0]}")
        if maven.returncode != 0:
            tail = "\n".join(said[-30:])
            raise BrokerError(f"Maven could not fetch Apache Kafka {version}:\n{tail}")


def download_jars(
    jars: Sequence[Jar],
    target: Path,
    *,
    repository: str = MAVEN_CENTRAL,
    on_progress: Progress | None = None,
    timeout: float = 60.0,
) -> None:
    """Download each jar from `repository` into `target`, checking its size and SHA-256."""
    emit = on_progress or (lambda _line: None)
    target.mkdir(parents=True, exist_ok=True)
    total = sum(j.size for j in jars)
    done, last = 0, 0.0
    for index, jar in enumerate(jars, 1):
        url = f"{repository.rstrip('/')}/{jar.path}"
        digest = hashlib.sha256()
        size = 0
        try:
            with (
                urllib.request.urlopen(url, timeout=timeout) as answer,
                (target / jar.name).open("wb") as out,
            ):
                while chunk := answer.read(1 << 16):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except OSError as exc:
            raise BrokerError(f"cannot download {url}: {exc}") from None
        if size != jar.size or digest.hexdigest() != jar.sha256:
            (target / jar.name).unlink(missing_ok=True)
            raise BrokerError(
                f"{url} is not the pinned file (size {size}, sha256 {digest.hexdigest()}; "
                f"expected {jar.size}, {jar.sha256})"
            )
        done += size
        now = time.monotonic()
        if now - last >= 2.0 or index == len(jars):
            last = now
            emit(
                f"  {index} of {len(jars)} jars, {done / 1e6:.0f} of {total / 1e6:.0f} MB "
                f"({jar.name})"
            )
