"""An App's replicas on a real kube-apiserver, etcd and kube-controller-manager.

The operator runs as in test_operator.py (kopf in a thread, with exactly the RBAC
`platform render` gives it) and scales the app's Deployment 1 → 3 → 2; the Deployment,
ReplicaSet and disruption controllers of kube-controller-manager do the rest, as in a
cluster. No kubelet runs here (a later issue brings one), so no container starts: where a
pod must be running and ready, the test writes the status a kubelet would (`Kubelet`).
"""

from __future__ import annotations

from typing import Any, Final

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from aerogrid_cloud import operator
from aerogrid_cloud.kube import APPS, NotFound, ResourceType
from aerogrid_cloud.model import APP_LABEL, Quotas, TenantSpec, namespace_for, resource
from cloud.test_operator import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    TEST_LABEL,
    Cluster,
    Kubelet,
    app_spec,
    wait,
)

# The operator test bed's fixtures (re-exported, so pytest finds them here too).
from cloud.test_operator import admin as admin
from cloud.test_operator import cluster as cluster
from cloud.test_operator import installed as installed
from cloud.test_operator import label as label
from cloud.test_operator import running as running
from cloud.test_operator import tenant as tenant
from support.k8s import KubeTestbed

pytestmark = pytest.mark.timeout(300)

PDBS: Final = ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
DESTINATION_RULES: Final = ResourceType(
    "networking.istio.io", "v1", "destinationrules", "DestinationRule"
)


def _pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]]:
    """The app's pods that are not being deleted."""
    return [
        pod
        for pod in cluster.res(PODS).list(namespace, label_selector=f"{APP_LABEL}={app}").items
        if not pod["metadata"].get("deletionTimestamp")
    ]


def _run_pods(cluster: Cluster, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    """Wait for the app's `count` pods, then play the kubelet: each one runs and is ready."""
    pods: list[dict[str, Any]] = wait(
        lambda: (found := _pods(cluster, namespace, app)) and len(found) == count and found,
        f"{count} pods of {app}",
    )
    kubelet = Kubelet(cluster.kube)
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Running":
            kubelet.run(namespace, pod)
    return pods


def _wait_running(cluster: Cluster, tenant: str, app: str, replicas: int) -> dict[str, Any]:
    """The App Running with `replicas` of `replicas` ready, in its status and message."""

    def ready() -> dict[str, Any] | None:
        found = cluster.app_phase(app, tenant, "Running")
        if found is None:
            return None
        status = found["status"]
        if (status["replicas"], status["readyReplicas"]) != (replicas, replicas):
            return None
        return found

    found: dict[str, Any] = wait(ready, f"App {app} Running with {replicas} ready replicas")
    assert found["status"]["message"] == f"{replicas}/{replicas} replicas available"
    return found


def _deployment_replicas(cluster: Cluster, namespace: str, app: str) -> int:
    return int(cluster.res(DEPLOYMENTS).get(app, namespace)["spec"]["replicas"])


def test_scaling_one_three_two_keeps_the_image_and_one_replica_set(
    cluster: Cluster, tenant: str
) -> None:
    created = cluster.apply_app("orders", tenant, app_spec(replicas=1))
    uid = created["metadata"]["uid"]
    ns = namespace_for(tenant)
    _run_pods(cluster, ns, "orders", 1)
    first = _wait_running(cluster, tenant, "orders", 1)
    image = first["status"]["image"]
    deployment = cluster.res(DEPLOYMENTS).get("orders", ns)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    template = deployment["spec"]["template"]
    (replica_set,) = cluster.owned_by(deployment["metadata"]["uid"], REPLICASETS, ns)

    # The budget and the traffic policy are the App's, like its other objects.
    (budget,) = cluster.owned_by(uid, PDBS, ns)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    (rule,) = cluster.owned_by(uid, DESTINATION_RULES, ns)
    assert rule["spec"]["trafficPolicy"]["loadBalancer"] == {"simple": "LEAST_REQUEST"}

    # 1 → 3: only the count changes (no new ReplicaSet, so no rollout and no build).
    cluster.patch_app("orders", tenant, {"replicas": 3})
    wait(lambda: _deployment_replicas(cluster, ns, "orders") == 3, "3 replicas wanted")
    deploying = cluster.wait_app("orders", tenant, "Deploying")
    assert deploying["status"]["replicas"] == 3
    pods = _run_pods(cluster, ns, "orders", 3)
    three = _wait_running(cluster, tenant, "orders", 3)
    assert three["status"]["image"] == image
    # Each replica names itself after its pod (the downward API, resolved by the kubelet).
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        (replica_id,) = [e for e in container["env"] if e["name"] == "AEROGRID_REPLICA_ID"]
        assert replica_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    def budget_counts(expected: int, allowed: int) -> bool:
        status = cluster.res(PDBS).get("orders", ns).get("status") or {}
        return bool(
            status.get("expectedPods") == expected
            and status.get("currentHealthy") == expected
            and status.get("disruptionsAllowed") == allowed
        )

    # kube-controller-manager's disruption controller: 3 healthy, one may go.
    wait(lambda: budget_counts(3, 1), "the budget to allow one disruption of 3")

    # 3 → 2.
    cluster.patch_app("orders", tenant, {"replicas": 2})
    wait(lambda: _deployment_replicas(cluster, ns, "orders") == 2, "2 replicas wanted")
    wait(lambda: len(_pods(cluster, ns, "orders")) == 2, "the ReplicaSet to drop a pod")
    two = _wait_running(cluster, tenant, "orders", 2)
    assert two["status"]["image"] == image
    after = cluster.res(DEPLOYMENTS).get("orders", ns)
    assert after["spec"]["template"] == template
    replica_sets = cluster.owned_by(after["metadata"]["uid"], REPLICASETS, ns)
    assert [rs["metadata"]["uid"] for rs in replica_sets] == [replica_set["metadata"]["uid"]]
    wait(lambda: budget_counts(2, 1), "the budget to allow one disruption of 2")

    # Deleting the App deletes its budget and traffic policy with the rest.
    cluster.res(APPS).delete("orders", ns)
    wait(
        lambda: (
            not cluster.owned_by(uid, PDBS, ns) and not cluster.owned_by(uid, DESTINATION_RULES, ns)
        ),
        "the garbage collector to delete the budget and the DestinationRule",
    )
    with pytest.raises(NotFound):
        cluster.res(PDBS).get("orders", ns)


def test_a_drain_evicts_one_replica_at_a_time(
    kube: KubeTestbed, cluster: Cluster, tenant: str
) -> None:
    """The Eviction API (what `kubectl drain` calls) against the App's budget."""
    cluster.apply_app("orders", tenant, app_spec(replicas=2))
    ns = namespace_for(tenant)
    first, second = _run_pods(cluster, ns, "orders", 2)
    _wait_running(cluster, tenant, "orders", 2)
    wait(
        lambda: (
            (cluster.res(PDBS).get("orders", ns).get("status") or {}).get("disruptionsAllowed") == 1
        ),
        "the budget to allow one disruption",
    )
    with kube.api_client() as api:
        core = client.CoreV1Api(api)

        def evict(pod: dict[str, Any]) -> None:
            name = pod["metadata"]["name"]
            body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=ns))
            core.create_namespaced_pod_eviction(name, ns, body)

        evict(first)  # one replica may go ...
        # ... its successor is not ready yet (no kubelet starts it), so the other stays.
        with pytest.raises(ApiException) as refused:
            evict(second)
    assert refused.value.status == 429
    assert "disruption budget" in str(refused.value.body)
    left = {pod["metadata"]["name"] for pod in _pods(cluster, ns, "orders")}
    assert second["metadata"]["name"] in left and first["metadata"]["name"] not in left


