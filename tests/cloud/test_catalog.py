"""The in-cluster catalog against a real kube-apiserver, served over real gRPC and Connect.

Two Tenants with their IdP groups, their Apps in their namespaces (one app name in both);
the catalog follows Apps and Tenants with a user holding exactly the ClusterRole platform
render gives the catalog, and serves them on free ports with the runtime's authentication:
static tokens and OIDC JWTs signed by a test key (groups → tenants: the Tenants' groups as
they change, a tenant's own name, AEROGRID_GROUP_TENANTS). Statuses are written by the test,
standing in for the operator. No operator and no app runs here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc import aio
from jwt.algorithms import RSAAlgorithm
from kubernetes import client

from aerogrid import metrics
from aerogrid.client import GridClient, GridClientError
from aerogrid.server.auth import Authenticator, is_loopback
from aerogrid.server.grpc_standard import LIVENESS
from aerogrid.server.identity import Caller
from aerogrid.v1 import catalog_pb2, catalog_pb2_grpc, grid_pb2, grid_pb2_grpc
from aerogrid_cloud.catalog import (
    CatalogServer,
    ClusterCatalog,
    catalog_auth_settings,
    start_server,
)
from aerogrid_cloud.crds import tenant_crd
from aerogrid_cloud.kube import (
    APPS,
    TENANTS,
    CrdMissing,
    KubeError,
    ObjectList,
    ResourceType,
    connect,
)
from aerogrid_cloud.model import APP_KIND, TENANT_KIND, AppSpec, TenantSpec, namespace_for, resource
from aerogrid_cloud.render import platform_objects
from aerogrid_cloud.settings import PlatformSettings
from cloud.test_promote import CRDS, install_app_crd
from support.brokers import free_port
from support.grpcurl import Grpcurl, grpcurl_binary
from support.k8s import KubeTestbed, wait_for
from support.kube_blocking import BlockingKube
from support.workspace import eventually

ISSUER = "https://idp.aerogrid.test/"
AUDIENCE = "aerogrid"
CLUSTER_ROLES = ResourceType(
    "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False
)
CLUSTER_ROLE_BINDINGS = ResourceType(
    "rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False
)


def catalog_rules() -> list[dict[str, Any]]:
    """All the catalog may do in the cluster: its ClusterRole's rules, as platform renders it."""
    (role,) = [
        o
        for o in platform_objects(PlatformSettings())
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "aerogrid-catalog"
    ]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


@dataclass
class Tenants:
    a: str
    b: str
    #: Tenant a's and b's IdP groups (their spec.groups, as the fixture creates them).
    group_a: str
    group_b: str
    tokens_file: Path
    jwks_file: Path
    key: rsa.RSAPrivateKey
    catalog_kubeconfig: Path

    def jwt(self, groups: list[str], subject: str = "bea") -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "exp": now + 300}
        return jwt.encode({**claims, "groups": groups}, self.key, "RS256", headers={"kid": "k1"})

    def env(self) -> dict[str, str]:
        """The catalog's auth settings as its Deployment sets them (AEROGRID_* variables)."""
        return {
            "AEROGRID_AUTH_TOKENS_FILE": str(self.tokens_file),
            "AEROGRID_OIDC_ISSUER": ISSUER,
            "AEROGRID_OIDC_AUDIENCE": AUDIENCE,
            "AEROGRID_OIDC_JWKS_FILE": str(self.jwks_file),
            "AEROGRID_GROUP_TENANTS": json.dumps({"grp-b": self.b}),
        }


def app_object(name: str, tenant: str) -> dict[str, Any]:
    spec = AppSpec(
        files={"app.py": f"import aerogrid\napp = aerogrid.App('{name}')\n"},
        runtime_version="0.1.0",
    )
    return resource(APP_KIND, name, spec, namespace=namespace_for(tenant))


