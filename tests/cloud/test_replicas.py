"""An App's replicas on a real kube-apiserver, etcd and kube-controller-manager.

The operator runs as in test_operator.py (kopf in a thread, with exactly the RBAC
`platform render` gives it) and scales the app's Deployment 1 → 3 → 2; the Deployment and
ReplicaSet controllers of kube-controller-manager do the rest, as in a cluster. No kubelet
runs on this bed, so no pod starts: three replicas running as pods, one active, a SIGKILL
of the active, the budget counting them and a drain are tested on the real node
(test_real_apps.py).
"""

from __future__ import annotations

from typing import Any, Final

import pytest

from aerogrid_cloud import operator
from aerogrid_cloud.kube import APPS, NotFound, ResourceType
from aerogrid_cloud.model import APP_LABEL, Quotas, TenantSpec, namespace_for, resource
from cloud.test_operator import (
    DEPLOYMENTS,
    GC_TIMEOUT,
    PODS,
    REPLICASETS,
    TEST_LABEL,
    Cluster,
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


def _deployment_replicas(cluster: Cluster, namespace: str, app: str) -> int:
    return int(cluster.res(DEPLOYMENTS).get(app, namespace)["spec"]["replicas"])


def test_scaling_one_three_two_keeps_the_image_and_one_replica_set(
    cluster: Cluster, tenant: str
) -> None:
    """The counts, objects and rollout settings; the pods running, their roles, the budget
    counting them and a drain: test_real_apps.py on the real node."""
    created = cluster.apply_app("orders", tenant, app_spec(replicas=1))
    uid = created["metadata"]["uid"]
    ns = namespace_for(tenant)
    first = cluster.wait_app("orders", tenant, "Deploying")
    image = first["status"]["image"]
    deployment = cluster.res(DEPLOYMENTS).get("orders", ns)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    template = deployment["spec"]["template"]
    replica_set = wait(
        lambda: cluster.owned_by(deployment["metadata"]["uid"], REPLICASETS, ns),
        "the Deployment's ReplicaSet",
    )[0]

    # The budget and the traffic policy are the App's, like its other objects.
    (budget,) = cluster.owned_by(uid, PDBS, ns)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    (rule,) = cluster.owned_by(uid, DESTINATION_RULES, ns)
    assert rule["spec"]["trafficPolicy"]["loadBalancer"] == {"simple": "LEAST_REQUEST"}

    # 1 → 3: only the count changes (no new ReplicaSet, so no rollout and no build).
    cluster.patch_app("orders", tenant, {"replicas": 3})
    wait(lambda: _deployment_replicas(cluster, ns, "orders") == 3, "3 replicas wanted")
    three = cluster.wait_app("orders", tenant, "Deploying")
    assert three["status"]["replicas"] == 3 and three["status"]["image"] == image
    pods = wait(lambda: len(found := _pods(cluster, ns, "orders")) == 3 and found, "3 pods")
    # Each replica names itself after its pod (the downward API, resolved by the kubelet).
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        (replica_id,) = [e for e in container["env"] if e["name"] == "AEROGRID_REPLICA_ID"]
        assert replica_id["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    # 3 → 2.
    cluster.patch_app("orders", tenant, {"replicas": 2})
    wait(lambda: _deployment_replicas(cluster, ns, "orders") == 2, "2 replicas wanted")
    wait(lambda: len(_pods(cluster, ns, "orders")) == 2, "the ReplicaSet to drop a pod")
    two = cluster.wait_app("orders", tenant, "Deploying")
    assert two["status"]["image"] == image
    after = cluster.res(DEPLOYMENTS).get("orders", ns)
    assert after["spec"]["template"] == template
    replica_sets = cluster.owned_by(after["metadata"]["uid"], REPLICASETS, ns)
    assert [rs["metadata"]["uid"] for rs in replica_sets] == [replica_set["metadata"]["uid"]]

    # Deleting the App deletes its budget and traffic policy with the rest. Waited for by
    # name: a reconcile in flight when the App went may apply them once more, owned by the
    # App that is gone, and the garbage collector deletes them again.
    cluster.res(APPS).delete("orders", ns)

    def gone(rtype: ResourceType) -> bool:
        try:
            cluster.res(rtype).get("orders", ns)
        except NotFound:
            return True
        return False

    wait(
        lambda: gone(PDBS) and gone(DESTINATION_RULES),
        "the garbage collector to delete the budget and the DestinationRule",
        timeout=GC_TIMEOUT,
    )


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
