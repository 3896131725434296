"""A real node for the Kubernetes test bed: containerd, kubelet, kube-scheduler, kube-proxy.

`KubeNode` runs its own `support.k8s.KubeTestbed` whose API server listens on the node's bridge
address (so pods reach it through the `kubernetes` Service, which kube-proxy routes), plus:

* a Linux bridge ``agnode0`` carrying the node IP (``10.231.0.1``); pods live on ``agcni0``
  (``10.231.1.0/24``, CNI bridge + host-local + loopback, Debian's plugins) and may reach only
  pods and the node (chain ``AEROGRID-NODE`` drops anything else they forward);
* the local registry (distribution, plain HTTP on the node IP, a free port) that containerd pulls
  from; the pause image (built from the Kubernetes source) is pushed there as the sandbox image;
* containerd 1.6 (Debian) with its own config, root, state and socket; the kubelet, scheduler and
  kube-proxy built from the same module as the API server (scripts/build_k8s.sh).

Everything runs as root (bridges, iptables, mounts); one node per machine at a time (a lock).
`stop()` deletes the pods, stops every process, and restores the host (support.k8s_host).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Self

from kubernetes import client, watch

from support.k8s import (
    CONTROLLERS,
    KubeStartError,
    KubeTestbed,
    KubeUnavailable,
    build_testbed,
    wait_for,
)
from support.k8s_host import (
    CGROUP_ROOT,
    NEEDED_CGROUP_CONTROLLERS,
    HostSnapshot,
    NodeLock,
    missing_cgroup_controllers,
    shim_pids,
)
from support.k8s_node_components import NodeComponents, create_node_network, run
from support.k8s_node_config import (
    NODE_BRIDGE,
    NODE_IP,
    NODE_NAME,
    POD_BRIDGE,
    NodePaths,
)
from support.lifecycle import Started
from support.paths import REPO

BUILD_SCRIPT = REPO / "scripts" / "build_node.sh"
#: What a node needs beyond the bed's controllers: the node's not-ready taint lifted once it is
#: Ready (node lifecycle), Services' endpoints (kube-proxy reads EndpointSlices), pods of a gone
#: node collected.
NODE_CONTROLLERS = (
    "node-lifecycle-controller",
    "taint-eviction-controller",
    "endpointslice-controller",
    "endpointslice-mirroring-controller",
    "pod-garbage-collector-controller",
)


_live_nodes: weakref.WeakSet[KubeNode] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Backstop: a node nobody stopped still gives the host back its settings at exit."""
    for node in list(_live_nodes):
        node.stop(grace=0.0)


