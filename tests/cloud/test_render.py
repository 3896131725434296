"""What the platform renders, checked without a cluster: the objects are plain dicts.

The same objects are sent to a real API server in test_operator.py; here each rule of the
design is pinned down one by one (restricted pods, probes, labels, owners, network and
identity policy, routing, builds, CRD schemas, `platform render`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from aerogrid.routing import APP_HEADER, TENANT_HEADER
from aerogrid.server.grpc_standard import LIVENESS
from aerogrid_cloud import crds
from aerogrid_cloud.model import (
    APP_KIND,
    APP_LABEL,
    MANAGED_BY,
    MAX_REPLICAS,
    TENANT_LABEL,
    AppSpec,
    AppStatus,
    BrokerRef,
    EnvVar,
    Phase,
    Quotas,
    SecretRef,
    TenantSpec,
    TenantStatus,
    namespace_for,
    resource,
)
from aerogrid_cloud.platform_cli import platform, to_yaml
from aerogrid_cloud.render import (
    BUILT_IMAGES,
    DEVELOPER_ROLE,
    DEVELOPER_RULES,
    GRPC_PORT,
    HTTP_PORT,
    OPERATOR_BUILD_RULES,
    OPERATOR_RULES,
    Owner,
    RenderError,
    app_image,
    app_objects,
    build_for,
    build_objects,
    platform_objects,
    resource_type,
    tenant_objects,
    tenant_of,
)
from aerogrid_cloud.render.build_steps import (
    APP_PACKAGES,
    BUILD_CONTAINER,
    BUILDER_CAPABILITIES,
    REQUIREMENTS_CONTAINER,
)
from aerogrid_cloud.settings import PlatformSettings, SettingsError

APP_PY = "import aerogrid\napp = aerogrid.App('orders')\n"
SETTINGS = PlatformSettings(
    domain="apps.acme.test",
    kafka_cidrs=["10.20.0.0/16"],
    oidc_issuer="https://idp.acme.test/",
    oidc_jwks_uri="https://idp.acme.test/jwks",
    oidc_audience="aerogrid-acme",
)
TENANT_OWNER = Owner("Tenant", "acme", "uid-tenant")
APP_OWNER = Owner(APP_KIND, "orders", "uid-app")


def spec(**changes: Any) -> AppSpec:
    values: dict[str, Any] = {"files": {"app.py": APP_PY}, "runtime_version": "0.1.0"}
    values.update(changes)
    return AppSpec(**values)


def by_kind(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    kinds = [o["kind"] for o in objects]
    assert len(kinds) == len(set(kinds)), kinds
    return {o["kind"]: o for o in objects}


def render_app(app_spec: AppSpec | None = None, **kwargs: Any) -> dict[str, dict[str, Any]]:
    return by_kind(
        app_objects(
            "orders",
            namespace_for("acme"),
            app_spec or spec(),
            SETTINGS,
            owner=APP_OWNER,
            tenant_groups=kwargs.pop("tenant_groups", ["acme-devs", "acme-ops"]),
            **kwargs,
        )
    )


def render_tenant(groups: list[str] | None = None) -> dict[str, dict[str, Any]]:
    tenant = TenantSpec(display_name="Acme", groups=groups or ["acme-devs", "acme-ops"])
    return by_kind(tenant_objects("acme", tenant, SETTINGS, TENANT_OWNER))


# -- settings ------------------------------------------------------------------------------


def test_settings_load_from_file_then_env(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text("domain: grid.corp.test\nkafka_ports: [19092]\nbuild_namespace: builds\n")
    env = {
        "AEROGRID_PLATFORM_SETTINGS": str(file),
        "AEROGRID_PLATFORM_DOMAIN": "grid.other.test",
        "AEROGRID_PLATFORM_KAFKA_CIDRS": "10.0.0.0/8, 192.168.1.0/24",
        "AEROGRID_PLATFORM_GATEWAY_SELECTOR": "app=gw,istio=ingress",
        "AEROGRID_PLATFORM_ISTIO_INJECTION": "0",
    }
    settings = PlatformSettings.load(environ=env)
    assert settings.domain == "grid.other.test"  # env wins over the file
    assert settings.kafka_ports == [19092]
    assert settings.build_namespace == "builds"
    assert settings.kafka_cidrs == ["10.0.0.0/8", "192.168.1.0/24"]
    assert settings.gateway_selector == {"app": "gw", "istio": "ingress"}
    assert settings.istio_injection is False
    # What the operator's ConfigMap holds reads back the same.
    again = tmp_path / "again.yaml"
    again.write_text(settings.to_yaml())
    assert PlatformSettings.load(again, environ={}) == settings


def test_settings_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"kafka_cidrs.*not a CIDR"):
        PlatformSettings.load(environ={"AEROGRID_PLATFORM_KAFKA_CIDRS": "ten-dot-zero"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_setting: 1\n")
    with pytest.raises(SettingsError, match="no_such_setting"):
        PlatformSettings.load(bad, environ={})
    with pytest.raises(SettingsError, match="cannot read"):
        PlatformSettings.load(tmp_path / "missing.yaml", environ={})


def test_placeholders_are_listed_until_overridden() -> None:
    assert "oidc_issuer" in PlatformSettings().placeholders()
    assert "domain" in PlatformSettings().placeholders()
    assert SETTINGS.placeholders() == []


# -- tenants -------------------------------------------------------------------------------


def test_tenant_namespace_is_restricted_and_injected() -> None:
    ns = render_tenant()["Namespace"]
    assert ns["metadata"]["name"] == "aerogrid-acme"
    labels = ns["metadata"]["labels"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
        assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "latest"
    assert labels["istio-injection"] == "enabled"
    assert labels[TENANT_LABEL] == "acme"


def test_tenant_objects_are_labelled_and_owned_by_the_tenant() -> None:
    for obj in render_tenant().values():
        assert obj["metadata"]["labels"].items() >= MANAGED_BY.items()
        refs = obj["metadata"]["ownerReferences"]
        assert refs == [TENANT_OWNER.reference()]
        assert refs[0]["apiVersion"] == "aerogrid.io/v1alpha1"
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "aerogrid-acme"


def test_quota_counts_apps_and_limits_bound_each_container() -> None:
    tenant = TenantSpec(
        display_name="Acme", groups=["g"], quotas=Quotas(apps=3, cpu="6", memory="12Gi", pods=9)
    )
    objects = by_kind(tenant_objects("acme", tenant, SETTINGS))
    hard = objects["ResourceQuota"]["spec"]["hard"]
    assert hard["count/apps.aerogrid.io"] == "3"
    assert hard["pods"] == "9"
    assert (hard["requests.cpu"], hard["requests.memory"]) == ("6", "12Gi")
    assert hard["services.loadbalancers"] == hard["services.nodeports"] == "0"
    (limit,) = objects["LimitRange"]["spec"]["limits"]
    assert limit["type"] == "Container"
    assert limit["max"] == {"cpu": "2", "memory": "4Gi"}
    assert set(limit["default"]) == set(limit["defaultRequest"]) == {"cpu", "memory"}
    assert "ownerReferences" not in objects["Namespace"]["metadata"]  # no owner given


def test_network_policy_denies_all_but_gateway_in_and_dns_kafka_out() -> None:
    policy = render_tenant()["NetworkPolicy"]["spec"]
    assert policy["podSelector"] == {}  # every pod of the tenant
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    (peer,) = ingress["from"]
    # One peer with both selectors: the gateway's pods in the gateway's namespace (AND).
    assert peer == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-system"}},
        "podSelector": {"matchLabels": {"istio": "ingressgateway"}},
    }
    assert {p["port"] for p in ingress["ports"]} == {GRPC_PORT, HTTP_PORT}
    dns, kafka, istiod = policy["egress"]
    assert "to" not in dns and {(p["protocol"], p["port"]) for p in dns["ports"]} == {
        ("UDP", 53),
        ("TCP", 53),
    }
    assert kafka["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    assert [p["port"] for p in kafka["ports"]] == [9092, 9093]
    assert istiod["ports"] == [{"protocol": "TCP", "port": 15012}]
    assert istiod["to"][0]["podSelector"] == {"matchLabels": {"app": "istiod"}}


def test_network_policy_egress_options() -> None:
    settings = SETTINGS.model_copy(
        update={"kafka_cidrs": [], "istio_injection": False, "idp_cidrs": ["203.0.113.0/24"]}
    )
    tenant = TenantSpec(display_name="Acme", groups=["g"])
    policy = by_kind(tenant_objects("acme", tenant, settings))["NetworkPolicy"]["spec"]
    _dns, kafka, idp = policy["egress"]
    assert "to" not in kafka  # anywhere, but only on the Kafka ports
    assert idp == {
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }


def test_request_authentication_is_paired_with_a_groups_policy() -> None:
    objects = render_tenant(["acme-devs", "acme-ops"])
    (rule,) = objects["RequestAuthentication"]["spec"]["jwtRules"]
    assert rule == {
        "issuer": "https://idp.acme.test/",
        "jwksUri": "https://idp.acme.test/jwks",
        "audiences": ["aerogrid-acme"],
        "forwardOriginalToken": True,  # the app checks the token again
    }
    policy = objects["AuthorizationPolicy"]["spec"]
    assert policy["action"] == "ALLOW"
    assert "selector" not in policy  # every workload of the namespace
    members, preflight = policy["rules"]
    (source,) = members["from"]
    # A request principal is required: a request without a token matches no rule.
    assert source["source"]["requestPrincipals"] == ["*"]
    gateway = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
    assert source["source"]["principals"] == [gateway]
    assert members["when"] == [
        {"key": "request.auth.claims[groups]", "values": ["acme-devs", "acme-ops"]}
    ]
    # CORS preflights carry no token: they pass, and only they.
    assert preflight["to"] == [{"operation": {"methods": ["OPTIONS"]}}]
    assert "requestPrincipals" not in preflight["from"][0]["source"]


def test_tenant_policies_differ_only_by_groups() -> None:
    a = render_tenant(["team-a"])["AuthorizationPolicy"]["spec"]
    b = by_kind(tenant_objects("beta", TenantSpec(display_name="B", groups=["team-b"]), SETTINGS))
    assert a["rules"][0]["when"][0]["values"] == ["team-a"]
    assert b["AuthorizationPolicy"]["spec"]["rules"][0]["when"][0]["values"] == ["team-b"]
    assert b["AuthorizationPolicy"]["metadata"]["namespace"] == "aerogrid-beta"


def test_reserved_tenant_names_are_refused() -> None:
    tenant = TenantSpec(display_name="x", groups=["g"])
    with pytest.raises(RenderError, match="reserved"):
        tenant_objects("system", tenant, SETTINGS)
    with pytest.raises(RenderError, match="reserved"):
        tenant_objects("builds", tenant, SETTINGS)
    with pytest.raises(ValueError, match="lower-case letters"):
        tenant_objects("Not_A_Label", tenant, SETTINGS)


def test_tenant_of_inverts_namespace_for() -> None:
    assert tenant_of(namespace_for("acme")) == "acme"
    assert tenant_of("aerogrid-") is None
    assert tenant_of("default") is None


# -- apps ----------------------------------------------------------------------------------


def pod_spec(objects: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]
    return pod


def test_app_objects_are_labelled_and_owned_by_the_app() -> None:
    objects = render_app()
    assert set(objects) == {
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "VirtualService",
        "DestinationRule",
    }
    for obj in objects.values():
        meta = obj["metadata"]
        assert meta["namespace"] == "aerogrid-acme"
        assert meta["labels"].items() >= MANAGED_BY.items()
        assert meta["labels"][APP_LABEL] == "orders"
        assert meta["labels"][TENANT_LABEL] == "acme"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "aerogrid.io/v1alpha1",
                "kind": "App",
                "name": "orders",
                "uid": "uid-app",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_code_goes_into_a_configmap_mounted_at_app() -> None:
    files = {"app.py": APP_PY, "helpers.py": "X = 1\n", "requirements.txt": "# none\n"}
    objects = render_app(spec(files=files))
    assert objects["ConfigMap"]["data"] == files
    assert objects["ConfigMap"]["metadata"]["name"] == "orders-files"
    pod = pod_spec(objects)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["app"] == {"name": "app", "configMap": {"name": "orders-files"}}
    assert "emptyDir" in volumes["tmp"]
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/app"] == {"name": "app", "mountPath": "/app", "readOnly": True}
    assert mounts["/tmp"]["name"] == "tmp"
    assert container["command"] == ["aerogrid", "run", "/app/app.py"]
    assert container["args"] == ["--host", "0.0.0.0", "--port", "50051", "--http-port", "50052"]
    # Large files never go into annotations: only their hash does.
    for obj in objects.values():
        for value in (obj["metadata"].get("annotations") or {}).values():
            assert len(value) < 100


def test_pod_is_restricted_without_service_account_token() -> None:
    pod = pod_spec(render_app())
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "orders"
    assert pod["enableServiceLinks"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for volume in pod["volumes"]:
        assert set(volume) & {"hostPath", "hostNetwork"} == set()
    sa = render_app()["ServiceAccount"]
    assert sa["automountServiceAccountToken"] is False


def test_probes_use_standard_grpc_health() -> None:
    """Kubernetes' native gRPC probes: ready is the whole server (""), which serves only
    once restored; liveness and startup ask for a service that serves from the start."""
    (container,) = pod_spec(render_app())["containers"]
    assert container["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": ""}
    assert container["livenessProbe"]["grpc"] == {"port": GRPC_PORT, "service": LIVENESS}
    assert container["startupProbe"]["grpc"] == {"port": GRPC_PORT, "service": LIVENESS}
    assert container["startupProbe"]["failureThreshold"] * 2 >= 60  # a minute to start
    assert not {"httpGet", "tcpSocket"} & {
        key
        for probe in ("readinessProbe", "livenessProbe", "startupProbe")
        for key in container[probe]
    }
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": GRPC_PORT, "http": HTTP_PORT}


def test_env_from_spec_broker_and_platform() -> None:
    app_spec = spec(
        env=[EnvVar(name="REGION", value="eu")],
        secret_refs=[SecretRef(name="api-keys")],
        broker=BrokerRef(bootstrap="kafka.corp:9092"),
    )
    (container,) = pod_spec(render_app(app_spec))["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["REGION"] == "eu"
    assert env["AEROGRID_BROKER"] == "kafka.corp:9092"
    assert env["AEROGRID_TENANT"] == "acme"
    assert env["AEROGRID_REQUIRE_AUTH"] == "1"  # the sidecar makes every peer loopback
    assert env["AEROGRID_OIDC_ISSUER"] == "https://idp.acme.test/"
    assert env["AEROGRID_OIDC_AUDIENCE"] == "aerogrid-acme"
    assert env["AEROGRID_OIDC_JWKS_URL"] == "https://idp.acme.test/jwks"
    assert json.loads(env["AEROGRID_GROUP_TENANTS"]) == {"acme-devs": "acme", "acme-ops": "acme"}
    assert container["envFrom"] == [{"secretRef": {"name": "api-keys"}}]
    names = [e["name"] for e in container["env"]]
    assert len(names) == len(set(names))


def test_broker_secret_comes_first_and_bootstrap_yields_to_it() -> None:
    app_spec = spec(
        broker=BrokerRef(bootstrap="kafka:9092", secret_ref=SecretRef(name="kafka-creds")),
        secret_refs=[SecretRef(name="other")],
    )
    (container,) = pod_spec(render_app(app_spec))["containers"]
    assert container["envFrom"] == [
        {"secretRef": {"name": "kafka-creds"}},
        {"secretRef": {"name": "other"}},
    ]
    assert "AEROGRID_BROKER" not in {e["name"] for e in container["env"]}


def test_env_may_not_override_platform_auth() -> None:
    with pytest.raises(RenderError, match="AEROGRID_REQUIRE_AUTH"):
        render_app(spec(env=[EnvVar(name="AEROGRID_REQUIRE_AUTH", value="0")]))


def test_stopped_app_has_zero_replicas() -> None:
    assert render_app(spec(stopped=True))["Deployment"]["spec"]["replicas"] == 0
    assert render_app(spec(replicas=1))["Deployment"]["spec"]["replicas"] == 1
    assert render_app(spec(replicas=0))["Deployment"]["spec"]["replicas"] == 0


def test_deployment_selects_its_own_pods_and_rolls_on_new_code() -> None:
    deployment = render_app()["Deployment"]["spec"]
    selector = deployment["selector"]["matchLabels"]
    assert selector == {APP_LABEL: "orders", TENANT_LABEL: "acme"}
    assert deployment["template"]["metadata"]["labels"].items() >= selector.items()
    before = deployment["template"]["metadata"]["annotations"]
    changed = render_app(spec(files={"app.py": APP_PY + "# v2\n"}))["Deployment"]
    assert changed["spec"]["template"]["metadata"]["annotations"] != before


def test_resources_come_from_the_spec() -> None:
    app_spec = spec(resources={"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}})
    (container,) = pod_spec(render_app(app_spec))["containers"]
    assert container["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "512Mi"}}


def test_app_outside_a_tenant_namespace_is_refused() -> None:
    with pytest.raises(RenderError, match="not a tenant's"):
        app_objects("orders", "default", spec(), SETTINGS)


def test_service_declares_grpc_for_istio() -> None:
    service = render_app()["Service"]["spec"]
    ports = {p["name"]: p for p in service["ports"]}
    assert ports["grpc"]["appProtocol"] == "grpc"
    assert ports["grpc"]["port"] == GRPC_PORT
    assert ports["http"]["appProtocol"] == "http"
    assert ports["http"]["port"] == HTTP_PORT
    assert service["selector"] == {APP_LABEL: "orders", TENANT_LABEL: "acme"}


def _string_match(rule: Mapping[str, str], value: str | None) -> bool:
    if value is None:
        return False
    if "exact" in rule:
        return value == rule["exact"]
    if "prefix" in rule:
        return value.startswith(rule["prefix"])
    return re.fullmatch(rule["regex"], value) is not None


def route(vs: Mapping[str, Any], host: str, headers: Mapping[str, str]) -> int | None:
    """Istio's choice for one request: the first route with a matching match (or None)."""
    spec_ = vs["spec"]
    if host not in spec_["hosts"] and "*" not in spec_["hosts"]:
        return None
    for http in spec_["http"]:
        for match in http["match"]:
            ok = "authority" not in match or _string_match(match["authority"], host)
            for name, rule in (match.get("headers") or {}).items():
                ok = ok and _string_match(rule, headers.get(name))
            if ok:
                (destination,) = http["route"]
                assert destination["destination"]["host"] == (
                    "orders.aerogrid-acme.svc.cluster.local"
                )
                port: int = destination["destination"]["port"]["number"]
                return port
    return None


