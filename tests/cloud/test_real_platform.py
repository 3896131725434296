"""The platform and the seed app for real on the test bed's node: nothing simulated.

`aerogrid platform install` (the CLI) puts the operator and the catalog on the node as pods of
the built platform image (support.images; its base a stand-in for the public one, see there),
pulled from the node's registry, in a namespace enforcing Pod Security `restricted`; their own
probes make them Ready. A Tenant, then `aerogrid promote --wait` of the design's orders app
(examples/ordersapp, empty requirements.txt: no build) as the tenant's developer: the kubelet
runs the runtime image, its gRPC health makes the pod Ready, the operator says Running; orders
produced to Kafka (a listener on the node's IP) reach the pod; `aerogrid watch` through the
Service's ClusterIP (kube-proxy) with a tenant member's JWT (its JWKS fetched by the pod over
HTTP from the node's IP) prints the exact sums. Then stop, start (grids restored from the
changelog), SIGKILL of the container (the kubelet restarts it), delete.

Istio's data plane does not run here (no Envoy): its objects are applied, not enforced.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import kopf
import pytest
from kubernetes import client

from aerogrid.client import GridClient
from aerogrid_cloud.kube import APPS
from aerogrid_cloud.model import namespace_for
from aerogrid_cloud.operator.registry import service_account_login
from aerogrid_cloud.operator.status import TENANTS
from support.apps import EXAMPLE_APP, produce
from support.k8s import wait_for
from support.k8s_node import KubeNode
from support.kube_blocking import BlockingKube
from support.orders import orders, units_sold
from support.real_platform import (
    GRID,
    GRPC_PORT,
    SEED_HANDLER_LINE,
    Platform,
    aerogrid_cli,
    app_pods,
    create_topic,
    grid_snapshot,
    make_tenant,
    pod_ready,
    timed_promote,
)

pytestmark = pytest.mark.timeout(600)

APP: Final = "ordersapp"
TOPIC: Final = "orders"
#: Generous for a first pull of the images into containerd on two busy cores.
READY_TIMEOUT: Final = 240.0
#: A tenant made right after the install waits for the quota controller to count Apps.
TENANT_TIMEOUT: Final = 360.0
#: The labels the operator puts on every object of the app.
APP_SELECTOR: Final = f"aerogrid.io/app={APP}"


def _container_statuses(pod: client.V1Pod) -> list[client.V1ContainerStatus]:
    return list((pod.status.container_statuses if pod.status else None) or [])


@pytest.fixture(scope="module")
def platform(real_platform: Platform) -> Platform:
    """`aerogrid platform install` on the node (the session's, tests/cloud/conftest.py)."""
    return real_platform


def _wait_pods_ready(
    core: client.CoreV1Api, namespace: str, selector: str, count: int, timeout: float
) -> list[client.V1Pod]:
    pods: list[client.V1Pod] = []

    def ready() -> bool:
        pods[:] = core.list_namespaced_pod(namespace, label_selector=selector).items
        return len(pods) == count and all(pod_ready(p) for p in pods)

    try:
        wait_for(ready, timeout, f"{count} Ready pod(s) {selector} in {namespace}")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; pods: {[p.status for p in pods]}") from None
    return pods


def test_platform_install_runs_the_operator_and_catalog_as_restricted_pods(
    platform: Platform,
) -> None:
    node = platform.node
    assert "platform installed in context" in platform.install_output
    with node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        meta = core.read_namespace(platform.system_namespace).metadata
        assert meta is not None and meta.labels is not None
        assert meta.labels["pod-security.kubernetes.io/enforce"] == "restricted"
        for component in ("aerogrid-operator", "aerogrid-catalog"):
            (pod,) = _wait_pods_ready(
                core,
                platform.system_namespace,
                f"app.kubernetes.io/name={component}",
                1,
                READY_TIMEOUT,
            )
            (status,) = _container_statuses(pod)
            assert status.image == platform.images.platform
            # Pulled from the node's registry: the digest names it.
            assert status.image_id.startswith(f"{node.registry}/aerogrid/aerogrid-platform@")
            assert status.restart_count == 0, f"{component} restarted: {status.last_state}"


# -- the seed app, promoted by a tenant's developer ------------------------------------------


@dataclass
class Promoted:
    """The orders app running on the node, and what its promotion took."""

    tenant: str
    group: str
    developer: Path
    cluster_ip: str
    token: str
    expected: dict[str, dict[str, int]]
    promote_output: str
    #: Seconds from starting `aerogrid promote --wait` to: the pod Ready, the CLI back
    #: (status Running), the first snapshot holding the exact sums.
    to_ready: float
    to_running: float
    to_first_grid: float

    @property
    def namespace(self) -> str:
        return namespace_for(self.tenant)

    @property
    def target(self) -> str:
        return f"{self.cluster_ip}:{GRPC_PORT}"


def snapshot(
    target: str, token: str, timeout: float = 2.0, grid: str = GRID
) -> dict[str, Any] | None:
    return grid_snapshot(target, token, APP, grid, timeout)


def _app_status(node: KubeNode, promoted: Promoted) -> dict[str, Any]:
    with BlockingKube.connect(node.bed.admin_kubeconfig) as admin:
        status: dict[str, Any] = admin.get(APPS, APP, promoted.namespace).get("status") or {}
    return status


@pytest.fixture(scope="module")
def promoted(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Promoted]:
    """A tenant, then `aerogrid promote --wait` of examples/ordersapp with orders waiting."""
    node = platform.node
    tenant = f"t{uuid.uuid4().hex[:6]}"
    group = f"{tenant}-developers"
    waited = make_tenant(node, tenant, group, TENANT_TIMEOUT)
    print(f"\ntenant {tenant} Ready {waited:.1f} s after it was applied")
    developer = node.bed.user_kubeconfig(f"dev-{tenant}", [group])
    folder = tmp_path_factory.mktemp("ordersapp")
    (folder / "app.py").write_text(EXAMPLE_APP.read_text())
    (folder / "requirements.txt").write_text("")  # nothing to build: the fast path
    records = orders(300, seed=1)
    asyncio.run(create_topic(platform.kafka.bootstrap, TOPIC))
    asyncio.run(produce(platform.kafka.bootstrap, TOPIC, records))
    token = platform.identity.token([group])
    namespace = namespace_for(tenant)
    expected = units_sold(records)

    timed = timed_promote(platform, folder, APP, developer, tenant, token, expected, READY_TIMEOUT)
    output, cluster_ip = timed.output, timed.cluster_ip
    to_ready, to_running, to_first_grid = timed.ready, timed.running, timed.first_grid
    print(
        f"\npromote --wait (no build): pod Ready {to_ready:.1f} s, Running {to_running:.1f} s, "
        f"first exact grid {to_first_grid:.1f} s"
    )
    try:
        yield Promoted(
            tenant,
            group,
            developer,
            cluster_ip,
            token,
            expected,
            output,
            to_ready,
            to_running,
            to_first_grid,
        )
    finally:
        with BlockingKube.connect(node.bed.admin_kubeconfig) as admin:
            admin.delete(TENANTS, tenant)  # its namespace and apps go with it (owner)
        with node.bed.api_client() as api:
            core = client.CoreV1Api(api)
            wait_for(lambda: not app_pods(core, namespace, APP), 120, "the tenant's pods gone")


def test_promote_wait_runs_the_seed_app_and_watch_shows_the_exact_sums(
    platform: Platform, promoted: Promoted
) -> None:
    assert promoted.promote_output.splitlines()[-1] == (
        f"app {APP} is running at {APP}.{promoted.tenant}.apps.aerogrid.test:80"
    )
    with platform.node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        (pod,) = app_pods(core, promoted.namespace, APP)
    app_status = _app_status(platform.node, promoted)
    assert app_status["phase"] == "Running"
    conditions = {c["type"]: c["status"] for c in app_status["conditions"]}
    assert conditions == {"ImageReady": "True", "Available": "True", "Ready": "True"}
    lines = [line.strip() for line in promoted.promote_output.splitlines()]
    phases = [line.split(":", 1)[0] for line in lines if line.endswith("replicas available")]
    assert phases[-1:] == ["Running"], promoted.promote_output
    assert app_status["endpoint"] == f"{APP}.{promoted.tenant}.apps.aerogrid.test:80"
    (status,) = _container_statuses(pod)
    runtime = f"{platform.images.runtime_repository}:{platform.images.runtime_tag}"
    assert status.image == runtime and status.ready and status.restart_count == 0
    # `aerogrid watch` as a tenant member runs it, through the Service (kube-proxy).
    watched = aerogrid_cli(
        *("watch", APP, GRID, "--endpoint", promoted.target, "--token", promoted.token),
        *("--once", "--json"),
        timeout=60,
    )
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout) == promoted.expected
    # Another tenant's member is refused by the app itself (its JWKS fetched over HTTP).
    outsider = aerogrid_cli(
        *("watch", APP, GRID, "--endpoint", promoted.target, "--once", "--json"),
        *("--token", platform.identity.token(["someone-else"])),
        timeout=60,
    )
    assert outsider.returncode != 0
    assert platform.identity.fetches >= 1
    assert promoted.to_ready < 60  # generous: the goal is 10 s on this machine