def set_groups(admin: BlockingKube, tenant: str, groups: list[str]) -> None:
    """Apply Tenant `tenant` with IdP groups `groups` (what the platform admin does)."""
    spec = TenantSpec(display_name=tenant.title(), groups=groups)
    admin.apply(TENANTS, resource(TENANT_KIND, tenant, spec), field_manager="aerogrid-tests")


def install_tenant_crd(admin: BlockingKube) -> None:
    """The Tenant CRD as the platform renders it, served (as install_app_crd the App CRD)."""
    admin.apply(CRDS, tenant_crd(), field_manager="aerogrid-tests")

    def lists() -> bool:
        try:
            admin.list(TENANTS)
        except (CrdMissing, KubeError):  # not served yet
            return False
        return True

    wait_for(lists, 30, "the apiserver to serve tenants.aerogrid.io")


def set_status(
    admin: BlockingKube, tenant: str, name: str, phase: str, message: str = "", endpoint: str = ""
) -> None:
    """What the operator would write (the test stands in for it)."""
    admin.merge_patch(
        APPS,
        name,
        {
            "status": {
                "phase": phase,
                "message": message,
                "endpoint": endpoint,
                "observedGeneration": 1,
            }
        },
        namespace=namespace_for(tenant),
        status=True,
    )


@pytest.fixture(scope="module")
def tenants(kube: KubeTestbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    """Tenants a and b with Apps in several phases; a catalog user; tokens and a JWKS."""
    folder = tmp_path_factory.mktemp("catalog")
    suffix = uuid.uuid4().hex[:6]
    a, b = f"ca{suffix}", f"cb{suffix}"
    group_a, group_b = f"trading-desk-{suffix}", f"risk-desk-{suffix}"
    with BlockingKube.connect(kube.admin_kubeconfig) as admin:
        install_app_crd(admin)
        install_tenant_crd(admin)
        for tenant, group in ((a, group_a), (b, group_b)):
            kube.create_namespace(namespace_for(tenant), wait_for_service_account=False)
            set_groups(admin, tenant, [group])
        for name, tenant in (("orders", a), ("prices", a), ("orders", b), ("risk", b)):
            admin.apply(APPS, app_object(name, tenant), field_manager="aerogrid-tests")
        set_status(admin, a, "orders", "Running", endpoint=f"orders.{a}.aerogrid.test:443")
        set_status(admin, a, "prices", "Failed", "image build failed: no nosuchpkg")
        set_status(admin, b, "orders", "Building", "building the image")
        set_status(admin, b, "risk", "Stopped")
        role = f"aerogrid-catalog-{suffix}"
        admin.apply(
            CLUSTER_ROLES,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": catalog_rules(),
            },
            field_manager="aerogrid-tests",
        )
        admin.apply(
            CLUSTER_ROLE_BINDINGS,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": role}
                ],
            },
            field_manager="aerogrid-tests",
        )
        tokens = folder / "tokens.json"
        tokens.write_text(
            json.dumps(
                {
                    "token-a": {"subject": "alice", "tenants": [a]},
                    "token-ab": {"subject": "ops", "tenants": [a, b]},
                }
            )
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks = folder / "jwks.json"
        public = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwks.write_text(
            json.dumps({"keys": [{**public, "kid": "k1", "alg": "RS256", "use": "sig"}]})
        )
        try:
            yield Tenants(a, b, group_a, group_b, tokens, jwks, key, kube.user_kubeconfig(role))
        finally:
            with kube.api_client() as api:
                for tenant in (a, b):
                    admin.delete(TENANTS, tenant)
                    client.CoreV1Api(api).delete_namespace(namespace_for(tenant))
                rbac = client.RbacAuthorizationV1Api(api)
                rbac.delete_cluster_role_binding(role)
                rbac.delete_cluster_role(role)


@pytest.fixture(scope="module")
def admin(kube: KubeTestbed) -> Iterator[BlockingKube]:
    with BlockingKube.connect(kube.admin_kubeconfig) as admin_kube:
        yield admin_kube


def outside_address() -> str | None:
    """This machine's address on a network interface (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture
async def served(tenants: Tenants) -> AsyncIterator[CatalogServer]:
    """The catalog as the catalog user, on free ports of every interface."""
    catalog = ClusterCatalog(connect(tenants.catalog_kubeconfig))
    server = await start_server(
        catalog,
        Authenticator(
            catalog_auth_settings(tenants.env()), tenants_of_group=catalog.tenants_of_group
        ),
        host="0.0.0.0",
        port=0,
        http_port=0,
    )
    try:
        assert await catalog.wait_synced(30), catalog.last_error
        yield server
    finally:
        await server.stop()


def listed(apps: list[Any], tenants: Tenants) -> list[tuple[str, str, str, str, str]]:
    """(tenant letter, name, status, endpoint, message) of the test's own apps."""
    letter = {tenants.a: "a", tenants.b: "b"}
    return sorted(
        (letter[x.tenant], x.name, x.status, getattr(x, "endpoint", ""), x.message)
        for x in apps
        if x.tenant in letter
    )


async def test_each_caller_sees_only_its_tenants_apps(
    served: CatalogServer, tenants: Tenants
) -> None:
    target = f"127.0.0.1:{served.grpc_port}"
    a = tenants.a
    async with GridClient(target, token="token-a") as alice:
        assert listed(await alice.apps(), tenants) == [
            ("a", "orders", "running", "", ""),
            ("a", "prices", "failed", "", "image build failed: no nosuchpkg"),
        ]
        assert {x.tenant for x in await alice.apps()} == {a}
    async with GridClient(target, token=tenants.jwt(["grp-b", "unrelated"])) as bea:
        assert listed(await bea.apps(), tenants) == [
            ("b", "orders", "starting", "", "building the image"),
            ("b", "risk", "stopped", "", ""),
        ]
    async with GridClient(target, token="token-ab") as ops:
        assert [(t, n) for t, n, *_ in listed(await ops.apps(), tenants)] == [
            ("a", "orders"),
            ("a", "prices"),
            ("b", "orders"),
            ("b", "risk"),
        ]

    # The same over Connect (what Excel's add-in speaks), with the endpoint of each app.
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{served.http_port}/aerogrid.v1.CatalogService/ListApps",
            content=b"{}",
            headers={"content-type": "application/json", "authorization": "Bearer token-a"},
        )
    assert answer.status_code == 200, answer.text
    apps = [x for x in answer.json()["apps"] if x["tenant"] == a]
    assert [(x["name"], x["status"], x.get("endpoint", "")) for x in apps] == [
        ("orders", "APP_STATUS_RUNNING", f"orders.{a}.aerogrid.test:443"),
        ("prices", "APP_STATUS_FAILED", ""),
    ]


