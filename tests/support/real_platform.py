"""The platform installed on the real node as a user installs it, and tenants made Ready.

Shared by tests/cloud/test_real_platform.py and benchmarks/promote_node.py:
`installed_platform` pushes the built images into the node's registry, starts a Kafka and the
test identity provider on the node's IP, runs `aerogrid platform install` (the CLI, a process
of its own) and removes the platform's namespaces at the end; `make_tenant` applies a Tenant
and waits until the operator's pod has made it Ready.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from kubernetes import client

from aerogrid.client import GridClient
from aerogrid_cloud.model import TenantSpec, namespace_for, resource
from aerogrid_cloud.operator.status import TENANTS
from aerogrid_cloud.settings import PlatformSettings
from support.k8s import wait_for
from support.k8s_node import KubeNode
from support.kube_blocking import BlockingKube
from support.real_cluster import (
    NodeImages,
    NodeKafka,
    TestIdentity,
    node_settings,
    push_platform_images,
)

__all__ = [
    "Platform",
    "aerogrid_cli",
    "app_folder",
    "app_pods",
    "create_topic",
    "grid_snapshot",
    "installed_platform",
    "make_tenant",
    "operator_log",
    "pod_ready",
    "timed_promote",
]

#: The seed app's grid and the port its pods serve gRPC on.
GRID = "product_sum"
GRPC_PORT = 50051
#: The seed app's handler's last line (examples/ordersapp): where a test's edit goes.
SEED_HANDLER_LINE = "        product_sum[order.product] = {'units_sold': units_sold}\n"


@dataclass
class Platform:
    """The platform running on the node, and what its install took."""

    node: KubeNode
    images: NodeImages
    kafka: NodeKafka
    identity: TestIdentity
    settings: PlatformSettings
    install_output: str
    install_seconds: float

    @property
    def system_namespace(self) -> str:
        return self.settings.system_namespace


def aerogrid_cli(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """The `aerogrid` command as a user runs it (a process of its own)."""
    return subprocess.run(
        [sys.executable, "-m", "aerogrid", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def app_folder(root: Path, name: str, source: str, requirements: str = "") -> Path:
    """An app folder as a developer promotes it: `source` as app.py, under the App name `name`."""
    folder = root / name
    folder.mkdir()
    (folder / "app.py").write_text(source.replace("App('ordersapp'", f"App({name!r}"))
    (folder / "requirements.txt").write_text(requirements)
    return folder


async def create_topic(bootstrap: str, topic: str) -> None:
    """A one-partition topic, made before records are produced to it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


def grid_snapshot(
    target: str | list[str], token: str, app: str, grid: str = GRID, timeout: float = 2.0
) -> dict[str, Any] | None:
    """The grid as a client sees it through `target`, or None when it cannot be read yet."""

    async def read() -> dict[str, Any]:
        targets = [target] if isinstance(target, str) else target
        async with GridClient(targets, token=token) as grids:
            return dict(await grids.snapshot(app, grid, timeout=timeout))

    try:
        return asyncio.run(asyncio.wait_for(read(), timeout + 1))
    except Exception:  # not served yet: the caller polls
        return None


@dataclass
class TimedPromote:
    """What one `aerogrid promote --wait` printed, and the seconds from its start to: the
    pod Ready, the command's return (the App Running), the first exact snapshot."""

    output: str
    cluster_ip: str
    ready: float
    running: float
    first_grid: float