def apps_listed(target: str, token: str) -> list[tuple[str, str, str]] | str:
    """(name, tenant, status) of each app the catalog at `target` shows, or the error."""

    async def read() -> list[tuple[str, str, str]]:
        async with GridClient([target], token=token) as catalog:
            return [(a.name, a.tenant, a.status) for a in await catalog.apps()]

    try:
        return asyncio.run(asyncio.wait_for(read(), 20))
    except Exception as exc:  # the assertion shows it
        return f"{type(exc).__name__}: {exc}"


def test_the_catalog_pod_lists_the_app_to_its_tenant_only(
    platform: Platform, promoted: Promoted
) -> None:
    """The catalog's own pod, through its Service; a group that names the tenant is a member.

    (The catalog maps groups to tenants by the Tenants' spec.groups, and by name.)
    """
    with platform.node.bed.api_client() as api:
        spec = (
            client.CoreV1Api(api)
            .read_namespaced_service("aerogrid-catalog", platform.system_namespace)
            .spec
        )
    assert spec is not None and spec.cluster_ip
    target = f"{spec.cluster_ip}:{GRPC_PORT}"
    member = platform.identity.token([promoted.tenant])
    assert apps_listed(target, member) == [(APP, promoted.tenant, "running")]
    assert apps_listed(target, platform.identity.token(["another-tenant"])) == []
    refused = apps_listed(target, "not-a-token")
    assert isinstance(refused, str) and "UNAUTHENTICATED" in refused.upper(), refused