async def apps_of_groups(target: str, tenants: Tenants, groups: list[str]) -> list[tuple[str, str]]:
    """(tenant letter, name) of the test's apps a JWT with `groups` lists."""
    async with GridClient(target, token=tenants.jwt(groups)) as caller:
        return [(t, n) for t, n, *_ in listed(await caller.apps(), tenants)]


async def test_the_tenants_groups_are_followed_live(
    served: CatalogServer, tenants: Tenants, admin: BlockingKube
) -> None:
    """A member of a Tenant's group (spec.groups) sees its apps, as the change comes."""
    target = f"127.0.0.1:{served.grpc_port}"
    a, b = tenants.a, tenants.b
    a_apps, b_apps = [("a", "orders"), ("a", "prices")], [("b", "orders"), ("b", "risk")]
    assert await apps_of_groups(target, tenants, [tenants.group_a]) == a_apps
    # Another tenant's group sees nothing of a; a group that names no tenant sees nothing.
    assert await apps_of_groups(target, tenants, [tenants.group_b]) == b_apps
    assert await apps_of_groups(target, tenants, ["nobodys-desk"]) == []
    # A group may belong to several tenants: its members see the union.
    shared = f"shared-{a}"
    try:
        for tenant, group in ((a, tenants.group_a), (b, tenants.group_b)):
            set_groups(admin, tenant, [group, shared])

        async def shared_sees_both() -> bool:
            return await apps_of_groups(target, tenants, [shared]) == a_apps + b_apps

        await eventually(shared_sees_both, "the shared group's members see both tenants", 10)
        # The group leaves tenant a: its members no longer see a's apps (no restart).
        set_groups(admin, a, [shared])

        async def group_a_sees_nothing() -> bool:
            return await apps_of_groups(target, tenants, [tenants.group_a]) == []

        await eventually(group_a_sees_nothing, "the group removed from tenant a sees nothing", 10)
        assert await apps_of_groups(target, tenants, [shared]) == a_apps + b_apps
    finally:
        for tenant, group in ((a, tenants.group_a), (b, tenants.group_b)):
            set_groups(admin, tenant, [group])

    async def restored() -> bool:
        return await apps_of_groups(target, tenants, [shared]) == []

    await eventually(restored, "the Tenants' groups as the fixture made them", 10)


