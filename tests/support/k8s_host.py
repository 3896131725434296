"""The host state a real node changes, recorded before it starts and put back when it stops.

The kubelet, kube-proxy, containerd and the CNI plugins write sysctls, iptables chains, links,
mounts, cgroups and a few fixed paths (/var/lib/kubelet whatever --root-dir says: FACTS.md), so
`HostSnapshot.take()` notes what exists and `restore()` removes what is new and writes back what
changed. Only what the node made is touched: chains, links and paths that existed before stay.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

#: Sysctls the kubelet (protectKernelDefaults off), kube-proxy and the CNI bridge may set.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
)
#: Fixed paths written whatever the configuration says (device plugins, pod resources, CNI cache).
FIXED_PATHS = (
    Path("/var/lib/kubelet"),
    Path("/var/log/pods"),
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/run/containerd"),
    Path("/etc/cni"),
    Path("/opt/cni"),
)
IPTABLES = ("iptables", "ip6tables")
#: The prefixes of the chains the kubelet, kube-proxy, the CNI plugins and the bed itself make;
#: new chains of others (podman's NETAVARK-*, say) are not ours to delete.
CHAIN_PREFIXES = ("KUBE-", "CNI-", "AEROGRID-")
TABLES = ("filter", "nat", "mangle")
CGROUP_ROOT = Path("/sys/fs/cgroup")
NETNS_DIR = Path("/run/netns")
LOCK_FILE = Path("/run/lock/aerogrid-kube-node.lock")
#: The running node's snapshot: a session killed outright leaves it for the next one to restore.
STATE_FILE = Path("/run/lock/aerogrid-kube-node.json")


#: What the kubelet puts pods under; without one of them it cannot start a pod.
NEEDED_CGROUP_CONTROLLERS = ("cpu", "cpuset", "memory", "pids")


def missing_cgroup_controllers(root: Path = CGROUP_ROOT) -> list[str]:
    """The needed controllers this machine lacks: neither a v1 hierarchy under `root` nor
    listed in the v2 root's cgroup.controllers."""
    unified = (_read(root / "cgroup.controllers") or "").split()
    return [c for c in NEEDED_CGROUP_CONTROLLERS if c not in unified and not (root / c).is_dir()]


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _chains(binary: str, table: str) -> tuple[set[str], list[str]]:
    """The user chains of `table` and its rules (``-A CHAIN ...`` lines)."""
    done = _run([binary, "-w", "-t", table, "-S"])
    if done.returncode != 0:
        return set(), []
    lines = done.stdout.splitlines()
    return {line.split()[1] for line in lines if line.startswith("-N ")}, [
        line for line in lines if line.startswith("-A ")
    ]


def _links() -> set[str]:
    done = _run(["ip", "-o", "link", "show"])
    return {line.split(":")[1].strip().split("@")[0] for line in done.stdout.splitlines()}


