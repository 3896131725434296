"""Run the built images as containers: podman with a throwaway storage, locked down as pods are.

Why podman (Debian's 4.3): it runs an OCI archive with one command, as root with no daemon, and
every piece of its state lives under the folders it is given (``--root``/``--runroot``/
``--tmpdir``, vfs driver), so `PodmanSandbox.close` removes all of it. Two settings this VM needs:

* ``--runtime runc``: Debian's crun 1.8 refuses this host's cgroup layout ("cgroups in hybrid
  mode not supported"); runc 1.1.5 is also what the test bed's containerd runs.
* explicit rlimits: podman asks for ``RLIMIT_NOFILE`` 1048576 by default, above this process's
  hard limit, and the VM has no CAP_SYS_RESOURCE to raise it ("setrlimit: operation not
  permitted"); the limits given stay at or below the host's.

`LOCKED_DOWN` is what an App's pod gets (cloud/src/aerogrid_cloud/render/): UID/GID 10001, a
read-only root with only ``/tmp`` writable, no capabilities, no privilege escalation.
"""

from __future__ import annotations

import contextlib
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import httpx

from support.images import BuiltImage
from support.lifecycle import Closing

#: The pod's constraints, as podman flags.
LOCKED_DOWN: Final = (
    "--user=10001:10001",
    "--read-only",
    "--read-only-tmpfs=false",  # podman's default adds writable /run and /var/tmp: pods have none
    "--tmpfs=/tmp:rw,nosuid,nodev,size=256m",  # the pods' /tmp emptyDir
    "--cap-drop=all",
    "--security-opt=no-new-privileges",
)


def _rlimit_flags() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    nproc = 4096 if nproc == resource.RLIM_INFINITY else min(nproc, 4096)
    return [f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def unavailable_reason() -> str | None:
    """Why containers cannot run here, or None."""
    missing = [tool for tool in ("podman", "runc") if shutil.which(tool) is None]
    if missing:
        needed = " and ".join(missing)
        return f"running the images needs {needed} (scripts/build_images.sh installs them)"
    return None


def wait_ready(url: str, alive: Callable[[], bool], timeout: float = 60.0) -> float:
    """The monotonic time `url` first answered 200 (an app's /readyz); RuntimeError when
    `alive()` says the process or container exited first, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        if not alive():
            raise RuntimeError(f"exited before {url} answered")
        time.sleep(0.02)
    raise RuntimeError(f"{url} not 200 within {timeout} s")


class PodmanSandbox(Closing):
    """A podman whose storage, containers and mounts all live in one temporary folder."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="aerogrid-podman-"))
        self._global = [
            "podman",
            f"--root={self._dir / 'root'}",
            f"--runroot={self._dir / 'run'}",
            f"--tmpdir={self._dir / 'tmp'}",
            "--storage-driver=vfs",
            "--cgroup-manager=cgroupfs",
            "--events-backend=file",
            "--runtime=runc",
            f"--runtime-flag=root={self._dir / 'runc'}",  # runc's state too, not /run/runc
        ]

    def podman(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self._global, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def load(self, image: BuiltImage) -> str:
        """Load an OCI archive; its reference (``localhost/<name>:<tag>``)."""
        self.podman("load", "--quiet", f"--input={image.archive}", timeout=300)
        self.podman("image", "exists", image.reference)
        return image.reference

    @contextlib.contextmanager
    def image_files(self, reference: str) -> Iterator[Path]:
        """The image's root file system, mounted read-only for the host to look at."""
        mounted = Path(self.podman("image", "mount", reference).stdout.strip())
        try:
            yield mounted
        finally:
            self.podman("image", "unmount", reference, check=False)

    def create(
        self,
        reference: str,
        command: Sequence[str] = (),
        *,
        entrypoint: str | None = None,
        volumes: Sequence[str] = (),
        host_network: bool = False,
    ) -> str:
        """A locked-down container, not started; its id."""
        args = ["create", *LOCKED_DOWN, *_rlimit_flags()]
        if host_network:
            args.append("--network=host")
        if entrypoint is not None:
            args.append(f"--entrypoint={entrypoint}")
        args += [f"--volume={volume}" for volume in volumes]
        return self.podman(*args, reference, *command).stdout.strip()

    def run(
        self, reference: str, command: Sequence[str], *, entrypoint: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a locked-down container to its end (no network); its output and exit status."""
        container = self.create(reference, command, entrypoint=entrypoint)
        try:
            return self.podman("start", "--attach", container, timeout=120, check=False)
        finally:
            self.remove(container)

    def logs(self, container: str) -> str:
        done = self.podman("logs", container, check=False)
        return done.stdout + done.stderr

    def remove(self, container: str) -> None:
        self.podman("rm", "--force", "--time=5", container, check=False)

    def close(self) -> None:
        """Remove every container and image, unmount what is left, delete the folder."""
        self.podman("rm", "--all", "--force", "--time=5", check=False, timeout=120)
        self.podman("image", "unmount", "--all", check=False)
        for mount_point in reversed(_mounts_under(self._dir)):
            subprocess.run(["umount", "--lazy", mount_point], check=False, capture_output=True)
        shutil.rmtree(self._dir, ignore_errors=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points