def timed_promote(
    platform: Platform,
    folder: Path,
    app: str,
    developer: Path,
    tenant: str,
    token: str,
    expected: dict[str, Any],
    timeout: float,
) -> TimedPromote:
    """`aerogrid promote FOLDER --wait` as the tenant's developer, timed from outside."""
    namespace = namespace_for(tenant)
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "aerogrid", "promote", str(folder), "--tenant", tenant),
            *("--kubeconfig", str(developer), "--broker", platform.kafka.pod_bootstrap),
            *("--wait", "--timeout", str(timeout)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    marks: dict[str, float] = {}
    cluster_ip = ""
    with platform.node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        while len(marks) < 3:
            now = time.monotonic() - started
            if now > timeout + 10:
                proc.kill()
                raise AssertionError(f"promote {app}: only {marks} after {now:.0f} s")
            if "running" not in marks and proc.poll() is not None:
                if proc.returncode != 0:
                    raise AssertionError(f"promote {app} failed:\n{proc.communicate()[0]}")
                marks["running"] = now
            if "ready" not in marks and any(pod_ready(p) for p in app_pods(core, namespace, app)):
                marks["ready"] = now
            if "ready" in marks and not cluster_ip:
                spec = core.read_namespaced_service(app, namespace).spec
                cluster_ip = str(spec.cluster_ip if spec else "")
            if (
                cluster_ip
                and "first_grid" not in marks
                and grid_snapshot(f"{cluster_ip}:{GRPC_PORT}", token, app) == expected
            ):
                marks["first_grid"] = time.monotonic() - started
            time.sleep(0.05)
    output = proc.communicate(timeout=30)[0]
    return TimedPromote(output, cluster_ip, **marks)


def pod_ready(pod: client.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def app_pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    """The pods the operator runs for `app` (its label on every object of the app)."""
    return list(core.list_namespaced_pod(namespace, label_selector=f"aerogrid.io/app={app}").items)


@contextmanager
def installed_platform(
    node: KubeNode, folder: Path, *, package_index: str | None = None
) -> Iterator[Platform]:
    """`aerogrid platform install` on the node, with the images in its registry; the
    platform's namespaces (and so its pods) are gone again at the end."""
    images = push_platform_images(node)
    with (
        NodeKafka(node.ip) as kafka,
        TestIdentity(node.ip) as identity,
    ):
        assert kafka.pod_port is not None
        settings = node_settings(
            node, images, identity, kafka.pod_port, package_index=package_index
        )
        settings_file = folder / "settings.yaml"
        settings_file.write_text(settings.to_yaml())
        # Istio's install makes its namespace (the Gateway and mesh policy go there); the
        # test bed has Istio's CRDs only.
        node.bed.create_namespace(settings.gateway_namespace, wait_for_service_account=False)
        started = time.monotonic()
        installed = aerogrid_cli(
            *("platform", "install", "--settings", str(settings_file)),
            *("--kubeconfig", str(node.bed.admin_kubeconfig)),
        )
        assert installed.returncode == 0, installed.stderr
        try:
            yield Platform(
                node,
                images,
                kafka,
                identity,
                settings,
                installed.stdout,
                time.monotonic() - started,
            )
        finally:
            _remove(
                node,
                (settings.system_namespace, settings.build_namespace, settings.gateway_namespace),
            )


def _remove(node: KubeNode, namespaces: tuple[str, ...]) -> None:
    with node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        for ns in namespaces:
            core.delete_namespace(ns)
        # Gone before the node stops, so no Deployment makes pods again meanwhile.
        wait_for(
            lambda: not any(core.list_namespaced_pod(ns).items for ns in namespaces),
            120,
            "the platform's pods gone",
        )


def make_tenant(node: KubeNode, name: str, group: str, timeout: float) -> float:
    """Apply a Tenant for `group` and wait until it is Ready; the seconds that took."""
    started = time.monotonic()
    with BlockingKube.connect(node.bed.admin_kubeconfig) as admin:
        spec = TenantSpec(display_name=name.title(), groups=[group])
        admin.apply(TENANTS, resource("Tenant", name, spec), field_manager="aerogrid-tests")

        status: dict[str, Any] = {}

        def ready() -> bool:
            status.update(admin.get(TENANTS, name).get("status") or {})
            return bool(status.get("phase") == "Ready")

        try:
            wait_for(ready, timeout, f"Tenant {name} Ready (the operator's pod reconciles it)")
        except TimeoutError as exc:
            raise AssertionError(
                f"{exc}; status {status}; operator:\n{operator_log(node)}"
            ) from None
    return time.monotonic() - started


def operator_log(node: KubeNode, system_namespace: str = "aerogrid-system") -> str:
    """The last lines of the operator pod's log (what it did or why it did not)."""
    with node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        pods = core.list_namespaced_pod(
            system_namespace, label_selector="app.kubernetes.io/name=aerogrid-operator"
        ).items
        names = [str(p.metadata.name) for p in pods if p.metadata is not None]
        if not names:
            return "(no operator pod)"
        return str(core.read_namespaced_pod_log(names[0], system_namespace, tail_lines=30))
