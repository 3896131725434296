"""The Kubernetes test bed itself: proof that what the cloud tests rely on is real.

Each test checks one thing the operator, catalog and promote tests depend on: the release, the
Istio CRDs, Pod Security admission, server-side apply, the controllers (ReplicaSets, garbage
collection, quotas) and RBAC for least-privilege users. No kubelet or scheduler runs: pods are
admitted and stay Pending, and the tests say so where it matters.
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from support.k8s import ISTIO_CRDS, RESTRICTED_LABELS, KubeTestbed, wait_for

#: Server-side apply's content type; the body may be JSON (JSON is YAML).
APPLY = "application/apply-patch+yaml"


@pytest.fixture
def api(kube: KubeTestbed) -> Iterator[client.ApiClient]:
    """An admin ApiClient (system:masters)."""
    with kube.api_client() as api_client:
        yield api_client


def _meta(meta: client.V1ObjectMeta | None) -> client.V1ObjectMeta:
    assert meta is not None
    return meta


def _uid(meta: client.V1ObjectMeta | None) -> str:
    uid = _meta(meta).uid
    assert uid is not None
    return uid


def _status_of(call: Callable[[], object]) -> int:
    """The HTTP status `call()` fails with (200 when it succeeds)."""
    try:
        call()
    except ApiException as exc:
        return int(exc.status or 0)
    return 200


def _message(exc: ApiException) -> str:
    """The API server's Status message (the body is JSON, so quotes in it are escaped)."""
    return str(json.loads(exc.body or "{}").get("message", ""))


def _assert_never_started(pod: client.V1Pod) -> None:
    """No scheduler or kubelet runs here: a stored pod is on no node and stays Pending."""
    assert pod.spec is not None and pod.spec.node_name is None
    assert pod.status is not None and pod.status.phase == "Pending"


def _restricted_container(**overrides: Any) -> client.V1Container:
    """A container that passes Pod Security `restricted` (what the operator must render)."""
    context = client.V1SecurityContext(
        run_as_non_root=True,
        run_as_user=10001,
        allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )
    fields: dict[str, Any] = {"name": "app", "image": "example.invalid/app:1", **overrides}
    fields.setdefault("security_context", context)
    return client.V1Container(**fields)


def _virtual_service(name: str, hosts: object) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": hosts,
            "http": [{"route": [{"destination": {"host": "app", "port": {"number": 50051}}}]}],
        },
    }


def test_apiserver_answers_with_the_built_release(kube: KubeTestbed, api: client.ApiClient) -> None:
    info = client.VersionApi(api).get_code()
    assert info.git_version == kube.version
    assert (info.major, info.minor) == ("1", kube.version.split(".")[1])
    # /version is public (system:public-info-viewer): the URL and the CA file are enough.
    context = ssl.create_default_context(cafile=str(kube.ca_cert))
    with urllib.request.urlopen(f"{kube.server}/version", context=context, timeout=10) as response:
        assert json.load(response)["gitVersion"] == kube.version
    assert kube.startup_seconds is not None


def test_istio_crds_are_established_and_validate(api: client.ApiClient, namespace: str) -> None:
    extensions = client.ApiextensionsV1Api(api)
    for name in ISTIO_CRDS:
        status = extensions.read_custom_resource_definition(name).status
        conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
        assert conditions.get("Established") == "True", name
    custom = client.CustomObjectsApi(api)
    created = custom.create_namespaced_custom_object(
        "networking.istio.io",
        "v1",
        namespace,
        "virtualservices",
        _virtual_service("app", ["app.example.com"]),
    )
    assert cast(dict[str, Any], created)["spec"]["hosts"] == ["app.example.com"]
    # The CRD's OpenAPI schema is enforced (istiod's webhook is absent: schemas only).
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            namespace,
            "virtualservices",
            _virtual_service("bad", "not-a-list"),
        )
    assert refused.value.status == 422