def _cloud(promoted: Promoted, command: str) -> None:
    """`aerogrid stop|start|delete --cloud` as the tenant's developer."""
    done = aerogrid_cli(
        *(command, APP, "--cloud", "--tenant", promoted.tenant),
        *("--kubeconfig", str(promoted.developer)),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def _wait_app_phase(node: KubeNode, promoted: Promoted, phase: str) -> None:
    wait_for(
        lambda: _app_status(node, promoted).get("phase") == phase, READY_TIMEOUT, f"App {phase}"
    )


def _wait_exact(
    promoted: Promoted, expected: dict[str, dict[str, int]], what: str, grid: str = GRID
) -> None:
    seen: list[dict[str, Any] | None] = [None]

    def exact() -> bool:
        seen[0] = snapshot(promoted.target, promoted.token, grid=grid)
        return seen[0] == expected

    try:
        wait_for(exact, 60, what)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last snapshot: {seen[0]}") from None


def test_stop_removes_the_pod_and_start_restores_the_grid_from_the_changelog(
    platform: Platform, promoted: Promoted
) -> None:
    node = platform.node
    with node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        before = {p.metadata.uid for p in app_pods(core, promoted.namespace, APP) if p.metadata}
        _cloud(promoted, "stop")
        _wait_app_phase(node, promoted, "Stopped")
        wait_for(lambda: not app_pods(core, promoted.namespace, APP), 60, "the app's pod gone")
        more = orders(200, seed=2)  # produced while no pod runs: read when it returns
        asyncio.run(produce(platform.kafka.bootstrap, TOPIC, more))
        _cloud(promoted, "start")
        _wait_app_phase(node, promoted, "Running")
        after = {p.metadata.uid for p in app_pods(core, promoted.namespace, APP) if p.metadata}
    assert after and not after & before  # a new pod, not the old one kept
    promoted.expected = units_sold([*orders(300, seed=1), *more])
    _wait_exact(promoted, promoted.expected, "the sums of both batches after start")


def _first_ready(url: str, not_before: float, timeout: float = 120.0) -> float:
    """When `url` first answered 200 at or after `not_before` (monotonic seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200 and time.monotonic() >= not_before:
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} not ready within {timeout:.0f} s")


def test_a_sigkilled_container_is_restarted_by_the_kubelet_and_the_grid_is_exact(
    platform: Platform, promoted: Promoted
) -> None:
    node = platform.node
    with node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        (pod,) = app_pods(core, promoted.namespace, APP)
        assert pod.metadata is not None and pod.status is not None and pod.status.pod_ip
        name, pod_ip = str(pod.metadata.name), pod.status.pod_ip
        killed = time.monotonic()
        node.kill_container(promoted.namespace, name, "app")
        readyz = _first_ready(f"http://{pod_ip}:50052/readyz", killed + 0.5) - killed

        def restarted_ready() -> bool:
            fresh = core.read_namespaced_pod(name, promoted.namespace)
            statuses = _container_statuses(fresh)
            return bool(statuses) and statuses[0].restart_count == 1 and pod_ready(fresh)

        wait_for(restarted_ready, READY_TIMEOUT, "the killed container restarted and Ready")
        back = time.monotonic() - killed
    print(
        f"\nSIGKILL to /readyz 200 again (kubelet restart + runtime cold start): {readyz:.1f} s;"
        f" to the pod Ready: {back:.1f} s"
    )
    # The kubelet's own probe said Ready; /readyz on the pod's address says so too.
    with urllib.request.urlopen(f"http://{pod_ip}:50052/readyz", timeout=10) as answer:
        assert answer.read().decode().startswith("ready")
    _wait_exact(promoted, promoted.expected, "the same sums after the restart")


#: examples/ordersapp edited: a second grid counting orders per product from now on.
EDITED_APP: Final = (
    EXAMPLE_APP.read_text().replace(
        SEED_HANDLER_LINE,
        SEED_HANDLER_LINE + "        order_count[order.product] = "
        "{'orders': order_count[order.product]['orders'] + 1}\n",
    )
    + "\norder_count = app.Grid('order_count', columns=['orders'], "
    "default=lambda: {'orders': 0})\n"
)


def test_edited_code_promoted_again_serves_with_the_grid_kept(
    platform: Platform, promoted: Promoted, tmp_path: Path
) -> None:
    assert SEED_HANDLER_LINE in EXAMPLE_APP.read_text()  # the edit applies
    folder = tmp_path / "ordersapp"
    folder.mkdir()
    (folder / "app.py").write_text(EDITED_APP)
    (folder / "requirements.txt").write_text("")
    started = time.monotonic()
    done = aerogrid_cli(
        *("promote", str(folder), "--tenant", promoted.tenant),
        *("--kubeconfig", str(promoted.developer), "--broker", platform.kafka.pod_bootstrap),
        *("--wait", "--timeout", str(READY_TIMEOUT)),
        timeout=READY_TIMEOUT + 30,
    )
    to_running = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    more = orders(100, seed=3)
    asyncio.run(produce(platform.kafka.bootstrap, TOPIC, more))
    counts: dict[str, dict[str, int]] = {}
    for _, value in more:
        product = json.loads(value or b"")["product"]
        counts[product] = {"orders": counts.get(product, {"orders": 0})["orders"] + 1}
    _wait_exact(promoted, counts, "the new grid counting the new orders", grid="order_count")
    to_new_code = time.monotonic() - started
    for product, row in units_sold(more).items():
        before = promoted.expected.get(product, {"units_sold": 0})["units_sold"]
        promoted.expected[product] = {"units_sold": before + row["units_sold"]}
    _wait_exact(promoted, promoted.expected, "the old grid kept (changelog) and the new orders")
    print(
        f"\nre-promote of edited code: Running {to_running:.1f} s,"
        f" the new grid exact {to_new_code:.1f} s"
    )
    with platform.node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        wait_for(lambda: len(app_pods(core, promoted.namespace, APP)) == 1, 60, "the old pod gone")


def test_delete_removes_everything(platform: Platform, promoted: Promoted) -> None:
    node = platform.node
    _cloud(promoted, "delete")
    with node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        apps = client.AppsV1Api(api)

        def gone() -> bool:
            namespace = promoted.namespace
            return not (
                app_pods(core, namespace, APP)
                or apps.list_namespaced_deployment(namespace).items
                or core.list_namespaced_service(namespace).items
                or core.list_namespaced_config_map(
                    namespace, label_selector="aerogrid.io/app"
                ).items
            )

        wait_for(gone, 120, "the app's Deployment, pods, Service and ConfigMap gone")


def test_the_operator_logs_in_where_the_kubelet_says_the_api_server_is() -> None:
    """kopf's default names kubernetes.default.svc, which needs cluster DNS (none on the node)."""
    kopf_default = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="t")
    pod_env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    in_pod = service_account_login(kopf_default, pod_env)
    assert in_pod is not None and in_pod.server == "https://10.96.0.1:443"
    assert in_pod.token == "t"
    ipv6 = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}
    in_ipv6 = service_account_login(kopf_default, ipv6)
    assert in_ipv6 is not None and in_ipv6.server == "https://[fd00::1]:6443"
    assert service_account_login(kopf_default, {}) is kopf_default
    assert service_account_login(None, pod_env) is None
