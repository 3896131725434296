"""The test bed's real node: pods from the local registry run, restart, sit behind Services.

Everything here runs for real: the kubelet starts containers through containerd and runc, the
images come from the node's registry over plain HTTP, kube-proxy's iptables rules route Services.
The images are one-file images built by scripts/build_node.sh (the Kubernetes pause program,
Debian's busybox-static): no public image is reachable here.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from support.k8s import RESTRICTED_LABELS, wait_for
from support.k8s_host import NEEDED_CGROUP_CONTROLLERS, missing_cgroup_controllers
from support.k8s_node import KubeNode, build_node

#: What Pod Security `restricted` demands of every container (and a read-only root).
RESTRICTED_CONTAINER = client.V1SecurityContext(
    run_as_non_root=True,
    run_as_user=65534,
    allow_privilege_escalation=False,
    read_only_root_filesystem=True,
    capabilities=client.V1Capabilities(drop=["ALL"]),
    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
)


@pytest.fixture(scope="module")
def images(kube_node: KubeNode) -> dict[str, str]:
    """The node's two images pushed to its registry under fresh tags: name -> reference."""
    home = build_node()
    tag = uuid.uuid4().hex[:8]
    return {
        name: kube_node.push(home / f"{name}.oci.tar", f"aerogrid/{name}:{tag}")
        for name in ("pause", "busybox")
    }


@pytest.fixture
def node_namespace(kube_node: KubeNode, k8s_name: str) -> Iterator[str]:
    """A namespace enforcing Pod Security `restricted` on the node's control plane."""
    kube_node.bed.create_namespace(k8s_name, labels=RESTRICTED_LABELS)
    try:
        yield k8s_name
    finally:
        with kube_node.bed.api_client() as api:
            client.CoreV1Api(api).delete_namespace(k8s_name)


def _pod(name: str, image: str, args: list[str], restart_policy: str = "Always") -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            automount_service_account_token=False,
            termination_grace_period_seconds=0,
            restart_policy=restart_policy,
            containers=[
                client.V1Container(
                    name="main",
                    image=image,
                    image_pull_policy="Always",
                    args=args,
                    security_context=RESTRICTED_CONTAINER,
                )
            ],
        ),
    )


def _wait_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    check: Callable[[client.V1Pod], bool],
    what: str,
    timeout: float = 60.0,
) -> client.V1Pod:
    seen: list[client.V1Pod] = []

    def done() -> bool:
        seen[:] = [core.read_namespaced_pod(name, namespace)]
        return check(seen[0])

    try:
        wait_for(done, timeout, f"{namespace}/{name} {what}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last status: {seen[0].status if seen else None}") from None
    return seen[0]