def test_virtual_service_routes_by_host_or_headers() -> None:
    vs = render_app()["VirtualService"]
    assert vs["spec"]["gateways"] == ["istio-system/aerogrid-gateway"]
    assert "orders.acme.apps.acme.test" in vs["spec"]["hosts"]
    grpc = {"content-type": "application/grpc"}
    grpc_web = {"content-type": "application/grpc-web+proto"}
    connect = {"content-type": "application/connect+proto"}
    host = "orders.acme.apps.acme.test"
    assert route(vs, host, grpc) == GRPC_PORT
    assert route(vs, host + ":443", grpc) == GRPC_PORT
    assert route(vs, host, grpc_web) == HTTP_PORT
    assert route(vs, host, connect) == HTTP_PORT
    assert route(vs, host, {}) == HTTP_PORT
    # The one cloud endpoint: any host, told apart by the headers (app AND tenant).
    named = {APP_HEADER: "orders", TENANT_HEADER: "acme"}
    assert route(vs, "grid.acme.test", {**named, **grpc}) == GRPC_PORT
    assert route(vs, "grid.acme.test", {**named, **grpc_web}) == HTTP_PORT
    assert route(vs, "grid.acme.test", {APP_HEADER: "orders", **grpc}) is None
    assert route(vs, "grid.acme.test", {**named, TENANT_HEADER: "beta"}) is None
    assert route(vs, "grid.acme.test", {**named, APP_HEADER: "other"}) is None
    assert route(vs, "orders.acme.apps.acme.test.evil.test", grpc) is None
    assert route(vs, "orders.beta.apps.acme.test", grpc) is None


