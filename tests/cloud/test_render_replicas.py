"""An App's replicas as rendered, without a cluster: rollout, replica id, budget, balancing.

test_replicas.py sends the same objects to a real API server and scales them.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from aerogrid_cloud import crds
from aerogrid_cloud.model import (
    APP_LABEL,
    DEFAULT_REPLICAS_PER_APP,
    MAX_REPLICAS,
    TENANT_LABEL,
    AppSpec,
    AppStatus,
    EnvVar,
    Quotas,
    TenantSpec,
    resource,
)
from aerogrid_cloud.render import OPERATOR_RULES, RenderError, resource_type
from aerogrid_cloud.render.replicas import TERMINATION_GRACE_SECONDS
from cloud.test_render import SchemaError, check, pod_spec, render_app, spec, version_of


def test_deployment_runs_the_wanted_replicas() -> None:
    for replicas in (0, 1, 3, MAX_REPLICAS):
        deployment = render_app(spec(replicas=replicas))["Deployment"]
        assert deployment["spec"]["replicas"] == replicas
    assert render_app(spec(replicas=3, stopped=True))["Deployment"]["spec"]["replicas"] == 0


def test_rolling_update_never_takes_the_last_ready_replica() -> None:
    """A new pod first (surge 1), an old one stopped only once the new one is ready
    (unavailable 0): with one replica, the app always has one ready."""
    strategy = render_app()["Deployment"]["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    (container,) = pod_spec(render_app())["containers"]
    # Ready means restored: the whole server's gRPC health, not the liveness service.
    assert container["readinessProbe"]["grpc"]["service"] == ""


def test_the_replica_id_is_the_pod_name() -> None:
    (container,) = pod_spec(render_app(spec(replicas=3)))["containers"]
    (replica_id,) = [e for e in container["env"] if e["name"] == "AEROGRID_REPLICA_ID"]
    assert replica_id == {
        "name": "AEROGRID_REPLICA_ID",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
    }
    # One id per pod: an App's env may not pin every replica to the same one.
    with pytest.raises(RenderError, match="AEROGRID_REPLICA_ID"):
        render_app(spec(env=[EnvVar(name="AEROGRID_REPLICA_ID", value="same")]))


def test_termination_grace_covers_the_runtime_stop() -> None:
    pod = pod_spec(render_app())
    assert pod["terminationGracePeriodSeconds"] == TERMINATION_GRACE_SECONDS
    # `aerogrid run` exits within 10 s of SIGTERM (runner/serve.py), the sidecar after it.
    assert TERMINATION_GRACE_SECONDS >= 10 + 5


def test_disruption_budget_allows_one_replica_down() -> None:
    objects = render_app(spec(replicas=3))
    budget = objects["PodDisruptionBudget"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["metadata"]["name"] == "orders"
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    # It counts exactly the Deployment's pods.
    selector = objects["Deployment"]["spec"]["selector"]
    assert (
        budget["spec"]["selector"]
        == selector
        == {"matchLabels": {APP_LABEL: "orders", TENANT_LABEL: "acme"}}
    )
    # A replica that is not ready serves no one: a drain may evict it.
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_destination_rule_spreads_streams_by_open_requests() -> None:
    objects = render_app(spec(replicas=3))
    rule = objects["DestinationRule"]
    service = objects["Service"]
    assert rule["apiVersion"] == "networking.istio.io/v1"
    # The host the VirtualService routes to (the app's Service).
    routed = {
        route["destination"]["host"]
        for http in objects["VirtualService"]["spec"]["http"]
        for route in http["route"]
    }
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    assert routed == {rule["spec"]["host"]} == {host}
    policy = rule["spec"]["trafficPolicy"]
    assert policy["loadBalancer"] == {"simple": "LEAST_REQUEST"}
    http = policy["connectionPool"]["http"]
    assert http["h2UpgradePolicy"] == "UPGRADE"
    # Closed by the proxy before the runtime's HTTP port closes an idle connection (10 s).
    assert int(http["idleTimeout"].removesuffix("s")) < 10
    # Istio's automatic mTLS stays in charge of TLS; no subsets, no per-port override.
    assert set(policy) == {"loadBalancer", "connectionPool"}
    assert set(rule["spec"]) == {"host", "trafficPolicy"}


def test_operator_may_apply_budgets_and_destination_rules() -> None:
    granted = {
        (group, res, verb)
        for rule in OPERATOR_RULES
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }
    for kind in ("PodDisruptionBudget", "DestinationRule"):
        (obj,) = [o for o in render_app().values() if o["kind"] == kind]
        rtype = resource_type(obj)
        for verb in ("get", "create", "patch"):
            assert (rtype.group, rtype.plural, verb) in granted, (kind, verb)


# -- the replica quota ---------------------------------------------------------------------


def test_replicas_are_bounded_by_the_platform() -> None:
    assert AppSpec.model_validate(
        {"files": {"app.py": "x"}, "runtimeVersion": "0.1.0", "replicas": MAX_REPLICAS}
    )
    for bad in (-1, MAX_REPLICAS + 1):
        with pytest.raises(ValidationError, match="replicas"):
            spec(replicas=bad)


def test_tenant_quota_of_replicas_per_app() -> None:
    assert Quotas().max_replicas_per_app == DEFAULT_REPLICAS_PER_APP == 3
    assert Quotas.model_validate({"maxReplicasPerApp": 5}).max_replicas_per_app == 5
    for bad in (0, MAX_REPLICAS + 1):
        with pytest.raises(ValidationError, match="maxReplicasPerApp"):
            Quotas.model_validate({"maxReplicasPerApp": bad})
    schema = version_of(crds.tenant_crd())["schema"]["openAPIV3Schema"]
    tenant = resource("Tenant", "acme", TenantSpec(display_name="Acme", groups=["g"]))
    assert tenant["spec"]["quotas"]["maxReplicasPerApp"] == 3
    check(schema, tenant)
    for bad in (0, MAX_REPLICAS + 1):
        tenant["spec"]["quotas"]["maxReplicasPerApp"] = bad
        with pytest.raises(SchemaError, match="out of range"):
            check(schema, tenant)


def test_status_and_columns_show_ready_and_wanted_replicas() -> None:
    app = crds.app_crd()
    columns = {c["name"]: c for c in version_of(app)["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == ".status.readyReplicas"
    assert columns["Replicas"]["jsonPath"] == ".status.replicas"
    status = AppStatus(replicas=3, ready_replicas=2).model_dump(by_alias=True, mode="json")
    assert (status["replicas"], status["readyReplicas"]) == (3, 2)
    check(version_of(app)["schema"]["openAPIV3Schema"]["properties"]["status"], status)
