"""The operator against a real kube-apiserver, etcd and kube-controller-manager.

The operator runs in-process (kopf in a thread) with exactly the RBAC `platform render`
gives its service account: its client certificate names that account, so every request
it makes passes the rendered ClusterRole/Role or fails the test. It only handles the
Tenants and Apps labelled for the running test (one API server serves the whole session).

No kubelet runs here, so no container ever starts: an App reaches Deploying, its
ReplicaSet creates pods (Pod Security admission accepts them under `restricted`), and
the pods stay Pending; a build's Job gets its pod and no more. What needs a pod to run
(an App Running, a build finishing or failing) is tested on the real node
(test_real_platform.py, test_real_apps.py, test_build_job.py); nothing here plays the
kubelet.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import pytest
import yaml
from click.testing import CliRunner

from aerogrid_cloud import operator
from aerogrid_cloud.kube import (
    APPS,
    Invalid,
    KubeError,
    NotFound,
    ObjectList,
    ResourceType,
    connect,
)
from aerogrid_cloud.model import (
    APP_LABEL,
    MANAGED_BY,
    MAX_REPLICAS,
    AppSpec,
    EnvVar,
    ResourceRequirements,
    TenantSpec,
    namespace_for,
    resource,
)
from aerogrid_cloud.platform_cli import install_objects, platform
from aerogrid_cloud.render import BUILT_IMAGES, build_for, platform_objects, resource_type
from aerogrid_cloud.settings import PlatformSettings
from support.brokers import free_port
from support.k8s import KubeTestbed
from support.kube_blocking import BlockingKube

pytestmark = pytest.mark.timeout(300)

APP_PY: Final = "import aerogrid\napp = aerogrid.App('orders')\n"
#: The operator's identity, as `platform render` binds its RBAC.
OPERATOR_USER: Final = "system:serviceaccount:aerogrid-system:aerogrid-operator"
OPERATOR_GROUPS: Final = ("system:serviceaccounts", "system:serviceaccounts:aerogrid-system")
TEST_LABEL: Final = "aerogrid.io/test"
SETTINGS: Final = PlatformSettings(
    domain="apps.acme.test",
    oidc_issuer="https://idp.acme.test/",
    oidc_jwks_uri="https://idp.acme.test/jwks",
    resync_seconds=1.0,
)
TIMEOUT: Final = 30.0
#: kube-controller-manager's garbage collector deletes dependents in the background, and it
#: sees a custom resource kind only after its discovery resync (30 s): on two busy cores (a
#: clean CI run beside builds) it has taken over 30 s.
GC_TIMEOUT: Final = 120.0

NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
PODS = ResourceType("", "v1", "pods", "Pod")
JOBS = ResourceType("batch", "v1", "jobs", "Job")
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
REPLICASETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet")
QUOTAS = ResourceType("", "v1", "resourcequotas", "ResourceQuota")


# -- helpers -------------------------------------------------------------------------------


def wait(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll until `check()` is truthy (returning it); a TimeoutError names `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except NotFound:
            last = None
        if last:
            return last
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Resources:
    """One kind, through the admin's client: `cluster.res(DEPLOYMENTS).get(name, ns)`."""

    def __init__(self, kube: BlockingKube, rtype: ResourceType) -> None:
        self.kube = kube
        self.type = rtype

    def apply(self, obj: Mapping[str, Any], *, field_manager: str) -> dict[str, Any]:
        return self.kube.apply(self.type, obj, field_manager=field_manager)

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.kube.get(self.type, name, namespace)

    def list(self, namespace: str | None = None, *, label_selector: str = "") -> ObjectList:
        labels = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return self.kube.list(self.type, namespace, labels=labels or None)

    def delete(self, name: str, namespace: str | None = None) -> None:
        self.kube.delete(self.type, name, namespace)