# -- builds --------------------------------------------------------------------------------


def test_no_build_without_packages() -> None:
    assert build_for(spec(), SETTINGS) is None
    files = {"app.py": APP_PY, "requirements.txt": "# nothing yet\n\n"}
    assert build_for(spec(files=files), SETTINGS) is None
    assert app_image(spec(), SETTINGS) == "ghcr.io/aerogrid/aerogrid-runtime:0.1.0"


def with_requirements(text: str, version: str = "0.1.0") -> AppSpec:
    return spec(files={"app.py": APP_PY, "requirements.txt": text}, runtime_version=version)


def test_build_tag_is_stable_and_tracks_requirements_and_runtime() -> None:
    build = build_for(with_requirements("requests==2.32.3\nnumpy==2.1.0\n"), SETTINGS)
    assert build is not None
    same = build_for(
        with_requirements("# deps\nnumpy==2.1.0  # arrays\n\nrequests==2.32.3"), SETTINGS
    )
    assert same == build  # order, comments and blank lines do not matter
    other_pkgs = build_for(with_requirements("requests==2.32.4\nnumpy==2.1.0\n"), SETTINGS)
    other_runtime = build_for(
        with_requirements("requests==2.32.3\nnumpy==2.1.0\n", "0.2.0"), SETTINGS
    )
    assert other_pkgs is not None and other_runtime is not None
    assert len({build.tag, other_pkgs.tag, other_runtime.tag}) == 3
    assert build.tag.startswith("0.1.0-") and other_runtime.tag.startswith("0.2.0-")
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", build.tag)
    assert build.image == f"{SETTINGS.build_registry}:{build.tag}"
    assert app_image(with_requirements("numpy==2.1.0\nrequests==2.32.3"), SETTINGS) == build.image
    assert len(build.job_name) <= 63


