"""Apps past the fast path on the real node: a built image, and three replicas as pods.

Nothing is simulated (see test_real_platform.py for the platform itself, installed once per
session by `real_platform` in conftest.py):

* An app whose requirements.txt names a package: `aerogrid promote --wait` makes the operator's
  pod start the build Job (pip from the test bed's package index on the node's IP, then
  buildah, then a push to the node's registry); the kubelet pulls that image and the app's
  grid shows the version of the package it imported.
* The seed app scaled to three replicas: one active, two standbys (their own /readyz says
  which). Orders stream in and subscribers follow the grid, some through the Service
  (kube-proxy), some given the three pods' addresses; the active's container is SIGKILLed.
  A standby takes over, the kubelet restarts the killed container, and every subscriber
  converges on the exact sums without its subscription ever ending.

Each test has its own tenant, app name and topic (the node's Kafka is the session's).
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Final

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aerogrid_cloud.kube import APPS
from aerogrid_cloud.model import namespace_for
from aerogrid_cloud.operator.status import TENANTS
from aerogrid_cloud.render import BUILT_IMAGES, HTTP_PORT
from support.apps import EXAMPLE_APP, produce
from support.k8s import wait_for
from support.kube_blocking import BlockingKube
from support.orders import orders, units_sold
from support.package_index import MODULE, PROJECT, VERSION
from support.real_platform import (
    GRPC_PORT,
    SEED_HANDLER_LINE,
    Platform,
    aerogrid_cli,
    app_folder,
    app_pods,
    create_topic,
    grid_snapshot,
    make_tenant,
    pod_ready,
)
from support.replicas import OrderFeed, Subscriber, until

pytestmark = pytest.mark.timeout(900)

#: A first build pulls the builder and the runtime image into containerd, and buildah pulls
#: the runtime image again into its own storage: minutes on two busy cores.
BUILD_TIMEOUT: Final = 600.0
READY_TIMEOUT: Final = 240.0
TENANT_TIMEOUT: Final = 360.0


class Tenant:
    """A Ready tenant on the node, its developer's kubeconfig and a member's token."""

    def __init__(self, platform: Platform, prefix: str) -> None:
        self.platform = platform
        self.name = f"{prefix}{uuid.uuid4().hex[:6]}"
        self.group = f"{self.name}-developers"
        make_tenant(platform.node, self.name, self.group, TENANT_TIMEOUT)
        self.developer = platform.node.bed.user_kubeconfig(f"dev-{self.name}", [self.group])
        self.token = platform.identity.token([self.group])
        self.namespace = namespace_for(self.name)

    def cli(self, *args: str, timeout: float = 60.0) -> str:
        """An `aerogrid` command as the tenant's developer; its output (it must succeed)."""
        done = aerogrid_cli(
            *args, "--tenant", self.name, "--kubeconfig", str(self.developer), timeout=timeout
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def promote(self, folder: Path, timeout: float) -> str:
        return self.cli(
            *("promote", str(folder), "--broker", self.platform.kafka.pod_bootstrap),
            *("--wait", "--timeout", str(timeout)),
            timeout=timeout + 30,
        )

    def service_target(self, app: str) -> str:
        with self.platform.node.bed.api_client() as api:
            spec = client.CoreV1Api(api).read_namespaced_service(app, self.namespace).spec
        assert spec is not None and spec.cluster_ip
        return f"{spec.cluster_ip}:{GRPC_PORT}"

    def app_status(self, app: str) -> dict[str, Any]:
        with BlockingKube.connect(self.platform.node.bed.admin_kubeconfig) as admin:
            status: dict[str, Any] = admin.get(APPS, app, self.namespace).get("status") or {}
        return status

    def close(self) -> None:
        """The Tenant goes, and with it its namespace and apps (owner references)."""
        with BlockingKube.connect(self.platform.node.bed.admin_kubeconfig) as admin:
            admin.delete(TENANTS, self.name)
        with self.platform.node.bed.api_client() as api:
            core = client.CoreV1Api(api)
            wait_for(
                lambda: not core.list_namespaced_pod(self.namespace).items,
                120,
                f"tenant {self.name}'s pods gone",
            )


def seed_app(topic: str) -> str:
    """The seed app's source reading `topic` (the session's Kafka is shared between tests);
    `app_folder` gives it its name."""
    source = EXAMPLE_APP.read_text().replace("app.topic('orders'", f"app.topic({topic!r}")
    assert topic in source
    return source


def wait_exact(target: str | list[str], token: str, app: str, want: object, grid: str) -> None:
    seen: list[object] = [None]

    def exact() -> bool:
        seen[0] = grid_snapshot(target, token, app, grid)
        return seen[0] == want

    try:
        wait_for(exact, 90, f"{app}/{grid} exact")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; last snapshot: {seen[0]}") from None


def test_requirements_are_built_into_an_image_whose_pod_imports_them(
    real_platform: Platform, tmp_path: Path
) -> None:
    tenant = Tenant(real_platform, "b")
    try:
        app, topic = "tabled", f"orders-{uuid.uuid4().hex[:6]}"
        assert SEED_HANDLER_LINE in EXAMPLE_APP.read_text()
        source = (
            seed_app(topic)
            .replace("import aerogrid\n", f"import aerogrid\nimport {MODULE}\n", 1)
            .replace(
                SEED_HANDLER_LINE,
                SEED_HANDLER_LINE
                + f"        libraries['{MODULE}'] = {{'version': {MODULE}.__version__}}\n",
            )
            + "\nlibraries = app.Grid('libraries', columns=['version'], "
            "default=lambda: {'version': ''})\n"
        )
        folder = app_folder(tmp_path, app, source, requirements=f"{PROJECT}=={VERSION}\n")
        records = orders(50, seed=11)
        asyncio.run(create_topic(real_platform.kafka.bootstrap, topic))
        asyncio.run(produce(real_platform.kafka.bootstrap, topic, records))
        started = time.monotonic()
        output = tenant.promote(folder, BUILD_TIMEOUT)
        to_running = time.monotonic() - started
        assert output.splitlines()[-1].startswith(f"app {app} is running at "), output
        status = tenant.app_status(app)
        registry = real_platform.settings.build_registry
        runtime = f"{real_platform.images.runtime_repository}:{real_platform.images.runtime_tag}"
        image = str(status.get("image", ""))
        assert image.startswith(f"{registry}:") and image != runtime, status
        with real_platform.node.bed.api_client() as api:
            core = client.CoreV1Api(api)
            (pod,) = app_pods(core, tenant.namespace, app)
            statuses = (pod.status.container_statuses if pod.status else None) or []
            assert [s.image for s in statuses] == [image]
        target = tenant.service_target(app)
        wait_exact(target, tenant.token, app, {MODULE: {"version": VERSION}}, "libraries")
        wait_exact(target, tenant.token, app, units_sold(records), "product_sum")
        print(f"\npromote --wait with a build: Running in {to_running:.1f} s, image {image}")
        builds = real_platform.settings.build_namespace
        with real_platform.node.bed.api_client() as api:
            core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
            record = core.read_namespaced_config_map(BUILT_IMAGES, builds).data or {}
            assert image in record.values()
            jobs = len(batch.list_namespaced_job(builds).items)
            # Another app with the same requirements runs the recorded image: no second build.
            again = app_folder(tmp_path, "tabled-again", source, f"{PROJECT}=={VERSION}\n")
            tenant.promote(again, READY_TIMEOUT)
            assert tenant.app_status("tabled-again")["image"] == image
            assert len(batch.list_namespaced_job(builds).items) == jobs
        _a_missing_package_fails_the_app_with_pips_line(tenant, tmp_path, source)
    finally:
        tenant.close()


def _a_missing_package_fails_the_app_with_pips_line(
    tenant: Tenant, tmp_path: Path, source: str
) -> None:
    """The build Job's pip refuses: `promote --wait` fails, the App says pip's own line."""
    missing = f"no-such-package-{uuid.uuid4().hex[:6]}==1.0"
    folder = app_folder(tmp_path, "doomed", source, f"{missing}\n")
    done = aerogrid_cli(
        *("promote", str(folder), "--tenant", tenant.name, "--kubeconfig", str(tenant.developer)),
        *("--broker", tenant.platform.kafka.pod_bootstrap, "--wait", "--timeout", "300"),
        timeout=330,
    )
    assert done.returncode != 0, done.stdout
    status = tenant.app_status("doomed")
    pip_says = f"ERROR: Could not find a version that satisfies the requirement {missing}"
    assert status["phase"] == "Failed" and pip_says in status["message"], status
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["reason"] == "BuildFailed"
    assert pip_says in done.stdout + done.stderr
    # pip's failure ends the Job at once (its podFailurePolicy): one pod, no retries.
    builds = tenant.platform.settings.build_namespace
    with tenant.platform.node.bed.api_client() as api:
        jobs = client.BatchV1Api(api).list_namespaced_job(builds).items
        assert [j.status.failed for j in jobs if j.status and j.status.failed] == [1]


def readyz(pod_ip: str) -> str:
    """What the app process in the pod says about itself: `ready: active`, `ready: standby...`."""
    try:
        with urllib.request.urlopen(f"http://{pod_ip}:{HTTP_PORT}/readyz", timeout=3) as answer:
            return str(answer.read().decode())
    except OSError as exc:
        return f"unreachable: {exc}"


def roles(core: client.CoreV1Api, namespace: str, app: str) -> dict[str, tuple[str, str]]:
    """pod name → (pod IP, its role: `active`, `standby`, ...) for the app's Ready pods."""
    found = {}
    for pod in app_pods(core, namespace, app):
        if pod_ready(pod) and pod.metadata and pod.status and pod.status.pod_ip:
            ip = str(pod.status.pod_ip)
            line = (readyz(ip).splitlines() or [""])[0]  # `ready: standby, lag 0`
            found[str(pod.metadata.name)] = (ip, line.removeprefix("ready: ").split(",")[0])
    return found


def one_active(
    core: client.CoreV1Api, namespace: str, app: str, replicas: int = 3
) -> dict[str, tuple[str, str]]:
    """The app's pods all Ready, one of them active, the others standbys: their roles."""
    seen: dict[str, tuple[str, str]] = {}
    want = ["active"] + ["standby"] * (replicas - 1)

    def settled() -> bool:
        seen.clear()
        seen.update(roles(core, namespace, app))
        all_pods = len(app_pods(core, namespace, app))
        return all_pods == replicas and sorted(role for _, role in seen.values()) == want

    try:
        wait_for(settled, READY_TIMEOUT, f"{replicas} Ready pods, one active")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; pods: {seen}") from None
    return seen


def test_three_replicas_keep_subscribers_converging_when_the_active_is_killed(
    real_platform: Platform, tmp_path: Path
) -> None:
    tenant = Tenant(real_platform, "r")
    node = real_platform.node
    try:
        app, topic = "replicated", f"orders-{uuid.uuid4().hex[:6]}"
        folder = app_folder(tmp_path, app, seed_app(topic))
        asyncio.run(create_topic(real_platform.kafka.bootstrap, topic))
        tenant.promote(folder, READY_TIMEOUT)
        tenant.cli("scale", app, "3", "--cloud")
        with node.bed.api_client() as api:
            core = client.CoreV1Api(api)
            seen = one_active(core, tenant.namespace, app)
            (active,) = [name for name, (_, role) in seen.items() if role == "active"]
            pods = [f"{ip}:{GRPC_PORT}" for ip, _ in seen.values()]
            failover, want, subscribers = asyncio.run(
                _kill_the_active_under_load(
                    tenant, app, topic, active, [tenant.service_target(app)], pods
                )
            )
            # The kubelet restarted the killed container: back as a standby.
            after = one_active(core, tenant.namespace, app)
            assert after[active][1] == "standby", after
            restarted = core.read_namespaced_pod(active, tenant.namespace)
            statuses = (restarted.status.container_statuses if restarted.status else None) or []
            assert [s.restart_count for s in statuses] == [1]
            image = tenant.app_status(app)["image"]
            _a_drain_evicts_one_replica_at_a_time(tenant, app, after)
            # 3 → 2: only the count changes (the same ReplicaSet and image: no rollout).
            tenant.cli("scale", app, "2", "--cloud")
            one_active(core, tenant.namespace, app, replicas=2)
            wait_for(
                lambda: tenant.app_status(app).get("message") == "2/2 replicas available",
                60,
                "the App saying 2/2",
            )
            assert tenant.app_status(app)["image"] == image
            sets = client.AppsV1Api(api).list_namespaced_replica_set(
                tenant.namespace, label_selector=f"aerogrid.io/app={app}"
            )
            assert len(sets.items) == 1
        print(
            f"\n3 replicas: SIGKILL of the active {active} → a standby active in {failover:.1f} s;"
            f" {subscribers} subscribers exact on {len(want)} products"
        )
    finally:
        tenant.close()


def _budget(policy: client.PolicyV1Api, namespace: str, app: str) -> tuple[int, int]:
    """(healthy pods, disruptions allowed) as kube-controller-manager counts the App's budget."""
    status = policy.read_namespaced_pod_disruption_budget(app, namespace).status
    if status is None:
        return (0, 0)
    return (int(status.current_healthy or 0), int(status.disruptions_allowed or 0))


def _a_drain_evicts_one_replica_at_a_time(
    tenant: Tenant, app: str, pods: dict[str, tuple[str, str]]
) -> None:
    """The Eviction API (what `kubectl drain` calls) against the App's budget, real pods."""
    namespace = tenant.namespace
    first, second = [name for name, (_, role) in pods.items() if role == "standby"]
    with tenant.platform.node.bed.api_client() as api:
        core, policy = client.CoreV1Api(api), client.PolicyV1Api(api)

        def evict(name: str) -> None:
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
            core.create_namespaced_pod_eviction(name, namespace, body)

        wait_for(lambda: _budget(policy, namespace, app) == (3, 1), 60, "the budget: 3, 1 may go")
        evict(first)  # one replica may go ...
        with pytest.raises(ApiException) as refused:  # ... the next waits for its successor
            evict(second)
        assert refused.value.status == 429 and "disruption budget" in str(refused.value.body)
        one_active(core, namespace, app)  # the successor is Ready (the kubelet ran it)

        def evicted() -> bool:
            try:
                evict(second)
            except ApiException as exc:
                if exc.status != 429:
                    raise
                return False
            return True

        wait_for(evicted, 60, "the second eviction allowed once the first's successor is Ready")
        one_active(core, namespace, app)


async def _kill_the_active_under_load(
    tenant: Tenant, app: str, topic: str, active: str, service: list[str], pods: list[str]
) -> tuple[float, dict[str, dict[str, int]], int]:
    """Orders stream in; subscribers follow; the active's container is SIGKILLed."""
    node = tenant.platform.node
    grid = "product_sum"
    subscribers = [Subscriber(service, app, grid, token=tenant.token) for _ in range(4)]
    subscribers += [Subscriber(pods, app, grid, token=tenant.token) for _ in range(4)]
    try:
        async with OrderFeed(tenant.platform.kafka.bootstrap, topic, per_tick=10) as feed:
            await until(
                lambda: all(s.updates for s in subscribers),
                "every subscriber's first snapshot",
                60,
                subscribers=subscribers,
            )
            killed = time.monotonic()
            node.kill_container(tenant.namespace, active, "app")

            def new_active() -> bool:
                with node.bed.api_client() as api:
                    now = roles(client.CoreV1Api(api), tenant.namespace, app)
                return any(role == "active" and name != active for name, (_, role) in now.items())

            # Polled from a thread: the subscribers' tasks must keep running meanwhile.
            while not await asyncio.to_thread(new_active):
                for subscriber in subscribers:
                    subscriber.check()
                assert time.monotonic() - killed < 60, "no standby took over within 60 s"
            failover = time.monotonic() - killed
            await asyncio.sleep(3)  # orders keep coming after the failover
        want = units_sold(feed.sent)
        await until(
            lambda: all(s.rows == want for s in subscribers),
            lambda: f"{sum(s.rows != want for s in subscribers)} of {len(subscribers)} inexact",
            90,
            subscribers=subscribers,
        )
        return failover, want, len(subscribers)
    finally:
        await asyncio.gather(*(s.stop() for s in subscribers))