async def _next(stream: Any) -> catalog_pb2.WatchAppsResponse:
    message: catalog_pb2.WatchAppsResponse = await asyncio.wait_for(stream.read(), 15)
    return message


async def test_watch_apps_streams_status_changes_and_deletions(
    served: CatalogServer, tenants: Tenants, admin: BlockingKube
) -> None:
    a, b = tenants.a, tenants.b
    async with aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        stream = stub.WatchApps(
            catalog_pb2.WatchAppsRequest(), metadata=(("authorization", "Bearer token-a"),)
        )
        initial = await _next(stream)
        assert initial.initial
        assert sorted(x.name for x in initial.apps if x.tenant == a) == ["orders", "prices"]
        assert {x.tenant for x in initial.apps} == {a}

        # Tenant b's change is not news for alice; tenant a's is, and it comes next.
        set_status(admin, b, "risk", "Running")
        set_status(admin, a, "prices", "Running", endpoint=f"prices.{a}.aerogrid.test:443")
        change = await _next(stream)
        assert not change.initial and not change.removed
        assert [(x.tenant, x.name, x.status, x.endpoint) for x in change.apps] == [
            (a, "prices", catalog_pb2.APP_STATUS_RUNNING, f"prices.{a}.aerogrid.test:443")
        ]

        admin.delete(APPS, "orders", namespace_for(b))  # b's "orders": not alice's
        admin.delete(APPS, "prices", namespace_for(a))
        gone = await _next(stream)
        assert list(gone.removed) == ["prices"] and not gone.apps
        stream.cancel()

    # Put things back for the other tests of this module.
    admin.apply(APPS, app_object("prices", a), field_manager="aerogrid-tests")
    set_status(admin, a, "prices", "Failed", "image build failed: no nosuchpkg")
    admin.apply(APPS, app_object("orders", b), field_manager="aerogrid-tests")
    set_status(admin, b, "orders", "Building", "building the image")
    set_status(admin, b, "risk", "Stopped")


async def test_unauthenticated_callers_are_refused(served: CatalogServer, tenants: Tenants) -> None:
    # As deployed: anonymous callers are refused, loopback ones too (behind the sidecar every
    # peer is loopback), and so is a token nobody issued.
    for token in (None, "forged"):
        async with GridClient(f"127.0.0.1:{served.grpc_port}", token=token) as caller:
            with pytest.raises(GridClientError) as info:
                await caller.apps()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED

    # Even with anonymous loopback access allowed (AEROGRID_REQUIRE_AUTH=0, a desktop), a
    # caller from another machine needs a token: over gRPC and over Connect.
    address = outside_address()
    catalog = ClusterCatalog(connect(tenants.catalog_kubeconfig))
    relaxed = catalog_auth_settings({**tenants.env(), "AEROGRID_REQUIRE_AUTH": "0"})
    server = await start_server(
        catalog,
        Authenticator(relaxed),
        host="0.0.0.0",
        port=0,
        http_port=0,
        # No network interface here: a peer check that finds no one local stands in for one.
        peer_is_loopback=is_loopback if address else (lambda peer: False),
    )
    try:
        assert await catalog.wait_synced(30)
        if address is not None:
            async with GridClient(f"127.0.0.1:{server.grpc_port}") as local:
                assert {tenants.a, tenants.b} <= {x.tenant for x in await local.apps()}
        host = address or "127.0.0.1"
        async with GridClient(f"{host}:{server.grpc_port}") as anonymous:
            with pytest.raises(GridClientError) as info:
                await anonymous.apps()
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert "missing bearer token" in info.value.message
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"http://{host}:{server.http_port}/aerogrid.v1.CatalogService/ListApps",
                content=b"{}",
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == 401
        assert answer.json()["code"] == "unauthenticated"
        async with GridClient(f"{host}:{server.grpc_port}", token="token-a") as alice:
            assert {x.tenant for x in await alice.apps()} == {tenants.a}
    finally:
        await server.stop()