#: What Pod Security `baseline` lets a container add (the Kubernetes documentation's list).
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def test_build_job_installs_with_pip_unprivileged_then_builds_with_buildah() -> None:
    build = build_for(with_requirements("requests==2.32.3\n"), SETTINGS)
    assert build is not None
    context, job = build_objects(build, SETTINGS)
    assert context["kind"] == "ConfigMap" and job["kind"] == "Job"
    for obj in (context, job):
        assert obj["metadata"]["namespace"] == SETTINGS.build_namespace
        assert obj["metadata"]["labels"].items() >= MANAGED_BY.items()
    assert context["data"]["requirements.txt"] == "requests==2.32.3\n"
    dockerfile = context["data"]["Dockerfile"]
    assert dockerfile.splitlines() == [
        "FROM ghcr.io/aerogrid/aerogrid-runtime:0.1.0",
        f"COPY site-packages/ {APP_PACKAGES}/",
        f"ENV PYTHONPATH={APP_PACKAGES}",
    ]  # no RUN: buildah runs nothing, so it needs no runtime, user namespace or mount
    assert "ownerReferences" not in job["metadata"]  # no App in this namespace can own it
    assert "ownerReferences" not in context["metadata"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert job["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"

    # pip runs on the runtime image, as its user, read-only, with no capability.
    (pip,) = pod["initContainers"]
    assert pip["name"] == REQUIREMENTS_CONTAINER and pip["image"] == build.base_image
    assert pip["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    script = pip["command"][-1]
    assert "--only-binary=:all:" in script and f"--target {APP_PACKAGES}" in script
    assert "--requirement /context/requirements.txt" in script
    assert {"name": "PIP_INDEX_URL", "value": "https://pypi.org/simple"} in pip["env"]
    assert "PIP_TRUSTED_HOST" not in {e["name"] for e in pip["env"]}
    packages_mount = next(m for m in pip["volumeMounts"] if m["name"] == "workspace")
    assert APP_PACKAGES.startswith(packages_mount["mountPath"] + "/")

    # buildah: root with the four capabilities that unpacking layers as their owners needs
    # (all four in Pod Security baseline's list), and no user namespace of its own.
    assert set(BUILDER_CAPABILITIES) <= BASELINE_CAPABILITIES
    (buildah,) = pod["containers"]
    assert buildah["name"] == BUILD_CONTAINER and buildah["image"] == SETTINGS.build_image
    assert buildah["securityContext"] == {
        "runAsUser": 0,
        "runAsGroup": 0,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_CHROOT"]},
        "readOnlyRootFilesystem": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    script = buildah["command"][-1]
    assert "--storage-driver=vfs" in script and "--isolation=chroot" in script
    assert " bud " in script and " push " in script and "--tls-verify=false" not in script
    assert {"name": "IMAGE", "value": build.image} in buildah["env"]
    assert {"name": "_CONTAINERS_ROOTLESS_UID", "value": "10001"} in buildah["env"]
    assert "REGISTRY_AUTH_FILE" not in {e["name"] for e in buildah["env"]}
    for step in (pip, buildah):
        assert step["terminationMessagePolicy"] == "FallbackToLogsOnError"
    # Only emptyDirs are written: the ConfigMap is read-only.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["context"] == {"name": "context", "configMap": {"name": build.job_name}}
    for step in (pip, buildah):
        for mount in step["volumeMounts"]:
            assert mount.get("readOnly") or "emptyDir" in volumes[mount["name"]]

    # A failed pip fails the Job at once; a failed push is tried again.
    (rule,) = job["spec"]["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob"
    assert rule["onExitCodes"]["containerName"] == REQUIREMENTS_CONTAINER
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["ttlSecondsAfterFinished"] == SETTINGS.build_ttl_seconds
    assert job["spec"]["activeDeadlineSeconds"] == SETTINGS.build_timeout_seconds
    # Once the Job exists, it owns its context.
    owned, _ = build_objects(build, SETTINGS, job_uid="uid-job")
    (ref,) = owned["metadata"]["ownerReferences"]
    assert (ref["kind"], ref["name"], ref["uid"]) == ("Job", build.job_name, "uid-job")


def test_build_job_options() -> None:
    settings = SETTINGS.model_copy(
        update={
            "build_registry_insecure": True,
            "build_push_secret": "push-creds",
            "package_index": "http://10.0.0.7:8080/simple",
        }
    )
    build = build_for(with_requirements("requests\n"), settings)
    assert build is not None
    _, job = build_objects(build, settings)
    pod = job["spec"]["template"]["spec"]
    (pip,) = pod["initContainers"]
    assert {"name": "PIP_INDEX_URL", "value": "http://10.0.0.7:8080/simple"} in pip["env"]
    # pip ignores a plain-HTTP index unless its host is trusted: configuring it trusts it.
    assert {"name": "PIP_TRUSTED_HOST", "value": "10.0.0.7"} in pip["env"]
    (buildah,) = pod["containers"]
    # The base is pulled and the image pushed over plain HTTP (a test bed's registry).
    assert buildah["command"][-1].count("--tls-verify=false") == 2
    auth = next(e["value"] for e in buildah["env"] if e["name"] == "REGISTRY_AUTH_FILE")
    mount = next(m for m in buildah["volumeMounts"] if m["name"] == "registry-auth")
    assert auth == f"{mount['mountPath']}/auth.json" and mount["readOnly"] is True
    secret = next(v for v in pod["volumes"] if v["name"] == "registry-auth")["secret"]
    assert secret == {
        "secretName": "push-creds",
        "items": [{"key": ".dockerconfigjson", "path": "auth.json"}],
    }


def test_a_package_index_must_be_a_url() -> None:
    with pytest.raises(ValueError, match="must be an http"):
        PlatformSettings(package_index="pypi.org/simple")


# -- CRDs ----------------------------------------------------------------------------------


class SchemaError(AssertionError):
    pass


def check(schema: Mapping[str, Any], value: Any, path: str = "$") -> None:
    """A small validator of the structural-schema subset the CRDs use (CEL rules aside).

    Stricter than the API server on one point: an unknown field is an error here (the
    server would prune it), so a model field missing from the schema is caught.
    """
    if value is None:
        if schema.get("nullable"):
            return
        raise SchemaError(f"{path}: null")
    kind = schema.get("type")
    types: dict[str, Any] = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "boolean": bool,
        "number": (int, float),
    }
    wrong = kind is not None and not isinstance(value, types[kind])
    if wrong or (kind == "integer" and isinstance(value, bool)):
        raise SchemaError(f"{path}: {value!r} is not {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise SchemaError(f"{path}: shorter than {schema['minLength']}")
        if len(value) > schema.get("maxLength", 1 << 30):
            raise SchemaError(f"{path}: longer than {schema['maxLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise SchemaError(f"{path}: {value!r} does not match {schema['pattern']}")
    number = isinstance(value, int) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        raise SchemaError(f"{path}: {value} out of range")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            raise SchemaError(f"{path}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            check(schema["items"], item, f"{path}[{i}]")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaError(f"{path}: {name} is required")
        properties = schema.get("properties")
        for name, item in value.items():
            if path == "$" and name in ("apiVersion", "kind", "metadata"):
                continue  # every object has these; the API server checks them itself
            if properties is not None:
                if name not in properties:
                    raise SchemaError(f"{path}: unknown field {name}")
                check(properties[name], item, f"{path}.{name}")
            elif "additionalProperties" in schema:
                check(schema["additionalProperties"], item, f"{path}.{name}")


def version_of(crd: Mapping[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    result: dict[str, Any] = version
    return result


def full_app() -> dict[str, Any]:
    app_spec = spec(
        files={"app.py": APP_PY, "requirements.txt": "requests\n", "util.py": "X = 1\n"},
        replicas=1,
        stopped=True,
        env=[EnvVar(name="A", value="b")],
        secret_refs=[SecretRef(name="s")],
        broker=BrokerRef(bootstrap="k:9092", secret_ref=SecretRef(name="kafka")),
    )
    return resource("App", "orders", app_spec, namespace="aerogrid-acme")


def test_app_schema_accepts_rendered_apps_and_statuses() -> None:
    schema = version_of(crds.app_crd())["schema"]["openAPIV3Schema"]
    check(schema, full_app())
    check(schema, resource("App", "tiny", spec(), namespace="aerogrid-acme"))
    status = AppStatus(phase=Phase.RUNNING, endpoint="x:443", image="i").model_dump(
        by_alias=True, mode="json"
    )
    check(schema["properties"]["status"], status)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda s: s.pop("runtimeVersion"), "runtimeVersion is required"),
        (lambda s: s.update(replicas=MAX_REPLICAS + 1), "out of range"),
        (lambda s: s.update(replicas=-1), "out of range"),
        (lambda s: s.update(replicas="one"), "not integer"),
        (lambda s: s.update(env=[{"name": "1BAD", "value": "x"}]), "does not match"),
        (lambda s: s.update(files={"app.py": 3}), "not string"),
        (lambda s: s.update(stopped="yes"), "not boolean"),
        (lambda s: s.update(secretRefs=[{"name": ""}]), "shorter than"),
        (lambda s: s.update(surprise=True), "unknown field surprise"),
    ],
)
def test_app_schema_rejects_bad_specs(change: Any, error: str) -> None:
    schema = version_of(crds.app_crd())["schema"]["openAPIV3Schema"]
    app = full_app()
    change(app["spec"])
    with pytest.raises(SchemaError, match=error):
        check(schema, app)


def test_tenant_schema_accepts_tenants_and_rejects_bad_ones() -> None:
    schema = version_of(crds.tenant_crd())["schema"]["openAPIV3Schema"]
    tenant = resource(
        "Tenant", "acme", TenantSpec(display_name="Acme", groups=["g"], quotas=Quotas(apps=2))
    )
    check(schema, tenant)
    check(schema["properties"]["status"], TenantStatus().model_dump(by_alias=True, mode="json"))
    tenant["spec"]["groups"] = []
    with pytest.raises(SchemaError, match="fewer than 1"):
        check(schema, tenant)
    tenant["spec"]["groups"] = ["g"]
    tenant["spec"]["quotas"]["apps"] = -1
    with pytest.raises(SchemaError, match="out of range"):
        check(schema, tenant)


def fields_of(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


@pytest.mark.parametrize(
    ("crd", "spec_model", "status_model"),
    [(crds.app_crd, AppSpec, AppStatus), (crds.tenant_crd, TenantSpec, TenantStatus)],
)
def test_crd_schema_is_the_models(crd: Any, spec_model: Any, status_model: Any) -> None:
    schema = version_of(crd())["schema"]["openAPIV3Schema"]["properties"]
    assert set(schema["spec"]["properties"]) == fields_of(spec_model)
    assert set(schema["spec"]["required"]) == {
        info.alias or name for name, info in spec_model.model_fields.items() if info.is_required()
    }
    assert set(schema["status"]["properties"]) == fields_of(status_model)
    text = json.dumps(schema)
    # Structural: no references, no unions, no closed objects, no JSON-schema titles.
    for forbidden in ('"$ref"', '"anyOf"', '"allOf"', '"title"', '"additionalProperties": false'):
        assert forbidden not in text


def test_crd_shape() -> None:
    app, tenant = crds.app_crd(), crds.tenant_crd()
    assert app["metadata"]["name"] == "apps.aerogrid.io"
    assert app["spec"]["scope"] == "Namespaced" and tenant["spec"]["scope"] == "Cluster"
    assert app["spec"]["names"]["shortNames"] == ["agapp"]
    assert "agt" in tenant["spec"]["names"]["shortNames"]
    for crd in (app, tenant):
        version = version_of(crd)
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        assert crd["metadata"]["labels"].items() >= MANAGED_BY.items()
    app_columns = {c["name"]: c["jsonPath"] for c in version_of(app)["additionalPrinterColumns"]}
    assert app_columns["Phase"] == ".status.phase"
    assert app_columns["Image"] == ".status.image"
    assert app_columns["Endpoint"] == ".status.endpoint"
    assert app_columns["Age"] == ".metadata.creationTimestamp"
    tenant_columns = {c["name"] for c in version_of(tenant)["additionalPrinterColumns"]}
    assert {"Namespace", "Groups", "Phase", "Age"} <= tenant_columns
    files = version_of(app)["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"][
        "files"
    ]
    assert files["x-kubernetes-validations"] == [
        {"rule": "'app.py' in self", "message": "files must hold app.py"}
    ]


# -- the platform ------------------------------------------------------------------------


def test_every_platform_object_is_labelled_and_has_a_known_type() -> None:
    objects = platform_objects(SETTINGS)
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names))
    for obj in objects:
        assert obj["metadata"]["labels"].items() >= MANAGED_BY.items(), obj["kind"]
        rtype = resource_type(obj)
        assert rtype.namespaced == ("namespace" in obj["metadata"]), obj["kind"]
    kinds = [o["kind"] for o in objects]
    # CRDs and namespaces come before what needs them.
    assert kinds[:2] == ["CustomResourceDefinition", "CustomResourceDefinition"]
    assert kinds.index("Namespace") < kinds.index("Deployment")


def rules_of(objects: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    (role,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def test_operator_rbac_is_least_privilege() -> None:
    objects = platform_objects(SETTINGS)
    rules = rules_of(objects, "ClusterRole", "aerogrid-operator")
    assert rules == OPERATOR_RULES
    granted = {
        (group, res, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for res in rule["resources"]
        for verb in rule["verbs"]
    }
    assert not any(verb in ("delete", "deletecollection", "*") for _, _, verb in granted)
    assert not any(res in ("secrets", "pods", "*") for _, res, _ in granted)
    # RBAC only to bind each tenant's groups to the developer role, and that role alone.
    rbac = "rbac.authorization.k8s.io"
    assert {(res, verb) for group, res, verb in granted if group == rbac} == {
        ("rolebindings", "get"),
        ("rolebindings", "create"),
        ("rolebindings", "patch"),
        ("clusterroles", "bind"),
    }
    (bind,) = [r for r in rules if "bind" in r["verbs"]]
    assert bind["resourceNames"] == [DEVELOPER_ROLE]
    # Developers: their tenant's Apps only (a RoleBinding in its namespace), nothing else.
    assert rules_of(objects, "ClusterRole", DEVELOPER_ROLE) == DEVELOPER_RULES
    # Jobs only in the build namespace, through a Role there.
    assert not any(group == "batch" for group, _, _ in granted)
    (role,) = [o for o in objects if o["kind"] == "Role"]
    assert role["metadata"]["namespace"] == SETTINGS.build_namespace
    assert role["rules"] == OPERATOR_BUILD_RULES
    (binding,) = [o for o in objects if o["kind"] == "RoleBinding"]  # the operator's
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "aerogrid-operator", "namespace": "aerogrid-system"}
    ]


def test_catalog_reads_apps_and_tenants_only() -> None:
    objects = platform_objects(SETTINGS)
    assert rules_of(objects, "ClusterRole", "aerogrid-catalog") == [
        {
            "apiGroups": ["aerogrid.io"],
            "resources": ["apps", "tenants"],
            "verbs": ["get", "list", "watch"],
        }
    ]


def test_platform_deployments_are_restricted_with_probes() -> None:
    deployments = {
        o["metadata"]["name"]: o for o in platform_objects(SETTINGS) if o["kind"] == "Deployment"
    }
    assert set(deployments) == {"aerogrid-operator", "aerogrid-catalog"}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["image"] == SETTINGS.platform_image
        assert "livenessProbe" in container
    (catalog,) = deployments["aerogrid-catalog"]["spec"]["template"]["spec"]["containers"]
    assert catalog["readinessProbe"]["grpc"] == {"port": GRPC_PORT, "service": ""}
    assert catalog["livenessProbe"]["grpc"] == {"port": GRPC_PORT, "service": LIVENESS}
    (operator,) = deployments["aerogrid-operator"]["spec"]["template"]["spec"]["containers"]
    assert operator["command"] == ["python", "-m", "aerogrid_cloud.operator"]
    assert operator["args"] == ["--liveness=http://0.0.0.0:8080/healthz"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_gateway_and_mesh_mtls() -> None:
    objects = platform_objects(SETTINGS)
    (gateway,) = [o for o in objects if o["kind"] == "Gateway"]
    assert gateway["metadata"]["namespace"] == "istio-system"
    assert gateway["spec"]["selector"] == {"istio": "ingressgateway"}
    (server,) = gateway["spec"]["servers"]
    assert server["port"]["protocol"] == "HTTP" and server["hosts"] == ["*/*"]
    tls = SETTINGS.model_copy(update={"gateway_tls_secret": "grid-cert"})
    (secure,) = next(o for o in platform_objects(tls) if o["kind"] == "Gateway")["spec"]["servers"]
    assert secure["port"] == {"number": 443, "name": "https", "protocol": "HTTPS"}
    assert secure["tls"] == {"mode": "SIMPLE", "credentialName": "grid-cert"}
    (peer,) = [o for o in objects if o["kind"] == "PeerAuthentication"]
    assert peer["metadata"] == {**peer["metadata"], "name": "default", "namespace": "istio-system"}
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}


def test_build_namespace_and_record() -> None:
    objects = platform_objects(SETTINGS)
    namespaces = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Namespace"}
    build = namespaces[SETTINGS.build_namespace]["metadata"]["labels"]
    # buildah runs as root with four capabilities (render/build.py): baseline, not restricted
    assert build["pod-security.kubernetes.io/enforce"] == "baseline"
    assert build["istio-injection"] == "disabled"  # a sidecar would keep Jobs from finishing
    system = namespaces[SETTINGS.system_namespace]["metadata"]["labels"]
    assert system["pod-security.kubernetes.io/enforce"] == "restricted"
    (record,) = [o for o in objects if o["metadata"]["name"] == BUILT_IMAGES]
    assert "data" not in record  # applying it again never forgets a built image


def test_platform_render_prints_parseable_yaml(tmp_path: Path) -> None:
    file = tmp_path / "settings.yaml"
    file.write_text(yaml.safe_dump(SETTINGS.model_dump()))
    result = CliRunner().invoke(platform, ["render", "--settings", str(file)])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.stdout))
    assert documents == platform_objects(SETTINGS)
    assert "warning" not in result.stderr
    defaults = CliRunner().invoke(platform, ["render"], env={"AEROGRID_PLATFORM_SETTINGS": ""})
    assert defaults.exit_code == 0
    assert "still at example values" in defaults.stderr


def test_to_yaml_keeps_large_strings_intact() -> None:
    big = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    big["data"] = {"app.py": "x = 1\n" * 50_000}
    assert list(yaml.safe_load_all(to_yaml([big]))) == [big]
