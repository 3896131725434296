"""The node's bridge and processes: the registry, containerd, kubelet, scheduler, kube-proxy.

Each is started from its configuration (support.k8s_node_config) in its own process group with its
log in the node's folder, and waited for until it serves; a start that fails raises
`KubeStartError` with the log's tail. `support.k8s_node.KubeNode` decides the order.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from kubernetes import client

from support.brokers import _spawn, _terminate_groups
from support.k8s import KubeStartError, KubeTestbed, testbed_home, wait_for
from support.k8s_node_config import (
    NODE_BRIDGE,
    NODE_CHAIN,
    NODE_IP,
    NODE_NAME,
    NODE_NETWORK,
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

CNI_BIN = Path("/usr/lib/cni")
#: Stop order: nothing schedules or restarts pods while the rest goes down.
STOP_ORDER = ("kube-scheduler", "kube-proxy", "kubelet", "containerd", "registry")


def free_port(host: str) -> int:
    """A TCP port free on `host` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def run(argv: list[str]) -> str:
    """Run a host command; its stdout, or `KubeStartError` with its stderr."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise KubeStartError(f"{' '.join(argv)} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def create_node_network() -> None:
    """The bridge carrying the node IP, and the rule keeping pods' traffic on the host."""
    taken = run(["ip", "-4", "-o", "route", "show"])
    for network in (NODE_NETWORK, POD_NETWORK):
        net = ipaddress.ip_network(network)
        for line in taken.splitlines():
            dest = line.split()[0]
            if dest != "default" and ipaddress.ip_network(dest, strict=False).overlaps(net):
                raise KubeStartError(f"{network} clashes with a route of this host: {line}")
    run(["ip", "link", "add", NODE_BRIDGE, "type", "bridge"])
    run(["ip", "addr", "add", f"{NODE_IP}/24", "dev", NODE_BRIDGE])
    run(["ip", "link", "set", NODE_BRIDGE, "up"])
    # Pods may talk to pods and to the node; whatever else they send is dropped.
    chain = NODE_CHAIN
    run(["iptables", "-w", "-N", chain])
    for dest in (POD_NETWORK, NODE_NETWORK):
        run(["iptables", "-w", "-A", chain, "-s", POD_NETWORK, "-d", dest, "-j", "RETURN"])
    run(["iptables", "-w", "-A", chain, "-s", POD_NETWORK, "-j", "DROP"])
    run(["iptables", "-w", "-I", "FORWARD", "1", "-j", chain])


class NodeComponents:
    """The running processes of one node (see the module docstring)."""

    def __init__(self, paths: NodePaths, node_home: Path, bed: KubeTestbed) -> None:
        self.paths = paths
        self.bed = bed
        self._node_home = node_home
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, component: str) -> Path:
        return self.paths.root / f"{component}.log"

    def stop(self, grace: float, names: tuple[str, ...] = STOP_ORDER) -> None:
        for name in names:
            proc = self.procs.pop(name, None)
            if proc is not None:
                _terminate_groups([proc], grace)

    def start_registry(self, deadline: float) -> str:
        """distribution's registry on the node IP; returns its ``IP:PORT``."""
        port = free_port(NODE_IP)
        address = f"{NODE_IP}:{port}"
        config = write_json(self.paths.root / "registry.json", registry_config(self.paths, address))
        self._spawn("registry", [str(self._node_home / "bin" / "registry"), "serve", str(config)])

        def answers() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex((NODE_IP, port)) == 0

        self._wait("registry", answers, deadline)
        return address

    def start_containerd(self, registry: str, sandbox_image: str, deadline: float) -> None:
        paths = self.paths
        hosts = paths.registry_hosts / registry / "hosts.toml"
        hosts.parent.mkdir(parents=True)
        hosts.write_text(registry_hosts_toml(registry))
        write_json(paths.cni_conf / "10-aerogrid.conflist", cni_conflist(paths))
        config = paths.containerd / "config.toml"
        config.write_text(containerd_config(paths, sandbox_image, CNI_BIN))
        self._spawn("containerd", ["containerd", "--config", str(config)])
        self._wait("containerd", paths.containerd_socket.exists, deadline)

    def start_kubelet(self, deadline: float) -> None:
        """The kubelet as ``system:node:<name>``; returns once the node is Ready."""
        paths, bed = self.paths, self.bed
        cert, key = bed.issue_serving_certificate("kubelet-serving", (NODE_NAME, NODE_IP))
        user = bed.user(f"system:node:{NODE_NAME}", ["system:nodes"])
        config = kubelet_config(
            paths,
            node_ip=NODE_IP,
            port=free_port(NODE_IP),
            healthz_port=free_port("127.0.0.1"),
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

    def start_scheduler(self) -> None:
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

    def start_kube_proxy(self, deadline: float) -> None:
        """kube-proxy (iptables); returns once its /healthz says the rules are synced."""
        user = self.bed.user("system:kube-proxy")
        healthz = free_port("127.0.0.1")
        config = kube_proxy_config(
            user.kubeconfig,
            node_ip=NODE_IP,
            healthz_port=healthz,
            metrics_port=free_port("127.0.0.1"),
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

    # - internals -

    def _binary(self, name: str) -> str:
        return str(testbed_home() / "bin" / name)

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = dict(os.environ)
        # iptables, mount, runc and the shim live in sbin folders a test's PATH may lack.
        env["PATH"] = f"{env.get('PATH', '')}:/usr/local/sbin:/usr/sbin:/sbin"
        self.procs[name] = _spawn(argv, cwd=self.paths.root, log_path=self.log_path(name), env=env)

    def _wait(self, name: str, check: Callable[[], bool], deadline: float) -> None:
        proc = self.procs[name]

        def alive_and_ready() -> bool:
            if proc.poll() is not None:
                raise self._fail(name, f"{name} exited with {proc.returncode}")
            return check()

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