def _ready(pod: client.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _restarts(pod: client.V1Pod) -> int:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return sum(s.restart_count for s in statuses)


def test_node_registers_and_is_ready(kube_node: KubeNode) -> None:
    assert kube_node.kubelet_version == kube_node.bed.version
    assert kube_node.containerd_version.startswith("1.")
    with kube_node.bed.api_client() as api:
        (node,) = client.CoreV1Api(api).list_node().items
    assert node.status is not None
    addresses = {a.type: a.address for a in node.status.addresses or []}
    assert addresses["InternalIP"] == kube_node.ip
    assert kube_node.startup_seconds is not None and kube_node.startup_seconds < 120
    components = {"etcd", "kube-apiserver", "kube-controller-manager", "registry", "containerd"}
    components |= {"kubelet", "kube-scheduler", "kube-proxy"}
    assert set(kube_node.memory_mb()) == components  # every component still runs


def test_pod_from_the_registry_runs_restricted(
    kube_node: KubeNode, images: dict[str, str], node_namespace: str
) -> None:
    with kube_node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(node_namespace, _pod("pause", images["pause"], []))
        pod = _wait_pod(core, node_namespace, "pause", _ready, "Ready")
    assert pod.status is not None and pod.status.phase == "Running"
    (status,) = pod.status.container_statuses or []
    # Pulled (imagePullPolicy Always) from the node's registry: the digest names it.
    assert status.image_id.startswith(f"{kube_node.registry}/aerogrid/pause@sha256:")


def test_killed_container_is_restarted_by_the_kubelet(
    kube_node: KubeNode, images: dict[str, str], node_namespace: str
) -> None:
    with kube_node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(node_namespace, _pod("victim", images["pause"], []))
        _wait_pod(core, node_namespace, "victim", _ready, "Ready")
        kube_node.kill_container(node_namespace, "victim", "main")
        pod = _wait_pod(
            core,
            node_namespace,
            "victim",
            lambda p: _restarts(p) == 1 and _ready(p),
            "restarted once and Ready again",
        )
    (status,) = (pod.status.container_statuses if pod.status else None) or []
    terminated = status.last_state.terminated if status.last_state else None
    assert terminated is not None and terminated.exit_code == 137  # SIGKILL


def test_service_routes_to_a_pod(
    kube_node: KubeNode, images: dict[str, str], node_namespace: str
) -> None:
    """kube-proxy's rules take the node to a pod's server through the Service's ClusterIP."""
    serve = ["httpd", "-f", "-p", "8080", "-h", "/"]
    with kube_node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(node_namespace, _pod("web", images["busybox"], serve))
        service = core.create_namespaced_service(
            node_namespace,
            client.V1Service(
                metadata=client.V1ObjectMeta(name="web"),
                spec=client.V1ServiceSpec(
                    selector={"app": "web"},
                    ports=[client.V1ServicePort(port=80, target_port=8080)],
                ),
            ),
        )
        _wait_pod(core, node_namespace, "web", _ready, "Ready")
    assert service.spec is not None and service.spec.cluster_ip
    cluster_ip = service.spec.cluster_ip

    # The kubelet writes the pod's /etc/hostname: busybox's httpd serves it back.
    def answers() -> bool:
        try:
            with socket.create_connection((cluster_ip, 80), timeout=2) as conn:
                conn.sendall(b"GET /etc/hostname HTTP/1.0\r\n\r\n")
                reply = b"".join(iter(lambda: conn.recv(4096), b""))
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.") and reply.rstrip().endswith(b"\r\n\r\nweb")

    wait_for(answers, 30, f"the Service web ({cluster_ip}:80) to answer with the pod's hostname")


def test_pods_reach_the_api_server(
    kube_node: KubeNode, images: dict[str, str], node_namespace: str
) -> None:
    """In-cluster config works: the `kubernetes` Service (kube-proxy) leads to the API server.

    Plain HTTP to its TLS port makes Go's server answer with a line only it sends (busybox has
    no TLS client); the log comes back through the API server and the kubelet.
    """
    probe = (
        "printf 'GET /version HTTP/1.0\\r\\n\\r\\n' | "
        'nc -w 5 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT"'
    )
    with kube_node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(
            node_namespace,
            _pod("probe", images["busybox"], ["sh", "-c", probe], restart_policy="Never"),
        )
        pod = _wait_pod(
            core,
            node_namespace,
            "probe",
            lambda p: p.status is not None and p.status.phase in ("Succeeded", "Failed"),
            "finished",
        )
        endpoints = core.read_namespaced_endpoints("kubernetes", "default")
        log = core.read_namespaced_pod_log("probe", node_namespace)
    assert pod.status is not None and pod.status.phase == "Succeeded"
    assert "Client sent an HTTP request to an HTTPS server" in log
    subsets = endpoints.subsets or []
    assert [a.ip for s in subsets for a in s.addresses or []] == [kube_node.ip]


def test_a_machine_without_the_kubelets_cgroup_controllers_is_told_which(tmp_path: Path) -> None:
    """The node's precondition, on made-up cgroup roots: v1 hierarchies, a v2 list, neither."""
    v1 = tmp_path / "v1"
    for controller in ("cpu", "cpuset", "memory"):
        (v1 / controller).mkdir(parents=True)
    assert missing_cgroup_controllers(v1) == ["pids"]
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert missing_cgroup_controllers(v2) == []
    assert missing_cgroup_controllers(tmp_path / "none") == list(NEEDED_CGROUP_CONTROLLERS)