class Cluster:
    """The admin's view of the test bed, through the same client the operator uses."""

    def __init__(self, kube: BlockingKube, label: str) -> None:
        self.kube = kube
        self.label = label

    def res(self, rtype: ResourceType) -> Resources:
        return Resources(self.kube, rtype)

    def apply_tenant(self, name: str, groups: list[str]) -> dict[str, Any]:
        obj = resource("Tenant", name, TenantSpec(display_name=name.title(), groups=groups))
        obj["metadata"]["labels"] = {TEST_LABEL: self.label}
        return self.res(operator.TENANTS).apply(obj, field_manager="test")

    def apply_app(self, name: str, tenant: str, spec: AppSpec) -> dict[str, Any]:
        obj = resource("App", name, spec, namespace=namespace_for(tenant))
        obj["metadata"]["labels"] = {TEST_LABEL: self.label}
        return self.res(APPS).apply(obj, field_manager="test")

    def patch_app(self, name: str, tenant: str, spec: Mapping[str, Any]) -> None:
        self.kube.merge_patch(APPS, name, {"spec": dict(spec)}, namespace=namespace_for(tenant))

    def app(self, name: str, tenant: str) -> dict[str, Any]:
        return self.res(APPS).get(name, namespace_for(tenant))

    def app_phase(self, name: str, tenant: str, phase: str) -> dict[str, Any] | None:
        app = self.app(name, tenant)
        status = app.get("status") or {}
        generation = app["metadata"]["generation"]
        if status.get("phase") == phase and status.get("observedGeneration") == generation:
            return app
        return None

    def wait_app(self, name: str, tenant: str, phase: str) -> dict[str, Any]:
        app: dict[str, Any] = wait(
            lambda: self.app_phase(name, tenant, phase), f"App {name} to be {phase}"
        )
        return app

    def wait_tenant_ready(self, name: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            tenant = self.res(operator.TENANTS).get(name)
            return tenant if (tenant.get("status") or {}).get("phase") == "Ready" else None

        tenant: dict[str, Any] = wait(ready, f"Tenant {name} to be Ready")
        return tenant

    def owned_by(self, uid: str, rtype: ResourceType, namespace: str) -> list[dict[str, Any]]:
        return [
            item
            for item in self.res(rtype).list(namespace).items
            if any(ref["uid"] == uid for ref in item["metadata"].get("ownerReferences", []))
        ]

    def dry_run_pod(self, namespace: str, template: Mapping[str, Any]) -> dict[str, Any]:
        """Ask admission (Pod Security included) whether a pod from `template` may exist."""
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "dry-run-", "labels": template["metadata"]["labels"]},
            "spec": template["spec"],
        }
        return self.kube.create(
            PODS, {**pod, "metadata": {**pod["metadata"], "namespace": namespace}}, dry_run=True
        )


class OperatorThread:
    """The operator (kopf) in a thread of this process, as the operator's service account."""

    def __init__(
        self,
        bed: KubeTestbed,
        settings: PlatformSettings,
        label: str,
        liveness: str | None = None,
    ) -> None:
        self.liveness = liveness
        self.kube = connect(bed.user_kubeconfig(OPERATOR_USER, OPERATOR_GROUPS))
        self.settings = settings
        self.label = label
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(
                operator.run(
                    self.kube,
                    self.settings,
                    login=operator.connection_info(self.kube),
                    selector={TEST_LABEL: self.label},
                    liveness=self.liveness,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                )
            )
        except BaseException as exc:  # reported by __exit__
            self._error = exc
            self._ready.set()

    def __enter__(self) -> OperatorThread:
        self._thread.start()
        assert self._ready.wait(TIMEOUT), "the operator did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the operator did not stop"
        if self._error is not None:
            raise self._error


# -- fixtures ------------------------------------------------------------------------------


def install(admin: BlockingKube, objects: list[dict[str, Any]]) -> dict[str, str]:
    """`platform install`'s work (`install_objects`) on the admin's client."""
    return admin.run(install_objects(admin.kube, objects))


def _wait_quota_controller(cluster: Cluster) -> None:
    """Wait until kube-controller-manager counts Apps in quotas.

    Its quota controller discovers new resources (the App CRD) every 30 s, and a quota
    made before that stays uncounted until its next full resync (5 min), during which the
    API server refuses every App. A probe quota, nudged by changing its spec, tells when
    discovery happened; quotas made after that are counted at once.
    """
    name = f"quota-probe-{uuid.uuid4().hex[:8]}"
    quotas = cluster.res(QUOTAS)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    cluster.res(NAMESPACES).apply(namespace, field_manager="test")
    nudge = iter(range(1, 1000))

    def counted() -> bool:
        quota = {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "probe", "namespace": name},
            "spec": {"hard": {"count/apps.aerogrid.io": str(next(nudge))}},
        }
        quotas.apply(quota, field_manager="test")  # a new spec: the controller syncs it
        time.sleep(0.5)
        used = (quotas.get("probe", name).get("status") or {}).get("used") or {}
        return "count/apps.aerogrid.io" in used

    try:
        wait(counted, "the quota controller to discover the App CRD", timeout=90)
    finally:
        cluster.res(NAMESPACES).delete(name)


