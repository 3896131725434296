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

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

from kubernetes import client, watch

from support.brokers import _spawn, _terminate_groups
from support.k8s import (
    CONTROLLERS,
    KubeStartError,
    KubeTestbed,
    KubeUnavailable,
    build_testbed,
    testbed_home,
    wait_for,
)
from support.k8s_host import HostSnapshot, NodeLock, shim_pids
from support.k8s_node_config import (
    NODE_BRIDGE,
    NODE_NAME,
    NODE_NETWORK,
    POD_BRIDGE,
    POD_NETWORK,
    NodePaths,
    cni_conflist,
    containerd_config,
    kube_proxy_config,
    kubelet_config,
    registry_config,
    registry_hosts_toml,
    write_json,
)
from support.paths import REPO

BUILD_SCRIPT = REPO / "scripts" / "build_node.sh"
CNI_BIN = Path("/usr/lib/cni")
NODE_IP = str(next(ipaddress.ip_network(NODE_NETWORK).hosts()))
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
#: Component stop order: nothing schedules or restarts pods while the rest goes down.
_STOP_ORDER = ("kube-scheduler", "kube-proxy", "kubelet", "containerd", "registry")


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


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise KubeStartError(f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


class KubeNode:
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
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
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
        return self.paths.root / f"{component}.log"

    def push(self, archive: Path, ref: str) -> str:
        """Copy an OCI archive to the local registry as `ref`; the reference pods pull."""
        target = f"{self.registry}/{ref}"
        _run(
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
        pids = {**self.bed.pids, **{n: p.pid for n, p in self._procs.items()}}
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
        self._lock.acquire(timeout=1800.0)
        self._snapshot = HostSnapshot.take()
        self._paths = NodePaths(Path(tempfile.mkdtemp(prefix="aerogrid-node-")))
        try:
            self._launch()
        except BaseException:
            self.stop(grace=0.0)
            raise
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Delete the pods, stop every process, restore the host; idempotent."""
        self._stopping.set()
        if self._procs.get("kube-scheduler") is not None and self.bed.running:
            _terminate_groups([self._procs.pop("kube-scheduler")], grace)
            self._delete_pods()
        for name in _STOP_ORDER:
            proc = self._procs.pop(name, None)
            if proc is not None:
                _terminate_groups([proc], grace)
        self.bed.stop(grace)
        if self._snapshot is not None and self._paths is not None:
            self.cleanup_problems += self._snapshot.restore(
                self._paths.root,
                links=(POD_BRIDGE, NODE_BRIDGE),
                processes=shim_pids(self._paths.containerd_socket),
            )
            shutil.rmtree(self._paths.root, ignore_errors=True)
            for problem in self.cleanup_problems:
                print(f"KubeNode.stop: {problem}", file=sys.stderr)
        self._snapshot = None
        self._lock.release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # - internals -

    def _info(self) -> client.V1NodeSystemInfo:
        if self._node_info is None:
            with self.bed.api_client() as api:
                status = client.CoreV1Api(api).read_node(NODE_NAME).status
                self._node_info = status.node_info if status else None
        assert self._node_info is not None
        return self._node_info

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        env["PATH"] = f"{env.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"
        proc = _spawn(argv, cwd=self.paths.root, log_path=self.log_path(name), env=env)
        self._procs[name] = proc
        return proc

    def _binary(self, name: str) -> str:
        assert self._home is not None
        if name in ("registry", "pause"):
            return str(self._home / "bin" / name)
        return str(testbed_home() / "bin" / name)

    def _wait(self, name: str, check: object, deadline: float) -> None:
        proc = self._procs[name]

        def alive_and_ready() -> bool:
            if proc.poll() is not None:
                raise self._fail(name, f"{name} exited with {proc.returncode}")
            return bool(check() if callable(check) else check)

        try:
            wait_for(alive_and_ready, max(1.0, deadline - time.monotonic()), name)
        except TimeoutError as exc:
            raise self._fail(name, str(exc)) from None

    def _fail(self, name: str, message: str) -> KubeStartError:
        try:
            tail = "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-40:])
        except OSError:
            tail = "(no log)"
        return KubeStartError(f"{message}; {self.log_path(name)} ends with:\n{tail}")

    def _launch(self) -> None:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        self._make_network()
        self.bed.start()
        self._start_registry(deadline)
        assert self._home is not None
        sandbox = self.push(self._home / "pause.oci.tar", f"aerogrid/pause:{self.bed.version}")
        self._start_containerd(sandbox, deadline)
        self._start_kubelet(deadline)
        self._start_scheduler()
        self._start_kube_proxy(deadline)
        self._watcher = threading.Thread(target=self._watch_ready, daemon=True)
        self._watcher.start()
        self.startup_seconds = time.monotonic() - started

    def _make_network(self) -> None:
        taken = _run(["ip", "-4", "-o", "route", "show"])
        for network in (NODE_NETWORK, POD_NETWORK):
            net = ipaddress.ip_network(network)
            for line in taken.splitlines():
                dest = line.split()[0]
                if dest != "default" and ipaddress.ip_network(dest, strict=False).overlaps(net):
                    raise KubeStartError(f"{network} clashes with a route of this host: {line}")
        _run(["ip", "link", "add", NODE_BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", NODE_BRIDGE])
        _run(["ip", "link", "set", NODE_BRIDGE, "up"])
        # Pods may talk to pods and to the node; whatever else they send is dropped.
        chain = "AEROGRID-NODE"
        _run(["iptables", "-w", "-N", chain])
        for dest in (POD_NETWORK, NODE_NETWORK):
            _run(["iptables", "-w", "-A", chain, "-s", POD_NETWORK, "-d", dest, "-j", "RETURN"])
        _run(["iptables", "-w", "-A", chain, "-s", POD_NETWORK, "-j", "DROP"])
        _run(["iptables", "-w", "-I", "FORWARD", "1", "-j", chain])

    def _start_registry(self, deadline: float) -> None:
        self.registry = f"{NODE_IP}:{_free_port(NODE_IP)}"
        config = write_json(
            self.paths.root / "registry.json", registry_config(self.paths, self.registry)
        )
        self._spawn("registry", [self._binary("registry"), "serve", str(config)])

        def answers() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex((NODE_IP, int(self.registry.split(":")[1]))) == 0

        self._wait("registry", answers, deadline)

    def _start_containerd(self, sandbox: str, deadline: float) -> None:
        paths = self.paths
        hosts = paths.registry_hosts / self.registry / "hosts.toml"
        hosts.parent.mkdir(parents=True)
        hosts.write_text(registry_hosts_toml(self.registry))
        write_json(paths.cni_conf / "10-aerogrid.conflist", cni_conflist(paths))
        config = paths.containerd / "config.toml"
        config.write_text(containerd_config(paths, sandbox, CNI_BIN))
        self._spawn("containerd", ["containerd", "--config", str(config)])
        self._wait("containerd", paths.containerd_socket.exists, deadline)

    def _start_kubelet(self, deadline: float) -> None:
        paths, bed = self.paths, self.bed
        cert, key = bed.issue_serving_certificate("kubelet-serving", (NODE_NAME, NODE_IP))
        user = bed.user(f"system:node:{NODE_NAME}", ["system:nodes"])
        config = kubelet_config(
            paths,
            node_ip=NODE_IP,
            port=_free_port(NODE_IP),
            healthz_port=_free_port("127.0.0.1"),
            ca=bed.ca_cert,
            cert=cert,
            key=key,
        )
        config_path = write_json(paths.root / "kubelet.json", config)
        self._spawn(
            "kubelet",
            [
                self._binary("kubelet"),
                f"--config={config_path}",
                f"--kubeconfig={user.kubeconfig}",
                f"--root-dir={paths.kubelet}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )
        self._wait("kubelet", self._node_ready, deadline)

    def _node_ready(self) -> bool:
        with self.bed.api_client() as api:
            try:
                node = client.CoreV1Api(api).read_node(NODE_NAME)
            except client.ApiException as exc:
                if exc.status == 404:
                    return False
                raise
        conditions = (node.status.conditions if node.status else None) or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def _start_scheduler(self) -> None:
        user = self.bed.user("system:kube-scheduler")
        self._spawn(
            "kube-scheduler",
            [
                self._binary("kube-scheduler"),
                f"--kubeconfig={user.kubeconfig}",
                "--leader-elect=false",
                "--secure-port=0",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self, deadline: float) -> None:
        user = self.bed.user("system:kube-proxy")
        healthz = _free_port("127.0.0.1")
        config = kube_proxy_config(
            user.kubeconfig,
            node_ip=NODE_IP,
            healthz_port=healthz,
            metrics_port=_free_port("127.0.0.1"),
        )
        config_path = write_json(self.paths.root / "kube-proxy.json", config)
        self._spawn("kube-proxy", [self._binary("kube-proxy"), f"--config={config_path}", "--v=1"])

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{healthz}/healthz", timeout=2):
                    return True
            except OSError:
                return False

        self._wait("kube-proxy", healthy, deadline)

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