async def test_grids_are_not_served_here_and_say_where(
    served: CatalogServer, tenants: Tenants
) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        stub = grid_pb2_grpc.GridServiceStub(channel)
        metadata = (("authorization", "Bearer token-a"),)
        with pytest.raises(aio.AioRpcError) as info:
            await stub.ListGrids(grid_pb2.ListGridsRequest(app="orders"), metadata=metadata)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert f"at orders.{tenants.a}.aerogrid.test:443" in (info.value.details() or "")
        assert f"x-aerogrid-app: orders and x-aerogrid-tenant: {tenants.a}" in (
            info.value.details() or ""
        )
        # Another tenant's app is as unknown as one that does not exist: same code, same
        # message (names cannot be probed), counted as a cross-tenant refusal.
        answers = []
        before = cross_tenant_refusals()
        for app in ("risk", "nosuchapp"):
            with pytest.raises(aio.AioRpcError) as info:
                stream = stub.Subscribe(
                    grid_pb2.SubscribeRequest(app=app, grid="g"), metadata=metadata
                )
                await stream.read()
            answers.append((info.value.code(), (info.value.details() or "").replace(app, "X")))
        assert answers[0][0] == grpc.StatusCode.NOT_FOUND
        assert answers[0] == answers[1]
        assert "no app named 'X' among your tenants' apps" in answers[0][1]
        assert cross_tenant_refusals() == before + 1


def cross_tenant_refusals() -> float:
    sample = metrics.REGISTRY.get_sample_value(
        "aerogrid_auth_failures_total", {"reason": "cross_tenant"}
    )
    return sample or 0.0


async def test_metrics_need_a_token(served: CatalogServer) -> None:
    # Behind the sidecar every peer is loopback, so loopback alone is not enough here.
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.http_port}") as http:
        refused = await http.get("/metrics")
        assert refused.status_code == 401 and "aerogrid_" not in refused.text
        answer = await http.get("/metrics", headers={"authorization": "Bearer token-a"})
        assert answer.status_code == 200 and "aerogrid_auth_failures_total" in answer.text


async def test_health_and_readiness(served: CatalogServer) -> None:
    async with httpx.AsyncClient() as http:
        base = f"http://127.0.0.1:{served.http_port}"
        assert (await http.get(f"{base}/healthz")).status_code == 200
        assert (await http.get(f"{base}/readyz")).status_code == 200
    await served.catalog.close()
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{base}/readyz")).status_code == 503