def _apply_tenant(cluster: Cluster, name: str, max_replicas: int) -> None:
    spec = TenantSpec(
        display_name=name.title(),
        groups=[f"{name}-devs"],
        quotas=Quotas(max_replicas_per_app=max_replicas),
    )
    obj = resource("Tenant", name, spec)
    obj["metadata"]["labels"] = {TEST_LABEL: cluster.label}
    cluster.res(operator.TENANTS).apply(obj, field_manager="test")


def test_replicas_above_the_tenant_quota_are_refused(
    cluster: Cluster, running: Any, k8s_name: str
) -> None:
    name = k8s_name
    _apply_tenant(cluster, name, max_replicas=2)
    cluster.wait_tenant_ready(name)
    ns = namespace_for(name)
    try:
        cluster.apply_app("orders", name, app_spec(replicas=2))
        cluster.wait_app("orders", name, "Deploying")
        assert _deployment_replicas(cluster, ns, "orders") == 2

        # Three is more than this tenant allows: refused, and the two replicas stay.
        cluster.patch_app("orders", name, {"replicas": 3})
        failed = cluster.wait_app("orders", name, "Failed")
        status = failed["status"]
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert ready["status"] == "False" and ready["reason"] == "ReplicasOverQuota"
        assert status["message"].startswith(
            f"spec.replicas 3 is above tenant {name}'s quota of 2 replicas per app"
        )
        assert "maxReplicasPerApp" in status["message"]
        assert _deployment_replicas(cluster, ns, "orders") == 2

        # The tenant's quota raised: its apps are reconciled with it, and three it is.
        _apply_tenant(cluster, name, max_replicas=3)
        wait(lambda: _deployment_replicas(cluster, ns, "orders") == 3, "3 replicas wanted")
        deploying = cluster.wait_app("orders", name, "Deploying")
        assert deploying["status"]["replicas"] == 3
    finally:
        cluster.res(operator.TENANTS).delete(name)