def test_pod_security_restricted_rejects_privileged_and_admits_compliant(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    labels = _meta(core.read_namespace(namespace).metadata).labels or {}
    assert labels.items() >= RESTRICTED_LABELS.items()
    privileged = client.V1Pod(
        metadata=client.V1ObjectMeta(name="privileged"),
        spec=client.V1PodSpec(
            containers=[
                _restricted_container(
                    security_context=client.V1SecurityContext(
                        privileged=True,
                        run_as_non_root=True,
                        capabilities=client.V1Capabilities(drop=["ALL"]),
                        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
                    )
                )
            ]
        ),
    )
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest": privileged' in _message(refused.value)

    compliant = client.V1Pod(
        metadata=client.V1ObjectMeta(name="compliant"),
        spec=client.V1PodSpec(containers=[_restricted_container()]),
    )
    _assert_never_started(core.create_namespaced_pod(namespace, compliant))


def test_server_side_apply(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)

    def apply(data: dict[str, str], manager: str, force: bool | None = None) -> client.V1ConfigMap:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": data}
        return core.patch_namespaced_config_map(
            "cfg", namespace, body, field_manager=manager, force=force, _content_type=APPLY
        )

    assert apply({"a": "1"}, "aerogrid-operator").data == {"a": "1"}  # apply creates
    assert apply({"a": "2"}, "aerogrid-operator").data == {"a": "2"}
    managed = _meta(core.read_namespaced_config_map("cfg", namespace).metadata).managed_fields
    assert ("aerogrid-operator", "Apply") in {(f.manager, f.operation) for f in managed or []}
    with pytest.raises(ApiException) as conflict:
        apply({"a": "3"}, "someone-else")
    assert conflict.value.status == 409
    assert apply({"a": "3"}, "someone-else", force=True).data == {"a": "3"}

    # A custom resource (what the operator renders for Istio) applies the same way. The client's
    # CustomObjectsApi.patch_* maps only status 200: when an apply creates (201) it returns None
    # (and its *_with_http_info returns a plain tuple despite its annotation), so read back.
    custom = client.CustomObjectsApi(api)
    for hosts in (["a.example.com"], ["a.example.com", "b.example.com"]):
        custom.patch_namespaced_custom_object(
            "networking.istio.io",
            "v1",
            namespace,
            "virtualservices",
            "applied",
            _virtual_service("applied", hosts),
            field_manager="aerogrid-operator",
            _content_type=APPLY,
        )
        stored = custom.get_namespaced_custom_object(
            "networking.istio.io", "v1", namespace, "virtualservices", "applied"
        )
        assert cast(dict[str, Any], stored)["spec"]["hosts"] == hosts


def test_deployment_gets_a_replicaset_and_pods(api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    labels = {"app": "web"}
    deployment = apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[_restricted_container()]),
                ),
            ),
        ),
    )
    owner = _uid(deployment.metadata)

    def owned_replicasets() -> list[client.V1ReplicaSet]:
        return [
            rs
            for rs in apps.list_namespaced_replica_set(namespace).items
            if any(ref.uid == owner for ref in _meta(rs.metadata).owner_references or [])
        ]

    wait_for(lambda: bool(owned_replicasets()), 30, "the Deployment's ReplicaSet")
    # The ReplicaSet controller creates the pods through admission, so they passed `restricted`
    # and ServiceAccount admission; with no scheduler or kubelet they stay Pending on no node.
    wait_for(
        lambda: len(core.list_namespaced_pod(namespace, label_selector="app=web").items) == 2,
        30,
        "the ReplicaSet's two pods",
    )
    for pod in core.list_namespaced_pod(namespace, label_selector="app=web").items:
        _assert_never_started(pod)
        assert pod.spec is not None and pod.spec.service_account_name == "default"


def test_garbage_collector_cascades_to_owned_objects(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    reference = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="owner", uid=_uid(owner.metadata)
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="owned", owner_references=[reference])
        ),
    )
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        lambda: _status_of(lambda: core.read_namespaced_config_map("owned", namespace)) == 404,
        30,
        "the garbage collector to delete the owned ConfigMap",
    )


def test_namespace_with_resource_quota_accepts_creates(
    api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="quota"),
            spec=client.V1ResourceQuotaSpec(hard={"secrets": "1"}),
        ),
    )

    def quota_has_status() -> bool:
        status = core.read_namespaced_resource_quota("quota", namespace).status
        return status is not None and bool(status.hard)

    # Until the resourcequota controller has written a status, admission refuses creates of
    # what the quota counts ("status unknown for quota"): wait for it, as a real client retries.
    wait_for(quota_has_status, 30, "the quota's status from kube-controller-manager")
    core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="a"))
    )
    with pytest.raises(ApiException) as exceeded:
        core.create_namespaced_secret(
            namespace, client.V1Secret(metadata=client.V1ObjectMeta(name="b"))
        )
    assert exceeded.value.status == 403
    assert "exceeded quota: quota" in _message(exceeded.value)


def test_user_with_namespaced_rbac_is_refused_elsewhere(
    kube: KubeTestbed, api: client.ApiClient, namespace: str, k8s_name: str
) -> None:
    other = f"{k8s_name}-other"
    kube.create_namespace(other, labels=RESTRICTED_LABELS, wait_for_service_account=False)
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmaps"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "list", "create"]
                )
            ],
        ),
    )
    # Bound to the group, not the user: proves the kubeconfig's certificate carries its groups.
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="tenant-a"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="configmaps"
            ),
            subjects=[
                client.RbacV1Subject(
                    api_group="rbac.authorization.k8s.io", kind="Group", name="tenant-a"
                )
            ],
        ),
    )
    # Through the kubeconfig file, as kopf and subprocesses will use it.
    kubeconfig = kube.user_kubeconfig("alice", groups=["tenant-a"])
    alice_api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), persist_config=False
    )
    with alice_api:
        alice = client.CoreV1Api(alice_api)
        # RBAC is read from an informer cache: the binding takes effect within milliseconds.
        wait_for(
            lambda: _status_of(lambda: alice.list_namespaced_config_map(namespace)) == 200,
            10,
            "alice's RoleBinding to take effect",
        )
        mine = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="mine"))
        assert _status_of(lambda: alice.create_namespaced_config_map(namespace, mine)) == 200
        refused: list[Callable[[], object]] = [
            lambda: alice.list_namespaced_config_map(other),
            lambda: alice.create_namespaced_config_map(other, mine),
            lambda: alice.list_config_map_for_all_namespaces(),
            lambda: alice.list_namespaced_secret(namespace),
            lambda: alice.list_namespace(),
        ]
        for call in refused:
            with pytest.raises(ApiException) as denied:
                call()
            assert denied.value.status == 403
            assert 'forbidden: User "alice" cannot' in _message(denied.value)
