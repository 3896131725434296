"""The configuration files of the test bed's node (containerd, CNI, kubelet, kube-proxy, registry).

Kept apart from the processes (support.k8s_node) so each setting that matters on this machine is
stated once, with why: see ../shared/FACTS.md "Found in turn 2" for how they were found.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The Linux bridge the test bed creates to carry the node IP (the kernel here has no `dummy`
#: link type; a bridge without ports holds an address as well), and the one the CNI bridge
#: plugin creates for the pods. Private /24s unlikely to clash with anything on a host.
NODE_BRIDGE = "agnode0"
POD_BRIDGE = "agcni0"
NODE_NETWORK = "10.231.0.0/24"
POD_NETWORK = "10.231.1.0/24"
#: The node's address (on `NODE_BRIDGE`): the API server, the kubelet and the registry bind it.
NODE_IP = str(next(ipaddress.ip_network(NODE_NETWORK).hosts()))
CNI_NETWORK_NAME = "aerogrid-pods"
NODE_NAME = "aerogrid-node"
#: The iptables chain (filter, jumped to from FORWARD) that drops what pods send off the host.
NODE_CHAIN = "AEROGRID-NODE"


@dataclass(frozen=True)
class NodePaths:
    """Where each component keeps its state: all under the node's temporary folder."""

    root: Path

    @property
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def containerd_state(self) -> Path:
        return self.containerd / "state"

    @property
    def registry_hosts(self) -> Path:
        return self.containerd / "certs.d"

    @property
    def cni_conf(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_data(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def registry_data(self) -> Path:
        return self.root / "registry"


def containerd_config(paths: NodePaths, sandbox_image: str, cni_bin: Path) -> str:
    """containerd 1.6's config (version 2): CRI on its own socket, root, state and runc root.

    `restrict_oom_score_adj`: this VM lacks CAP_SYS_RESOURCE, so runc cannot give the pause
    container the kubelet's -998 ("can't get final child's PID from pipe: EOF") without it.
    """
    c = paths.containerd
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{c / "root"}"
state = "{paths.containerd_state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{c / "containerd.sock.ttrpc"}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{c / "opt"}"

[{cri}]
  sandbox_image = "{sandbox_image}"
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{c / "runc"}"

[{cri}.cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{paths.cni_conf}"
  max_conf_num = 1

[{cri}.registry]
  config_path = "{paths.registry_hosts}"
"""


def registry_hosts_toml(registry: str) -> str:
    """containerd's hosts.toml for the local registry: plain HTTP (no TLS on the test bed)."""
    return f"""server = "http://{registry}"

[host."http://{registry}"]
  capabilities = ["pull", "resolve", "push"]
"""


def cni_conflist(paths: NodePaths) -> dict[str, Any]:
    """bridge + host-local + loopback (Debian's plugins): pods on `POD_NETWORK` behind `agcni0`.

    No IP masquerade: pods talk to the node and to each other, never beyond the host.
    """
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK_NAME,
        "plugins": [
            {
                "type": "bridge",
                "bridge": POD_BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.cni_data),
                    "ranges": [[{"subnet": POD_NETWORK}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "loopback"},
        ],
    }


def kubelet_config(
    paths: NodePaths, *, node_ip: str, port: int, healthz_port: int, ca: Path, cert: Path, key: Path
) -> dict[str, Any]:
    """The KubeletConfiguration: cgroup v1 here, so `failCgroupV1: false` (1.35+ refuses v1).

    cgroupfs (no systemd manages cgroups here); no swap check; no cluster DNS (no resolver
    in the bed, and pods must not query the host's); evictions only when truly out of space.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": node_ip,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [],
        "resolvConf": "",
        "podLogsDir": str(paths.pod_logs),
        "volumePluginDir": str(paths.root / "volume-plugins"),
        "shutdownGracePeriod": "0s",
        "protectKernelDefaults": False,
        "syncFrequency": "10s",
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
            "nodefs.inodesFree": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "rotateCertificates": False,
    }


def kube_proxy_config(
    kubeconfig: Path, *, node_ip: str, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    """kube-proxy in iptables mode, leaving the host's conntrack sysctls and localhost alone.

    `masqueradeAll`: pod → Service → pod on the same bridge answers through the node without
    relying on br_netfilter's settings.
    """
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "bindAddress": node_ip,
        "clusterCIDR": POD_NETWORK,
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [NODE_NETWORK],
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
    }


def registry_config(paths: NodePaths, address: str) -> dict[str, Any]:
    """distribution's config: filesystem storage in the node's folder, plain HTTP on `address`."""
    return {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(paths.registry_data)},
            "delete": {"enabled": True},
        },
        "http": {"addr": address, "secret": "aerogrid-test-bed"},
    }


def write_json(path: Path, document: dict[str, Any]) -> Path:
    """Write `document` as JSON (YAML readers accept it too); return `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2))
    return path