@pytest.fixture(scope="module")
def admin(kube: KubeTestbed) -> Iterator[BlockingKube]:
    with BlockingKube.connect(kube.admin_kubeconfig) as api:
        yield api


@pytest.fixture(scope="module")
def installed(kube: KubeTestbed, admin: BlockingKube) -> PlatformSettings:
    """The platform installed as `platform install` does, once for the module."""
    namespaces = Resources(admin, NAMESPACES)
    for name in {SETTINGS.gateway_namespace, SETTINGS.mesh_root_namespace}:
        # Istio's own namespace (no istiod runs here; its CRDs are installed).
        namespaces.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            field_manager="test",
        )
    install(admin, platform_objects(SETTINGS))
    _wait_quota_controller(Cluster(admin, "setup"))
    return SETTINGS


@pytest.fixture
def label() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def cluster(admin: BlockingKube, installed: PlatformSettings, label: str) -> Cluster:
    return Cluster(admin, label)


@pytest.fixture
def running(kube: KubeTestbed, installed: PlatformSettings, label: str) -> Iterator[OperatorThread]:
    with OperatorThread(kube, installed, label) as thread:
        yield thread


@pytest.fixture
def tenant(cluster: Cluster, running: OperatorThread, k8s_name: str) -> Iterator[str]:
    """A Ready tenant (its namespace and policies made by the operator), deleted after."""
    name = k8s_name
    cluster.apply_tenant(name, [f"{name}-devs"])
    cluster.wait_tenant_ready(name)
    yield name
    cluster.res(operator.TENANTS).delete(name)


def app_spec(**changes: Any) -> AppSpec:
    values: dict[str, Any] = {"files": {"app.py": APP_PY}, "runtime_version": "0.1.0"}
    values.update(changes)
    return AppSpec(**values)


def with_requirements(text: str) -> AppSpec:
    return app_spec(files={"app.py": APP_PY, "requirements.txt": text})


# -- install -------------------------------------------------------------------------------