def _mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points at or under any of `roots`, deepest first."""
    prefixes = [str(root).rstrip("/") for root in roots]
    found: list[str] = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p + "/") for p in prefixes):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


@dataclass
class HostSnapshot:
    """What existed before the node started (see the module docstring)."""

    sysctls: dict[str, str]
    chains: dict[tuple[str, str], set[str]]
    links: set[str]
    netns: set[str]
    paths: set[Path]
    cgroups: set[Path]
    problems: list[str] = field(default_factory=list)

    @classmethod
    def take(cls) -> HostSnapshot:
        sysctls = {n: v for n in SYSCTLS if (v := _read(_sysctl_path(n))) is not None}
        chains = {(b, t): _chains(b, t)[0] for b in IPTABLES for t in TABLES}
        netns = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        return cls(
            sysctls=sysctls,
            chains=chains,
            links=_links(),
            netns=netns,
            paths={p for p in FIXED_PATHS if p.exists()},
            cgroups={p for p in CGROUP_ROOT.glob("*/kubepods") if p.exists()},
        )

    def save(self, workdirs: Sequence[Path]) -> None:
        """Leave this snapshot (and the node's folders) where `left_behind` finds it."""
        state = {
            "sysctls": self.sysctls,
            "chains": [[b, t, sorted(c)] for (b, t), c in self.chains.items()],
            "links": sorted(self.links),
            "netns": sorted(self.netns),
            "paths": sorted(map(str, self.paths)),
            "cgroups": sorted(map(str, self.cgroups)),
            "workdirs": [str(w) for w in workdirs],
        }
        STATE_FILE.write_text(json.dumps(state))

    @classmethod
    def left_behind(cls) -> tuple[HostSnapshot, list[Path]] | None:
        """The snapshot and folders of a node whose session died without stopping it."""
        try:
            state = json.loads(STATE_FILE.read_text())
        except (OSError, ValueError):
            return None
        snapshot = cls(
            sysctls=state["sysctls"],
            chains={(b, t): set(c) for b, t, c in state["chains"]},
            links=set(state["links"]),
            netns=set(state["netns"]),
            paths={Path(p) for p in state["paths"]},
            cgroups={Path(p) for p in state["cgroups"]},
        )
        return snapshot, [Path(w) for w in state["workdirs"]]

    @staticmethod
    def forget() -> None:
        STATE_FILE.unlink(missing_ok=True)

    def restore(
        self, workdirs: Sequence[Path], links: Iterable[str], processes: Iterable[int]
    ) -> list[str]:
        """Undo the node's changes; `links` are ones the bed made, `processes` leftover pids.

        Returns what could not be undone (empty when the host is as it was).
        """
        self._kill(processes)
        self._kill_cgroup_members()
        # containerd's CRI names the pods' network namespaces cni-*; podman's are others'.
        now = set(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else set()
        new_netns = sorted(n for n in now - self.netns if n.startswith("cni-"))
        new_paths = [p for p in FIXED_PATHS if p.exists() and p not in self.paths]
        self._unmount([*workdirs, *new_paths, *(NETNS_DIR / n for n in new_netns)])
        for name in new_netns:
            with contextlib.suppress(OSError):
                (NETNS_DIR / name).unlink()
        for link in links:
            if link in _links() and link not in self.links:
                done = _run(["ip", "link", "delete", link])
                if done.returncode != 0:
                    self.problems.append(f"ip link delete {link}: {done.stderr.strip()}")
        self._remove_chains()
        self._remove_cgroups()
        for path in new_paths:
            done = _run(["rm", "-rf", "--one-file-system", str(path)])
            if done.returncode != 0:
                self.problems.append(f"rm -rf {path}: {done.stderr.strip()}")
        for name, value in self.sysctls.items():
            path = _sysctl_path(name)
            if _read(path) != value:
                try:
                    path.write_text(value)
                except OSError as exc:
                    self.problems.append(f"sysctl {name}={value}: {exc}")
        return self.problems

    def _kill(self, pids: Iterable[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _kill_cgroup_members(self) -> None:
        """SIGKILL whatever still runs in a pod cgroup the node made (containers, pause)."""
        for _ in range(50):
            pids = {
                int(pid)
                for top in CGROUP_ROOT.glob("*/kubepods")
                if top not in self.cgroups
                for procs in top.rglob("cgroup.procs")
                for pid in (_read(procs) or "").split()
            }
            if not pids:
                return
            self._kill(pids)
            time.sleep(0.1)
        self.problems.append(f"processes left in kubepods cgroups: {sorted(pids)}")

    def _unmount(self, roots: list[Path]) -> None:
        for point in _mounts_under(roots):
            done = _run(["umount", point])
            if done.returncode != 0:
                done = _run(["umount", "-l", point])
            if done.returncode != 0:
                self.problems.append(f"umount {point}: {done.stderr.strip()}")

    def _remove_chains(self) -> None:
        for (binary, table), before in self.chains.items():
            now, rules = _chains(binary, table)
            new = {c for c in now - before if c.startswith(CHAIN_PREFIXES)}
            if not new:
                continue
            # Rules in old chains (INPUT, FORWARD, ...) that jump to a new chain, then the chains.
            for rule in rules:
                words = shlex.split(rule)
                if words[1] not in new and any(w in new for w in words[2:]):
                    _run([binary, "-w", "-t", table, "-D", *words[1:]])
            for chain in new:
                _run([binary, "-w", "-t", table, "-F", chain])
            for chain in new:
                done = _run([binary, "-w", "-t", table, "-X", chain])
                if done.returncode != 0:
                    self.problems.append(f"{binary} -t {table} -X {chain}: {done.stderr.strip()}")

    def _remove_cgroups(self) -> None:
        for top in CGROUP_ROOT.glob("*/kubepods"):
            if top in self.cgroups or top.is_symlink():
                continue
            for folder in sorted(
                (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            ):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            try:
                top.rmdir()
            except OSError as exc:
                self.problems.append(f"rmdir {top}: {exc}")


def shim_pids(containerd_socket: Path) -> list[int]:
    """containerd shims serving `containerd_socket` (they outlive containerd by design)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"containerd-shim" in argv[0] and str(containerd_socket).encode() in argv:
            found.append(int(entry.name))
    return found


class NodeLock:
    """One node per machine at a time: the kubelet's fixed paths and the bridges' names clash."""

    def __init__(self) -> None:
        self._file: IO[str] | None = None

    def acquire(self, timeout: float) -> None:
        """Wait up to `timeout` s for the machine's node lock; the holder's pid goes in the file."""
        LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
        self._file = LOCK_FILE.open("a+")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.release()
                    holder = _read(LOCK_FILE) or "?"
                    raise TimeoutError(
                        f"another test bed node (pid {holder}) held {LOCK_FILE} for {timeout:.0f} s"
                    ) from None
                time.sleep(0.5)
        self._file.seek(0)
        self._file.truncate()
        self._file.write(str(os.getpid()))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