def build_node(timeout: float = 1800.0) -> Path:
    """Run scripts/build_node.sh (a no-op once built); the folder with bin/ and the images."""
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode == 3:
        raise KubeUnavailable(done.stderr.strip())
    if done.returncode != 0 or not done.stdout.strip():
        raise KubeStartError(f"build_node.sh failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


class KubeNode(Started):
    """One real node beside its own control plane; see the module docstring."""

    def __init__(self, *, startup_timeout: float = 240.0) -> None:
        self.startup_timeout = startup_timeout
        self.bed = KubeTestbed(bind_address=NODE_IP, controllers=CONTROLLERS + NODE_CONTROLLERS)
        self.ip = NODE_IP
        self.registry = ""
        #: Seconds from creating the bridge to the node Ready and kube-proxy serving.
        self.startup_seconds: float | None = None
        #: What `stop()` could not put back (empty when the host is as it was).
        self.cleanup_problems: list[str] = []
        self._home: Path | None = None
        self._paths: NodePaths | None = None
        self._components: NodeComponents | None = None
        self._lock = NodeLock()
        self._snapshot: HostSnapshot | None = None
        self._ready_pods: set[str] = set()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._node_info: client.V1NodeSystemInfo | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why a node cannot run here (not Linux, not root, no Go), or None."""
        if not sys.platform.startswith("linux"):
            return "the test bed's node runs on Linux only"
        if os.geteuid() != 0:
            return "the test bed's node needs root (containerd, kubelet, bridges, iptables)"
        missing = missing_cgroup_controllers()
        if missing:
            return (
                "the kubelet needs the cgroup controllers "
                f"{', '.join(NEEDED_CGROUP_CONTROLLERS)}; this machine lacks {', '.join(missing)}"
                f" (neither a v1 hierarchy nor listed in {CGROUP_ROOT}/cgroup.controllers)"
            )
        return KubeTestbed.unavailable_reason()

    # - public API -

    @property
    def paths(self) -> NodePaths:
        if self._paths is None:
            raise RuntimeError("the node is not started")
        return self._paths

    @property
    def kubelet_version(self) -> str:
        return self._info().kubelet_version

    @property
    def containerd_version(self) -> str:
        return self._info().container_runtime_version.removeprefix("containerd://")

    @property
    def pods_ready(self) -> int:
        """How many pods (by UID) this node has seen Ready."""
        return len(self._ready_pods)

    def log_path(self, component: str) -> Path:
        """A node component's log (registry, containerd, kubelet, kube-scheduler, kube-proxy)."""
        return self.paths.root / f"{component}.log"

    def push(self, archive: Path, ref: str) -> str:
        """Copy an OCI archive to the local registry as `ref`; the reference pods pull."""
        target = f"{self.registry}/{ref}"
        run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--insecure-policy",
                "--dest-tls-verify=false",
                f"oci-archive:{archive}",
                f"docker://{target}",
            ]
        )
        return target

    def kill_container(self, namespace: str, pod: str, container: str) -> int:
        """SIGKILL a container's main process (as the OOM killer would); returns its pid."""
        with self.bed.api_client() as api:
            status = client.CoreV1Api(api).read_namespaced_pod(pod, namespace).status
        statuses = (status.container_statuses if status else None) or []
        ids = [s.container_id for s in statuses if s.name == container]
        if not ids or not ids[0]:
            raise LookupError(f"{namespace}/{pod} has no running container {container!r}")
        container_id = ids[0].split("://", 1)[1]
        pid_file = (
            self.paths.containerd_state / "io.containerd.runtime.v2.task/k8s.io" / container_id
        ) / "init.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGKILL)
        return pid

    def memory_mb(self) -> dict[str, float]:
        """Resident memory of each component now (MB), control plane included."""
        procs = self._components.procs if self._components else {}
        pids = {**self.bed.pids, **{n: p.pid for n, p in procs.items()}}
        result = {}
        for name, pid in pids.items():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    result[name] = int(line.split()[1]) / 1024
        return result

    def start(self) -> Self:
        reason = self.unavailable_reason()
        if reason is not None:
            raise KubeUnavailable(reason)
        self._home = build_node()
        build_testbed()
        # Below pytest's 300 s per test: a node held elsewhere is named, not a bare timeout.
        self._lock.acquire(timeout=240.0)
        _live_nodes.add(self)
        self._recover_left_behind()
        self._snapshot = HostSnapshot.take()
        self._paths = NodePaths(Path(tempfile.mkdtemp(prefix="aerogrid-node-")))
        self._snapshot.save([self._paths.root])
        try:
            self._launch()
        except BaseException:
            self.stop(grace=0.0)
            raise
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Delete the pods, stop every process, restore the host; idempotent."""
        self._stopping.set()
        components, self._components = self._components, None
        if components is not None:
            if "kube-scheduler" in components.procs and self.bed.running:
                components.stop(grace, ("kube-scheduler",))
                self._delete_pods()
            components.stop(grace)
        self.bed.stop(grace)
        if self._snapshot is not None and self._paths is not None:
            self.cleanup_problems += self._snapshot.restore(
                [self._paths.root],
                links=(POD_BRIDGE, NODE_BRIDGE),
                processes=shim_pids(self._paths.containerd_socket),
            )
            shutil.rmtree(self._paths.root, ignore_errors=True)
            HostSnapshot.forget()
            for problem in self.cleanup_problems:
                print(f"KubeNode.stop: {problem}", file=sys.stderr)
        self._snapshot = None
        self._lock.release()
        _live_nodes.discard(self)

    # - internals -

    def _recover_left_behind(self) -> None:
        """Restore the host after a node whose session was killed outright (its snapshot)."""
        left = HostSnapshot.left_behind()
        if left is None:
            return
        snapshot, workdirs = left
        problems = snapshot.restore(
            workdirs,
            links=(POD_BRIDGE, NODE_BRIDGE),
            processes=shim_pids(NodePaths(workdirs[0]).containerd_socket),
        )
        for folder in workdirs:
            shutil.rmtree(folder, ignore_errors=True)
        HostSnapshot.forget()
        for problem in problems:
            print(f"KubeNode: restoring after a killed session: {problem}", file=sys.stderr)

    def _info(self) -> client.V1NodeSystemInfo:
        if self._node_info is None:
            with self.bed.api_client() as api:
                status = client.CoreV1Api(api).read_node(NODE_NAME).status
                self._node_info = status.node_info if status else None
        assert self._node_info is not None
        return self._node_info

    def _launch(self) -> None:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        create_node_network()
        self.bed.start()
        assert self._snapshot is not None
        self._snapshot.save([self.paths.root, self.bed.workdir])
        assert self._home is not None
        self._components = parts = NodeComponents(self.paths, self._home, self.bed)
        self.registry = parts.start_registry(deadline)
        sandbox = self.push(self._home / "pause.oci.tar", f"aerogrid/pause:{self.bed.version}")
        parts.start_containerd(self.registry, sandbox, deadline)
        parts.start_kubelet(deadline)
        parts.start_scheduler()
        parts.start_kube_proxy(deadline)
        self._watcher = threading.Thread(target=self._watch_ready, daemon=True)
        self._watcher.start()
        self.startup_seconds = time.monotonic() - started

    def _watch_ready(self) -> None:
        """Count pods seen Ready (for the test summary), until the node stops."""
        while not self._stopping.is_set():
            try:
                with self.bed.api_client() as api:
                    core = client.CoreV1Api(api)
                    events = watch.Watch().stream(  # type: ignore[no-untyped-call]
                        core.list_pod_for_all_namespaces, timeout_seconds=5
                    )
                    for event in events:
                        pod = event["object"]
                        conditions = (pod.status.conditions if pod.status else None) or []
                        if any(c.type == "Ready" and c.status == "True" for c in conditions):
                            self._ready_pods.add(pod.metadata.uid)
                        if self._stopping.is_set():
                            return
            except Exception:  # the bed is going away: the count stays
                if self._stopping.wait(0.5):
                    return

    def _delete_pods(self) -> None:
        """Delete every pod now so the kubelet tears the sandboxes (and their netns) down."""
        try:
            with self.bed.api_client() as api:
                core = client.CoreV1Api(api)
                for pod in core.list_pod_for_all_namespaces().items:
                    meta = pod.metadata
                    assert meta is not None and meta.name and meta.namespace
                    core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=0)
                wait_for(lambda: not core.list_pod_for_all_namespaces().items, 30, "pods gone")
            tasks = self.paths.containerd_state / "io.containerd.runtime.v2.task" / "k8s.io"
            wait_for(lambda: not tasks.is_dir() or not any(tasks.iterdir()), 20, "sandboxes gone")
        except (client.ApiException, TimeoutError, OSError) as exc:
            self.cleanup_problems.append(f"pods not deleted cleanly: {exc}")