def test_platform_install_is_accepted_and_idempotent(
    kube: KubeTestbed, admin: BlockingKube, installed: PlatformSettings, tmp_path: Any
) -> None:
    # Every rendered object was accepted by the installed fixture; a second time, nothing
    # changes (server-side apply, resourceVersions untouched).
    again = install(admin, platform_objects(installed))
    assert set(again.values()) == {"unchanged"}, again
    # The command itself, under a kubeconfig context.
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(installed.to_yaml())
    config = yaml.safe_load(kube.admin_kubeconfig.read_text())
    result = CliRunner().invoke(
        platform,
        [
            "install",
            "--settings",
            str(settings_file),
            "--kubeconfig",
            str(kube.admin_kubeconfig),
            "--context",
            config["current-context"],
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{len(again)} unchanged" in result.stdout
    # The operator's and the catalog's pods pass Pod Security `restricted` there.
    cluster = Cluster(admin, "install")
    for obj in platform_objects(installed):
        if obj["kind"] == "Deployment":
            cluster.dry_run_pod(obj["metadata"]["namespace"], obj["spec"]["template"])
    # ... which is on: a privileged pod is refused in the same namespace.
    with pytest.raises(KubeError, match="PodSecurity"):
        cluster.dry_run_pod(
            installed.system_namespace,
            {
                "metadata": {"labels": {}},
                "spec": {
                    "containers": [
                        {"name": "x", "image": "x", "securityContext": {"privileged": True}}
                    ]
                },
            },
        )


# -- tenants -------------------------------------------------------------------------------


def test_tenant_gets_an_isolated_namespace(
    cluster: Cluster, running: OperatorThread, k8s_name: str
) -> None:
    name = k8s_name
    created = cluster.apply_tenant(name, ["devs", "ops"])
    uid = created["metadata"]["uid"]
    tenant = cluster.wait_tenant_ready(name)
    ns = namespace_for(name)
    assert tenant["status"]["namespace"] == ns
    assert tenant["status"]["observedGeneration"] == tenant["metadata"]["generation"]
    namespace = cluster.res(NAMESPACES).get(ns)
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
    assert labels["istio-injection"] == "enabled"
    assert [ref["uid"] for ref in namespace["metadata"]["ownerReferences"]] == [uid]

    kinds = {
        "ResourceQuota": QUOTAS,
        "LimitRange": ResourceType("", "v1", "limitranges", "LimitRange"),
        "NetworkPolicy": ResourceType(
            "networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"
        ),
        "RequestAuthentication": ResourceType(
            "security.istio.io", "v1", "requestauthentications", "RequestAuthentication"
        ),
        "AuthorizationPolicy": ResourceType(
            "security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"
        ),
    }
    found = {kind: cluster.owned_by(uid, rtype, ns) for kind, rtype in kinds.items()}
    assert {kind: len(items) for kind, items in found.items()} == dict.fromkeys(kinds, 1)
    quota = found["ResourceQuota"][0]
    assert quota["spec"]["hard"]["count/apps.aerogrid.io"] == "10"
    assert quota["status"]["used"]["count/apps.aerogrid.io"] == "0"  # counted: Ready
    policy = found["NetworkPolicy"][0]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = found["AuthorizationPolicy"][0]["spec"]["rules"][0]["when"]
    assert rule == {"key": "request.auth.claims[groups]", "values": ["devs", "ops"]}
    (jwt,) = found["RequestAuthentication"][0]["spec"]["jwtRules"]
    assert jwt["issuer"] == "https://idp.acme.test/" and jwt["forwardOriginalToken"] is True

    # A second tenant admits only its own groups; the first keeps its own.
    other = f"{name}-b"
    cluster.apply_tenant(other, ["others"])
    cluster.wait_tenant_ready(other)
    (other_policy,) = cluster.res(kinds["AuthorizationPolicy"]).list(namespace_for(other)).items
    assert other_policy["spec"]["rules"][0]["when"][0]["values"] == ["others"]

    # Groups change: the policy follows, and so do the apps (their runtime maps groups).
    cluster.apply_app("orders", name, app_spec())
    cluster.wait_app("orders", name, "Deploying")
    cluster.apply_tenant(name, ["devs"])

    def group_map() -> str:
        deployment = cluster.res(DEPLOYMENTS).get("orders", ns)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        return str(env["AEROGRID_GROUP_TENANTS"])

    wait(lambda: group_map() == json.dumps({"devs": name}), "the app to take the new groups")

    def narrowed() -> bool:
        (current,) = cluster.res(kinds["AuthorizationPolicy"]).list(ns).items
        return bool(current["spec"]["rules"][0]["when"][0]["values"] == ["devs"])

    wait(narrowed, "the AuthorizationPolicy to drop group ops")

    # Deleting a tenant deletes its namespace (owner reference, garbage collector).
    cluster.res(operator.TENANTS).delete(other)
    cluster.res(operator.TENANTS).delete(name)

    def gone(namespace: str) -> bool:
        try:
            found = cluster.res(NAMESPACES).get(namespace)
        except NotFound:
            return True
        return bool(found.get("metadata", {}).get("deletionTimestamp"))

    wait(
        lambda: gone(ns) and gone(namespace_for(other)),
        "the tenants' namespaces to go",
        timeout=GC_TIMEOUT,
    )


# -- apps ----------------------------------------------------------------------------------


def test_app_without_requirements_deploys(
    cluster: Cluster, tenant: str, installed: PlatformSettings
) -> None:
    created = cluster.apply_app("orders", tenant, app_spec())
    uid = created["metadata"]["uid"]
    app = cluster.wait_app("orders", tenant, "Deploying")
    status = app["status"]
    runtime = "ghcr.io/aerogrid/aerogrid-runtime:0.1.0"
    assert status["image"] == runtime
    assert status["endpoint"] == f"orders.{tenant}.apps.acme.test:80"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["ImageReady"]["status"] == "True"
    assert conditions["Available"]["status"] == "False"
    ns = namespace_for(tenant)
    owned = {
        kind: cluster.owned_by(uid, rtype, ns)
        for kind, rtype in {
            "ServiceAccount": ResourceType("", "v1", "serviceaccounts", "ServiceAccount"),
            "ConfigMap": CONFIGMAPS,
            "Deployment": DEPLOYMENTS,
            "Service": ResourceType("", "v1", "services", "Service"),
            "VirtualService": ResourceType(
                "networking.istio.io", "v1", "virtualservices", "VirtualService"
            ),
        }.items()
    }
    assert {kind: len(items) for kind, items in owned.items()} == dict.fromkeys(owned, 1)
    assert owned["ConfigMap"][0]["data"] == {"app.py": APP_PY}
    deployment = owned["Deployment"][0]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == runtime
    for obj in (item for items in owned.values() for item in items):
        assert obj["metadata"]["labels"].items() >= MANAGED_BY.items()
        fields = {entry["manager"] for entry in obj["metadata"]["managedFields"]}
        assert "aerogrid-operator" in fields
    # No build: no requirements, the runtime's own image.
    assert conditions["ImageReady"]["reason"] == "RuntimeImage"
    assert build_for(app_spec(), installed) is None
    # kube-controller-manager made a ReplicaSet, and its pod passed Pod Security
    # `restricted` (the pod exists; no kubelet will ever start it).
    replicasets = cluster.owned_by(deployment["metadata"]["uid"], REPLICASETS, ns)
    assert len(replicasets) == 1
    pods = wait(
        lambda: cluster.owned_by(replicasets[0]["metadata"]["uid"], PODS, ns), "the app's pod"
    )
    assert pods[0]["spec"]["automountServiceAccountToken"] is False
    cluster.dry_run_pod(ns, deployment["spec"]["template"])
    # The pod running, Ready and the App Running: tests/cloud/test_real_platform.py, on a
    # real kubelet.


def test_stop_scales_to_zero_and_start_brings_it_back(cluster: Cluster, tenant: str) -> None:
    cluster.apply_app("orders", tenant, app_spec())
    cluster.wait_app("orders", tenant, "Deploying")
    ns = namespace_for(tenant)

    def replicas() -> int:
        return int(cluster.res(DEPLOYMENTS).get("orders", ns)["spec"]["replicas"])

    cluster.patch_app("orders", tenant, {"stopped": True})
    stopped = cluster.wait_app("orders", tenant, "Stopped")
    assert replicas() == 0
    assert stopped["status"]["observedGeneration"] == 2
    cluster.patch_app("orders", tenant, {"stopped": False})
    cluster.wait_app("orders", tenant, "Deploying")
    assert replicas() == 1


def test_delete_cascades_through_owner_references(cluster: Cluster, tenant: str) -> None:
    created = cluster.apply_app("orders", tenant, app_spec())
    uid = created["metadata"]["uid"]
    cluster.wait_app("orders", tenant, "Deploying")
    ns = namespace_for(tenant)
    kinds = [CONFIGMAPS, DEPLOYMENTS, ResourceType("", "v1", "services", "Service")]
    assert all(cluster.owned_by(uid, rtype, ns) for rtype in kinds)
    cluster.res(APPS).delete("orders", ns)
    wait(
        lambda: not any(cluster.owned_by(uid, rtype, ns) for rtype in kinds),
        "the garbage collector to delete the app's objects",
    )
    # ...and, a step later in the cascade, the Deployment's ReplicaSet
    wait(
        lambda: not cluster.res(REPLICASETS).list(ns, label_selector=f"{APP_LABEL}=orders").items,
        "the garbage collector to delete the app's ReplicaSet",
    )


def test_requirements_build_once_then_deploy_the_built_image(
    cluster: Cluster, tenant: str, installed: PlatformSettings
) -> None:
    requirements = f"requests==2.32.3\nmarker-{tenant}==1.0\n"
    cluster.apply_app("first", tenant, with_requirements(requirements))
    building = cluster.wait_app("first", tenant, "Building")
    build = build_for(with_requirements(requirements), installed)
    assert build is not None
    assert building["status"]["image"] == build.image
    assert build.job_name in building["status"]["message"]
    ns, builds = namespace_for(tenant), installed.build_namespace
    # Nothing of the app is deployed while its image is being built.
    with pytest.raises(NotFound):
        cluster.res(DEPLOYMENTS).get("first", ns)
    job = cluster.res(JOBS).get(build.job_name, builds)
    context = cluster.res(CONFIGMAPS).get(build.job_name, builds)
    assert sorted(context["data"]["requirements.txt"].split()) == sorted(requirements.split())
    assert [ref["uid"] for ref in context["metadata"]["ownerReferences"]] == [
        job["metadata"]["uid"]
    ]
    (builder,) = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "IMAGE", "value": build.image} in builder["env"]
    # Pod Security: the build namespace's level admits the Job's pod (buildah is root with
    # four capabilities), a tenant's `restricted` would not.
    cluster.dry_run_pod(builds, job["spec"]["template"])
    with pytest.raises(KubeError, match="PodSecurity"):
        cluster.dry_run_pod(ns, job["spec"]["template"])

    # The same requirements (another order) wait for the same build: no second Job.
    cluster.apply_app(
        "second", tenant, with_requirements("\n".join(reversed(requirements.split())))
    )
    cluster.wait_app("second", tenant, "Building")
    label = f"aerogrid.io/build={build.digest[:20]}"
    assert len(cluster.res(JOBS).list(builds, label_selector=label).items) == 1

    # The build's pod running, the push, both apps deploying the built image and the record:
    # tests/cloud/test_real_apps.py, on a real kubelet with buildah.


def test_a_recorded_image_is_not_built_again(
    cluster: Cluster, tenant: str, installed: PlatformSettings
) -> None:
    spec = with_requirements(f"pandas==2.2.3\nmarker-{tenant}==2.0\n")
    build = build_for(spec, installed)
    assert build is not None
    # As if an earlier app had built it (its Job long gone, its record kept).
    cluster.kube.merge_patch(
        CONFIGMAPS,
        BUILT_IMAGES,
        {"data": {build.tag: build.image}},
        namespace=installed.build_namespace,
    )
    cluster.apply_app("reuse", tenant, spec)
    app = cluster.wait_app("reuse", tenant, "Deploying")
    assert app["status"]["image"] == build.image
    with pytest.raises(NotFound):
        cluster.res(JOBS).get(build.job_name, installed.build_namespace)


def test_a_failed_build_lands_in_status(
    kube: KubeTestbed, cluster: Cluster, installed: PlatformSettings, label: str, k8s_name: str
) -> None:
    # Builds here time out after a second (nothing runs the build's pod: no kubelet).
    impatient = installed.model_copy(update={"build_timeout_seconds": 1})
    with OperatorThread(kube, impatient, label):
        name = k8s_name
        cluster.apply_tenant(name, ["devs"])
        cluster.wait_tenant_ready(name)
        try:
            cluster.apply_app("doomed", name, with_requirements(f"marker-{name}==3.0\n"))
            failed = cluster.wait_app("doomed", name, "Failed")
        finally:
            cluster.res(operator.TENANTS).delete(name)
    status = failed["status"]
    assert "DeadlineExceeded" in status["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["reason"] == "BuildFailed"
    assert conditions["ImageReady"]["status"] == "False"


def test_a_big_app_stays_out_of_annotations(cluster: Cluster, tenant: str) -> None:
    big = "# padding\n" + "x = 1  # " + "y" * 600_000 + "\n"
    files = {"app.py": APP_PY, "data.py": big}
    cluster.apply_app("big", tenant, app_spec(files=files))
    cluster.wait_app("big", tenant, "Deploying")
    app = wait(  # kopf notes what it handled once the handler returns
        lambda: _handled(cluster.app("big", tenant)), "kopf's last-handled annotation"
    )
    ns = namespace_for(tenant)
    assert cluster.res(CONFIGMAPS).get("big-files", ns)["data"]["data.py"] == big
    annotations = app["metadata"].get("annotations") or {}
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 4096
    assert "sha256:" in annotations["aerogrid.io/last-handled-configuration"]
    before = cluster.res(DEPLOYMENTS).get("big", ns)["spec"]["template"]["metadata"]

    # kopf still sees a change to the big file (through its hash) and rolls the pods.
    cluster.patch_app("big", tenant, {"files": {**files, "data.py": big + "z = 2\n"}})
    cluster.wait_app("big", tenant, "Deploying")
    wait(
        lambda: cluster.res(CONFIGMAPS).get("big-files", ns)["data"]["data.py"].endswith("z = 2\n"),
        "the ConfigMap to take the new file",
    )
    after = cluster.res(DEPLOYMENTS).get("big", ns)["spec"]["template"]["metadata"]
    assert after["annotations"] != before["annotations"]
    annotations = cluster.app("big", tenant)["metadata"].get("annotations") or {}
    assert sum(len(k) + len(v) for k, v in annotations.items()) < 4096


def _handled(app: dict[str, Any]) -> dict[str, Any] | None:
    annotations = app["metadata"].get("annotations") or {}
    return app if "aerogrid.io/last-handled-configuration" in annotations else None


def test_the_schema_refuses_malformed_apps(cluster: Cluster, tenant: str) -> None:
    ns = namespace_for(tenant)

    def refused(name: str, spec: dict[str, Any]) -> str:
        obj: dict[str, Any] = {
            "apiVersion": "aerogrid.io/v1alpha1",
            "kind": "App",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
        with pytest.raises(Invalid) as info:
            cluster.res(APPS).apply(obj, field_manager="test")
        return str(info.value)

    good: dict[str, Any] = {"files": {"app.py": APP_PY}, "runtimeVersion": "0.1.0"}
    assert "files must hold app.py" in refused("nocode", {**good, "files": {"x.py": "1"}})
    assert "spec.replicas" in refused("many", {**good, "replicas": MAX_REPLICAS + 1})
    assert "spec.runtimeVersion" in refused("noversion", {"files": good["files"]})
    assert "spec.env[0].name" in refused("badenv", {**good, "env": [{"name": "1X"}]})
    assert "DNS label" in refused("dotted.name", good)


def test_failures_land_in_status_with_a_reason(
    cluster: Cluster, tenant: str, namespace: str, label: str
) -> None:
    # A file name the schema lets through but the model refuses.
    cluster.apply_app("hidden", tenant, app_spec())
    cluster.patch_app("hidden", tenant, {"files": {"app.py": APP_PY, ".env": "X=1"}})
    app = wait(lambda: cluster.app_phase("hidden", tenant, "Failed"), "hidden to fail")
    assert app["status"]["conditions"][-1]["reason"] == "InvalidSpec"
    assert ".env" in app["status"]["message"]

    # Environment the platform owns.
    cluster.apply_app(
        "sneaky", tenant, app_spec(env=[EnvVar(name="AEROGRID_REQUIRE_AUTH", value="0")])
    )
    app = cluster.wait_app("sneaky", tenant, "Failed")
    assert app["status"]["conditions"][-1]["reason"] == "RenderFailed"
    assert "AEROGRID_REQUIRE_AUTH" in app["status"]["message"]

    # More CPU than the tenant's LimitRange lets one container have: the ReplicaSet
    # cannot make the pod, and the Deployment's ReplicaFailure lands in the App.
    greedy = app_spec(resources=ResourceRequirements(requests={"cpu": "3"}, limits={"cpu": "3"}))
    cluster.apply_app("greedy", tenant, greedy)
    app = cluster.wait_app("greedy", tenant, "Failed")
    assert app["status"]["conditions"][-1]["reason"] == "ReplicaFailure"
    assert "cpu" in app["status"]["message"]

    # An App outside every tenant's namespace.
    obj = resource("App", "stray", app_spec(), namespace=namespace)
    obj["metadata"]["labels"] = {TEST_LABEL: label}
    cluster.res(APPS).apply(obj, field_manager="test")

    def stray_failed() -> dict[str, Any] | None:
        found = cluster.res(APPS).get("stray", namespace)
        return found if (found.get("status") or {}).get("phase") == "Failed" else None

    stray = wait(stray_failed, "the stray App to fail")
    assert "belongs to no tenant" in stray["status"]["message"]


def test_operator_restart_changes_nothing(
    kube: KubeTestbed, cluster: Cluster, installed: PlatformSettings, label: str, k8s_name: str
) -> None:
    name = k8s_name
    with OperatorThread(kube, installed, label):
        cluster.apply_tenant(name, ["devs"])
        cluster.wait_tenant_ready(name)
        cluster.apply_app("orders", name, app_spec())
        cluster.wait_app("orders", name, "Deploying")
        time.sleep(3 * installed.resync_seconds)  # let the controllers settle
    try:
        ns = namespace_for(name)
        kinds = [resource_type({"apiVersion": v, "kind": k}) for v, k in _APP_KINDS]

        def snapshot() -> dict[str, Any]:
            found: dict[str, Any] = {}
            for rtype in kinds:
                for item in cluster.res(rtype).list(ns).items:
                    meta = item["metadata"]
                    found[f"{rtype.kind}/{meta['name']}"] = (
                        meta["uid"],
                        meta["resourceVersion"],
                    )
            app = cluster.app("orders", name)
            found["App"] = (app["metadata"]["resourceVersion"], app["status"])
            return found

        before = snapshot()
        health = f"http://127.0.0.1:{free_port()}/healthz"
        with OperatorThread(kube, installed, label, liveness=health):
            # kopf's liveness endpoint (the Deployment's probe) answers once it is up.
            wait(lambda: _healthy(health), "kopf's liveness endpoint")
            # Resume handlers and several resync passes run over every object...
            time.sleep(4 * installed.resync_seconds + 1)
            after = snapshot()
            # ... and write nothing: same objects, same versions, same status.
            assert after == before
            # It is at work all the same: what goes missing comes back (level-based).
            services = cluster.res(ResourceType("", "v1", "services", "Service"))
            services.delete("orders", ns)
            wait(lambda: services.get("orders", ns), "the Service to be made again")
    finally:
        cluster.res(operator.TENANTS).delete(name)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


_APP_KINDS: Final = [
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("networking.istio.io/v1", "VirtualService"),
    ("networking.istio.io/v1", "DestinationRule"),
    ("policy/v1", "PodDisruptionBudget"),
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("security.istio.io/v1", "RequestAuthentication"),
    ("security.istio.io/v1", "AuthorizationPolicy"),
]


# -- pure parts of the operator ------------------------------------------------------------


def test_diffbase_stores_a_hash_not_the_files() -> None:
    import kopf

    storage = operator.HashedFilesDiffBase(prefix="aerogrid.io", key="last-handled-configuration")
    body = kopf.Body(
        {
            "apiVersion": "aerogrid.io/v1alpha1",
            "kind": "App",
            "metadata": {"name": "big", "namespace": "aerogrid-acme"},
            "spec": {"files": {"app.py": "x" * 700_000}, "runtimeVersion": "0.1.0"},
        }
    )
    essence = storage.build(body=body)
    assert essence["spec"]["files"].startswith("sha256:")
    assert essence["spec"]["runtimeVersion"] == "0.1.0"
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=essence)
    annotations = patch["metadata"]["annotations"]
    stored = annotations["aerogrid.io/last-handled-configuration"]
    assert "sha256:" in stored and len(stored) < 1000


@pytest.mark.parametrize(
    ("status", "wanted", "phase", "reason"),
    [
        ({}, 1, "Deploying", "Rollout"),
        (
            {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
            1,
            "Running",
            "Available",
        ),
        (
            {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
            1,
            "Deploying",  # the controller has not seen generation 2 yet
            "Rollout",
        ),
        ({"observedGeneration": 2}, 0, "Stopped", "Stopped"),
        (
            {"conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]},
            1,
            "Failed",
            "ReplicaFailure",
        ),
        (
            {
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                    }
                ]
            },
            1,
            "Failed",
            "ProgressDeadlineExceeded",
        ),
    ],
)
def test_deployment_phase(status: dict[str, Any], wanted: int, phase: str, reason: str) -> None:
    deployment = {"metadata": {"generation": 2}, "status": status}
    got_phase, got_reason, _ = operator.deployment_phase(deployment, wanted)
    assert (got_phase, got_reason) == (phase, reason)


# -- end to end: a developer promotes with the CLI, the operator deploys -------------------


def test_a_developer_promotes_and_the_operator_deploys(
    kube: KubeTestbed, cluster: Cluster, tenant: str, tmp_path: Any
) -> None:
    """`aerogrid promote` as a member of the tenant's group (bound by the operator to the
    developer role), the real operator deploying. `promote --wait` to Running, which needs
    a kubelet: tests/cloud/test_real_platform.py."""
    from aerogrid_cloud.cloud_cli import promote

    folder = tmp_path / "orders"
    folder.mkdir()
    (folder / "app.py").write_text(APP_PY)
    developer = kube.user_kubeconfig(f"dev-{tenant}", [f"{tenant}-devs"])
    ns = namespace_for(tenant)
    result = CliRunner().invoke(
        promote, [str(folder), "--tenant", tenant, "--kubeconfig", str(developer)]
    )
    assert result.exit_code == 0, result.output
    # this operator only handles objects with the test's label (tests share the bed)
    cluster.kube.merge_patch(
        APPS, "orders", {"metadata": {"labels": {TEST_LABEL: cluster.label}}}, namespace=ns
    )
    app = cluster.wait_app("orders", tenant, "Deploying")
    uid = app["metadata"]["uid"]
    for rtype in (CONFIGMAPS, DEPLOYMENTS):
        assert len(cluster.owned_by(uid, rtype, ns)) == 1
    service = ResourceType("", "v1", "services", "Service")
    virtual = ResourceType("networking.istio.io", "v1", "virtualservices", "VirtualService")
    assert len(cluster.owned_by(uid, service, ns)) == len(cluster.owned_by(uid, virtual, ns)) == 1
    # the developer's rights end at the tenant's Apps
    with BlockingKube.connect(developer) as dev:
        assert [a["metadata"]["name"] for a in Resources(dev, APPS).list(ns).items] == ["orders"]
        with pytest.raises(KubeError, match=r"(?i)forbidden"):
            Resources(dev, DEPLOYMENTS).list(ns)