async def test_grpcurl_reflection_and_grpc_health(served: CatalogServer) -> None:
    """grpcurl needs no .proto files (reflection, unauthenticated: the schema is public)
    and no token for health (probes have none); the catalog's calls still need one."""
    grpcurl = Grpcurl(grpcurl_binary(), f"127.0.0.1:{served.grpc_port}")
    listed = (await asyncio.to_thread(grpcurl.ok, "list")).split()
    assert {"aerogrid.v1.CatalogService", "grpc.health.v1.Health"} <= set(listed)
    assert "rpc ListApps" in await asyncio.to_thread(
        grpcurl.ok, "describe", "aerogrid.v1.CatalogService"
    )
    refused = await asyncio.to_thread(grpcurl.run, "aerogrid.v1.CatalogService/ListApps")
    assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
    with_token = Grpcurl(
        grpcurl.binary, grpcurl.address, ("-plaintext", "-H", "authorization: Bearer token-a")
    )
    (answer,) = await asyncio.to_thread(with_token.call, "aerogrid.v1.CatalogService/ListApps")
    assert {"orders", "prices"} <= {app["name"] for app in answer["apps"]}
    for service in ("", "aerogrid.v1.CatalogService", LIVENESS):
        assert await asyncio.to_thread(grpcurl.health, service) == "SERVING", service

    await served.catalog.close()  # no longer ready, as /readyz says

    async def not_serving() -> bool:
        return await asyncio.to_thread(grpcurl.health, "") == "NOT_SERVING"

    await eventually(not_serving, "the closed catalog NOT_SERVING", timeout=5)
    assert await asyncio.to_thread(grpcurl.health, LIVENESS) == "SERVING"


def test_anonymous_loopback_only_when_asked() -> None:
    assert not catalog_auth_settings({}).allow_anonymous_loopback
    assert catalog_auth_settings({"AEROGRID_REQUIRE_AUTH": "0"}).allow_anonymous_loopback


async def test_python_m_catalog_serves_and_stops_on_sigterm(tenants: Tenants) -> None:
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aerogrid_cloud.catalog",
            *("--host", "127.0.0.1", "--port", str(grpc_port), "--http-port", str(http_port)),
            *("--kubeconfig", str(tenants.catalog_kubeconfig)),
        ],
        env={**os.environ, **tenants.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                try:
                    return (
                        await http.get(f"http://127.0.0.1:{http_port}/readyz")
                    ).status_code == 200
                except httpx.TransportError:
                    return False

            deadline = time.monotonic() + 30
            while not await ready():
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "the catalog did not get ready"
                await asyncio.sleep(0.1)
        async with GridClient(f"127.0.0.1:{grpc_port}", token="token-a") as alice:
            assert {x.name for x in await alice.apps()} == {"orders", "prices"}
        # The Tenants' groups count there too (the catalog's Authenticator asks its view).
        assert await apps_of_groups(f"127.0.0.1:{grpc_port}", tenants, [tenants.group_a]) == [
            ("a", "orders"),
            ("a", "prices"),
        ]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def test_an_expired_watch_is_followed_by_a_fresh_list(
    tenants: Tenants, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first lists (of Apps, of Tenants) answer a resourceVersion long compacted away: the
    watches from them get 410 Gone from the real API server, and the catalog lists again
    instead of drifting."""
    catalog = ClusterCatalog(connect(tenants.catalog_kubeconfig))
    kube = catalog.watcher.kube
    assert catalog.tenant_watcher.kube is kube
    real_list = kube.list
    calls: list[str] = []

    async def list_once_stale(
        rtype: ResourceType, namespace: str | None = None, **kwargs: Any
    ) -> ObjectList:
        found = await real_list(rtype, namespace, **kwargs)
        calls.append(rtype.plural)
        return ObjectList(found.items, "1") if calls.count(rtype.plural) == 1 else found

    monkeypatch.setattr(kube, "list", list_once_stale)
    await catalog.start()
    try:
        assert await catalog.wait_synced(30)
        deadline = time.monotonic() + 15
        while calls.count("apps") < 2 or calls.count("tenants") < 2:
            assert time.monotonic() < deadline, "the catalog did not list again after 410 Gone"
            await asyncio.sleep(0.05)
        caller = Caller("alice", frozenset({tenants.a}))
        listed_apps = await catalog.list_apps(catalog_pb2.ListAppsRequest(), caller)
        assert sorted(x.name for x in listed_apps.apps) == ["orders", "prices"]
        assert tenants.a in catalog.tenants_of_group(tenants.group_a)
    finally:
        await catalog.close()
