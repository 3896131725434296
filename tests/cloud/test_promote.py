"""Promote: an app folder → an App resource, and the cloud commands around it.

The first half needs no cluster: what `build_app` reads from a folder, what it leaves out
and refuses, and that `aerogrid promote --dry-run -o yaml` prints a valid App without
touching one. The second half runs against the real kube-apiserver of the `kube` fixture
with the App CRD from `aerogrid_cloud.crds`: promote applies under a developer's own
kubeconfig with only the RBAC below, `--wait` follows the status, re-promote is
idempotent, stop/start/delete work, a user without rights gets one clear line.

No operator runs in these tests: a stand-in (`StandInOperator`) writes the App's status
the way the operator does (phases with observedGeneration) so `--wait` has something to
follow. The operator's own behaviour is tested in the operator's tests.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes import client

import aerogrid
from aerogrid.server.app_service import AppService, HostedApp
from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.grpc_server import add_services
from aerogrid.server.hub import GridHub
from aerogrid.v1 import catalog_pb2
from aerogrid_cloud import cloud_cli
from aerogrid_cloud.crds import app_crd
from aerogrid_cloud.kube import (
    APPS,
    ConfigError,
    CrdMissing,
    Gone,
    Kube,
    KubeError,
    ResourceType,
    Unreachable,
    WatchEvent,
    connect,
)
from aerogrid_cloud.model import MAX_FILES_BYTES, AppSpec, namespace_for
from aerogrid_cloud.model import tenant_of as tenant_of_namespace
from aerogrid_cloud.promote import (
    PromoteError,
    build_app,
    declared_app,
    read_app_folder,
)
from support.k8s import KubeTestbed, wait_for
from support.kube_blocking import BlockingKube

APP_PY = """\
import aerogrid

app = aerogrid.App('{name}', broker='localhost:9092')
prices = app.Grid('prices', columns=['bid'])
"""


def make_app(folder: Path, name: str = "shop", **files: str) -> Path:
    """An app folder: app.py declaring `name`, requirements.txt, and `files`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP_PY.format(name=name))
    (folder / "requirements.txt").write_text("# extra packages\nhttpx==0.28.1\n")
    for file_name, text in files.items():
        (folder / file_name).write_text(text)
    return folder


def invoke(command: Any, args: Sequence[str], **env: str) -> Result:
    return CliRunner().invoke(command, list(args), env=env or None)


# -- reading a folder (no cluster) --------------------------------------------------------------


def test_build_app_reads_the_folder_and_names_the_app_after_its_declaration(
    tmp_path: Path,
) -> None:
    folder = make_app(tmp_path / "whatever-folder-name", "shop", **{"rates.csv": "usd,1\n"})
    for junk in (".env", "test_app.py", "conftest.py", "notes.txt~", "module.pyc"):
        (folder / junk).write_text("x = 1\n")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0\1")
    (folder / ".venv" / "lib").mkdir(parents=True)
    (folder / ".venv" / "lib" / "site.py").write_text("import os\n")
    (folder / "tests").mkdir()
    (folder / "tests" / "test_more.py").write_text("def test(): pass\n")
    (folder / "docs").mkdir()
    (folder / "docs" / "readme.md").write_text("# docs\n")

    found = read_app_folder(folder)
    assert found.name == "shop"
    assert sorted(found.files) == ["app.py", "rates.csv", "requirements.txt"]
    assert set(found.skipped) == {
        ".env",
        ".venv/",
        "__pycache__/",
        "conftest.py",
        "docs/",
        "module.pyc",
        "notes.txt~",
        "test_app.py",
        "tests/",
    }

    app = build_app(folder, "acme")
    assert app["apiVersion"] == "aerogrid.io/v1alpha1" and app["kind"] == "App"
    assert app["metadata"]["name"] == "shop"
    assert app["metadata"]["namespace"] == namespace_for("acme") == "aerogrid-acme"
    assert app["metadata"]["labels"] == {"aerogrid.io/app": "shop", "aerogrid.io/tenant": "acme"}
    spec = AppSpec.model_validate(app["spec"])
    assert spec.runtime_version == version("aerogrid")
    assert spec.requirements == ["httpx==0.28.1"]
    assert spec.files["rates.csv"] == "usd,1\n"
    # stop/start own spec.stopped, scale spec.replicas: promote sets neither (see
    # kube.STATE_MANAGER, SCALE_MANAGER).
    assert "stopped" not in app["spec"] and "replicas" not in app["spec"]
    # The path of app.py itself works as well as its folder.
    assert build_app(folder / "app.py", "acme") == app


@pytest.mark.parametrize(
    ("source", "name", "tenant"),
    [
        ("import aerogrid\napp = aerogrid.App('a1')\n", "a1", None),
        ("import aerogrid as ag\napp = ag.App(name='b-2', tenant='acme')\n", "b-2", "acme"),
        ("from aerogrid import App as A\napp = A('c3', broker=X)\n", "c3", None),
        ("from aerogrid import App\n\ndef make():\n    return App('inside')\n", "inside", None),
    ],
)
def test_the_declared_name_is_found_without_running_the_code(
    source: str, name: str, tenant: str | None
) -> None:
    found = declared_app(source)
    assert (found.name, found.tenant) == (name, tenant)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("import aerogrid\napp = aerogrid.App('Orders_App')\n", "'Orders_App': lower-case"),
        ("import aerogrid\napp = aerogrid.App('x' * 3)\n", "string literal"),
        ("import aerogrid\nNAME = 'x'\napp = aerogrid.App(NAME)\n", "string literal"),
        ("import aerogrid\nprint('no app')\n", "declares no app"),
        ("import faust\napp = faust.App('x')\n", "declares no app"),
        ("import aerogrid\na = aerogrid.App('a')\nb = aerogrid.App('b')\n", "2 apps (lines 2, 3)"),
        ("import aerogrid\napp = aerogrid.App('a'\n", "line 2: syntax error"),
        (f"import aerogrid\napp = aerogrid.App('{'a' * 64}')\n", "at most 63"),
    ],
)
def test_bad_declarations_are_refused_clearly(source: str, message: str) -> None:
    with pytest.raises(PromoteError, match=message.replace("(", r"\(").replace(")", r"\)")):
        declared_app(source)


def test_folders_that_cannot_ship_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PromoteError, match=r"no app\.py"):
        read_app_folder(tmp_path)
    with pytest.raises(PromoteError, match="is not a folder"):
        read_app_folder(tmp_path / "missing")

    modules = make_app(tmp_path / "modules")
    (modules / "helpers").mkdir()
    (modules / "helpers" / "__init__.py").write_text("")
    with pytest.raises(PromoteError, match=r"helpers holds Python code.*next to app\.py"):
        read_app_folder(modules)

    binary = make_app(tmp_path / "binary")
    (binary / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(PromoteError, match=r"logo\.png is not UTF-8 text"):
        read_app_folder(binary)


def test_the_size_limit_of_the_model_is_reported(tmp_path: Path) -> None:
    folder = make_app(tmp_path / "big", **{"data.json": "x" * MAX_FILES_BYTES})
    with pytest.raises(PromoteError, match=f"at most {MAX_FILES_BYTES} fit in a ConfigMap"):
        build_app(folder, "acme")


def test_tenant_names_and_a_declared_tenant_must_agree(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "app.py").write_text("import aerogrid\napp = aerogrid.App('t', tenant='acme')\n")
    assert build_app(folder, "acme")["metadata"]["namespace"] == "aerogrid-acme"
    with pytest.raises(
        PromoteError, match="declares tenant 'acme' but you promote to tenant 'globex'"
    ):
        build_app(folder, "globex")
    with pytest.raises(PromoteError, match="tenant name 'Globex'"):
        build_app(folder, "Globex")


def test_tenant_of_namespace_inverts_namespace_for() -> None:
    assert tenant_of_namespace(namespace_for("acme")) == "acme"
    assert tenant_of_namespace("default") is None
    assert tenant_of_namespace("aerogrid-") is None


# -- the CLI without a cluster ---------------------------------------------------------------------


def test_dry_run_prints_a_valid_app_and_touches_no_cluster(tmp_path: Path) -> None:
    folder = make_app(tmp_path / "shop")
    # A kubeconfig that cannot work: the dry run must not need one.
    no_cluster = {"KUBECONFIG": str(tmp_path / "absent")}
    result = invoke(
        cloud_cli.promote,
        [str(folder), "--tenant", "acme", "--dry-run", "-o", "yaml", "--env", "LEVEL=debug"],
        **no_cluster,
    )
    assert result.exit_code == 0, result.output
    app = yaml.safe_load(result.stdout)
    assert app == build_app(folder, "acme", env={"LEVEL": "debug"})
    AppSpec.model_validate(app["spec"])
    # The files read as written (block scalars), not as one escaped line.
    assert "    app.py: |\n      import aerogrid\n" in result.stdout

    as_json = invoke(
        cloud_cli.promote,
        [str(folder), "--tenant", "acme", "--dry-run", "-o", "json"],
        **no_cluster,
    )
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == build_app(folder, "acme")


def test_dry_run_takes_the_tenant_from_a_workspace_target(tmp_path: Path) -> None:
    (tmp_path / "aerogrid.toml").write_text(
        '[apps.shop]\npath = "shop"\n\n[cloud.targets.prod]\ntenant = "acme"\ncontext = "prod"\n'
    )
    folder = make_app(tmp_path / "shop")
    result = invoke(cloud_cli.promote, [str(folder), "--target", "prod", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["metadata"]["namespace"] == "aerogrid-acme"
    unknown = invoke(cloud_cli.promote, [str(folder), "--target", "staging", "--dry-run"])
    assert unknown.exit_code == 1
    assert "no [cloud.targets.staging]" in unknown.stderr and "targets: prod" in unknown.stderr


def _one_error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return lines[0]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    folder = make_app(tmp_path / "shop")
    assert "which tenant?" in _one_error_line(invoke(cloud_cli.promote, [str(folder), "--dry-run"]))
    assert "goes with --dry-run" in _one_error_line(
        invoke(cloud_cli.promote, [str(folder), "--tenant", "acme", "-o", "yaml"])
    )
    assert "has no app.py" in _one_error_line(
        invoke(cloud_cli.promote, [str(tmp_path), "--tenant", "acme", "--dry-run"])
    )
    missing = tmp_path / "nowhere" / "config"
    assert f"no kubeconfig at {missing}" in _one_error_line(
        invoke(cloud_cli.promote, [str(folder), "--tenant", "acme", "--kubeconfig", str(missing)])
    )
    assert "add --cloud" in _one_error_line(invoke(cloud_cli.stop, ["shop", "--tenant", "acme"]))
    assert "add --cloud" in _one_error_line(invoke(cloud_cli.scale, ["shop", "2", "--tenant", "x"]))
    assert "go with --cloud" in _one_error_line(invoke(cloud_cli.apps, ["--tenant", "acme"]))


def _kubeconfig(path: Path, server: str, contexts: Sequence[str] = ("here",)) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": n, "context": {"cluster": "c", "user": "u"}} for n in contexts
                ],
                "current-context": contexts[0],
            }
        )
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unknown_context_and_refused_connection_are_explained(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "config", f"http://127.0.0.1:{free_port()}", ["dev", "prod"])
    with pytest.raises(ConfigError, match=r"no context 'staging' in .*\(contexts: dev, prod\)"):
        connect(config, "staging")
    with (
        BlockingKube(connect(config, "prod", timeout=5)) as kube,
        pytest.raises(Unreachable) as info,
    ):
        kube.list(APPS, "aerogrid-acme")
    assert str(info.value).startswith("cannot reach the cluster at http://127.0.0.1:")
    assert str(info.value).endswith("(context prod): connection refused")

    line = _one_error_line(
        invoke(cloud_cli.apps, ["--cloud", "--tenant", "acme", "--kubeconfig", str(config)])
    )
    assert "connection refused" in line


@contextmanager
def local_endpoint() -> Iterator[int]:
    """A runtime endpoint serving one app's catalog (its own loop, in a thread): its port."""
    loop = asyncio.new_event_loop()
    hub = GridHub()
    app = aerogrid.App("prices", broker="localhost:1", tenant="desk")
    hub.add_grid("prices", app.Grid("quotes", columns=["bid"]))
    hosted = HostedApp("prices", "desk", status=catalog_pb2.APP_STATUS_RUNNING)
    server = loop.run_until_complete(_start(AppService(hub, [hosted])))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield server[1]
    finally:
        asyncio.run_coroutine_threadsafe(server[0].stop(None), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _start(endpoint: AppService) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    add_services(server, endpoint, Authenticator(AuthSettings()), is_loopback)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_apps_without_cloud_asks_the_local_endpoint() -> None:
    with local_endpoint() as port:
        result = invoke(cloud_cli.apps, ["--endpoint", f"127.0.0.1:{port}"])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            "APP     TENANT  STATUS   GRIDS   MESSAGE",
            "prices  desk    running  quotes",
        ]
        as_json = json.loads(
            invoke(cloud_cli.apps, ["--endpoint", f"127.0.0.1:{port}", "--json"]).stdout
        )
        assert as_json == [
            {
                "app": "prices",
                "tenant": "desk",
                "status": "running",
                "grids": ["quotes"],
                "message": "",
            }
        ]
    line = _one_error_line(invoke(cloud_cli.apps, ["--endpoint", f"127.0.0.1:{port}"]))
    assert "no endpoint answers" in line and "aerogrid dev" in line


# -- against a real kube-apiserver -----------------------------------------------------------------

CRDS = ResourceType(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False
)
ROLES = ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
#: What a developer of a tenant needs to promote, follow, stop, start and delete its apps:
#: nothing outside the tenant's namespace, nothing but Apps inside it.
DEVELOPER_RULES = [
    {
        "apiGroups": ["aerogrid.io"],
        "resources": ["apps"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    }
]


def install_app_crd(admin: BlockingKube) -> None:
    """The App CRD as the platform renders it (aerogrid_cloud.crds), established."""
    crd = app_crd()
    admin.apply(CRDS, crd, field_manager="aerogrid-tests")

    def established() -> bool:
        status = admin.get(CRDS, crd["metadata"]["name"]).get("status", {})
        return any(
            c.get("type") == "Established" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )

    wait_for(established, 30, "the App CRD to be established")
    # Discovery lags the condition a little: wait until Apps can be listed.
    wait_for(lambda: _lists(admin), 30, "the apiserver to serve apps.aerogrid.io")


def _lists(admin: BlockingKube) -> bool:
    try:
        admin.list(APPS, "default")
    except (CrdMissing, KubeError):  # unknown yet, or 429 while its storage initializes
        return False
    return True


def grant_developer(admin: BlockingKube, namespace: str, group: str) -> None:
    """A Role with DEVELOPER_RULES in `namespace`, bound to an identity-provider group."""
    admin.apply(
        ROLES,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "aerogrid-developer", "namespace": namespace},
            "rules": DEVELOPER_RULES,
        },
        field_manager="aerogrid-tests",
    )
    admin.apply(
        ROLE_BINDINGS,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "aerogrid-developers", "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "aerogrid-developer",
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        },
        field_manager="aerogrid-tests",
    )


class StandInOperator:
    """Writes App statuses the way the operator does, so promote has something to follow.

    For each App whose generation it has not observed yet it walks through `script[name]`
    (default: Pending, Deploying, Running), each phase with observedGeneration set, a few
    tens of ms apart. It is not the operator: nothing is deployed.
    """

    DEFAULT = (("Pending", ""), ("Deploying", "rolling out"), ("Running", ""))

    def __init__(self, admin: BlockingKube, namespace: str) -> None:
        self.admin = admin
        self.namespace = namespace
        self.script: dict[str, Sequence[tuple[str, str]]] = {}
        self.writes: list[tuple[str, int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[BaseException] = []
        self._version = ""
        self._listed: list[dict[str, Any]] = []

    def __enter__(self) -> StandInOperator:
        # Listed before the test goes on, so no App is created between list and watch.
        listed = self.admin.list(APPS, self.namespace)
        self._version = listed.resource_version
        self._listed = listed.items
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        assert not self.errors, self.errors

    def _run(self) -> None:
        version = self._version
        try:
            for obj in self._listed:
                self._reconcile(obj)
            while not self._stop.is_set():
                for event in self.admin.watch(
                    APPS,
                    self.namespace,
                    resource_version=version,
                    timeout_seconds=30,
                    stop=self._stop,
                ):
                    version = event.resource_version or version
                    if event.type in ("ADDED", "MODIFIED"):
                        self._reconcile(event.object)
        except Gone:
            self.errors.append(AssertionError("stand-in watch expired"))
        except KubeError as exc:
            if not self._stop.is_set():
                self.errors.append(exc)

    def _reconcile(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        generation = obj["metadata"]["generation"]
        if obj.get("status", {}).get("observedGeneration") == generation:
            return
        stopped = obj["spec"].get("stopped", False)
        steps = (("Stopped", ""),) if stopped else self.script.get(name, self.DEFAULT)
        for phase, message in steps:
            time.sleep(0.03)
            status = {
                "phase": phase,
                "message": message,
                "observedGeneration": generation,
                "image": f"registry.test/runtime:{obj['spec']['runtimeVersion']}",
                "endpoint": f"{name}.{self.namespace}.aerogrid.test:443"
                if phase == "Running"
                else "",
            }
            self.admin.merge_patch(
                APPS, name, {"status": status}, namespace=self.namespace, status=True
            )
            self.writes.append((name, generation, phase))


@pytest.fixture(scope="module")
def admin(kube: KubeTestbed) -> Iterator[BlockingKube]:
    with BlockingKube.connect(kube.admin_kubeconfig) as admin_kube:
        install_app_crd(admin_kube)
        yield admin_kube


@pytest.fixture
def tenant(kube: KubeTestbed, admin: BlockingKube) -> Iterator[str]:
    """A fresh tenant: its namespace (as the operator makes it) and its developers' Role."""
    name = f"t{uuid.uuid4().hex[:8]}"
    kube.create_namespace(namespace_for(name), wait_for_service_account=False)
    grant_developer(admin, namespace_for(name), f"{name}-developers")
    try:
        yield name
    finally:
        with kube.api_client() as api:
            client.CoreV1Api(api).delete_namespace(namespace_for(name))


def developer(kube: KubeTestbed, tenant: str) -> Path:
    """The kubeconfig of a developer of `tenant` (a member of its developers' group)."""
    return kube.user_kubeconfig(f"dev-{tenant}", [f"{tenant}-developers"])


def cli(command: Any, *args: str) -> Result:
    return invoke(command, args)


def test_promote_applies_with_a_developers_rights_and_follows_status_to_running(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "shop", "shop", **{"rates.csv": "usd,1\n", ".env": "SECRET=1\n"})
    config = str(developer(kube, tenant))
    with StandInOperator(admin, namespace_for(tenant)):
        result = cli(
            cloud_cli.promote, str(folder), "--tenant", tenant, "--kubeconfig", config, "--wait"
        )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"promoting shop to tenant {tenant} (aerogrid-{tenant}, context ")
    assert "app.py, rates.csv, requirements.txt (left out: .env)" in lines[0]
    assert lines[1:] == [
        "  Pending",
        "  Deploying: rolling out",
        "  Running",
        f"app shop is running at shop.aerogrid-{tenant}.aerogrid.test:443",
    ]
    stored = admin.get(APPS, "shop", namespace_for(tenant))
    assert stored["spec"]["files"] == build_app(folder, tenant)["spec"]["files"]
    assert ".env" not in stored["spec"]["files"]
    managers = {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]}
    assert ("aerogrid-promote", "Apply") in managers


def test_wait_reports_a_failure_with_its_message(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "broken", "broken")
    config = str(developer(kube, tenant))
    with StandInOperator(admin, namespace_for(tenant)) as operator:
        operator.script["broken"] = [
            ("Pending", ""),
            ("Building", "building the image for 1 requirement"),
            ("Failed", "image build failed: no matching distribution for nosuchpkg"),
        ]
        result = cli(
            cloud_cli.promote, str(folder), "--tenant", tenant, "--kubeconfig", config, "--wait"
        )
    assert result.exit_code == 1
    assert result.stdout.splitlines()[1:] == [
        "  Pending",
        "  Building: building the image for 1 requirement",
        "  Failed: image build failed: no matching distribution for nosuchpkg",
    ]
    assert result.stderr.strip() == (
        "error: app broken failed: image build failed: no matching distribution for nosuchpkg"
    )


def test_wait_times_out_with_the_last_phase(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "slow", "slow")
    config = str(developer(kube, tenant))
    started = time.monotonic()
    result = cli(
        cloud_cli.promote,
        str(folder),
        *("--tenant", tenant, "--kubeconfig", config, "--wait", "--timeout", "1.5"),
    )
    assert 1.4 < time.monotonic() - started < 10
    line = _one_error_line(result)
    assert "did not settle within 1.5s (last phase: not yet picked up by the operator)" in line


def test_repromote_is_idempotent_and_updates_files(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "shop", "shop", **{"extra.py": "X = 1\n"})
    config = str(developer(kube, tenant))
    namespace = namespace_for(tenant)

    def promote() -> dict[str, Any]:
        result = cli(cloud_cli.promote, str(folder), "--tenant", tenant, "--kubeconfig", config)
        assert result.exit_code == 0, result.output
        return admin.get(APPS, "shop", namespace)

    first = promote()
    again = promote()
    # Nothing changed: not even a write (same resourceVersion), so no rollout.
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 1

    (folder / "app.py").write_text(APP_PY.format(name="shop") + "# v2\n")
    (folder / "extra.py").unlink()
    (folder / "new.py").write_text("Y = 2\n")
    updated = promote()
    assert updated["metadata"]["generation"] == 2
    assert updated["spec"]["files"]["app.py"].endswith("# v2\n")
    # A file gone from the folder is gone from the App: promote owned it, and left it out.
    assert sorted(updated["spec"]["files"]) == ["app.py", "new.py", "requirements.txt"]


def test_stop_start_delete_and_apps_listing(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "shop", "shop")
    config = str(developer(kube, tenant))
    namespace = namespace_for(tenant)
    target = ("--tenant", tenant, "--kubeconfig", config)
    with StandInOperator(admin, namespace):
        assert cli(cloud_cli.promote, str(folder), *target, "--wait").exit_code == 0
        make_app(tmp_path / "other", "other")
        assert cli(cloud_cli.promote, str(tmp_path / "other"), *target).exit_code == 0

        listing = cli(cloud_cli.apps, "--cloud", *target)
        assert listing.exit_code == 0, listing.output
        header, *rows = listing.stdout.splitlines()
        assert header.split() == ["TENANT", "APP", "PHASE", "READY", "IMAGE", "ENDPOINT", "AGE"]
        assert [row.split()[:2] for row in rows] == [[tenant, "other"], [tenant, "shop"]]
        assert rows[1].split()[2] == "Running"
        wait_for(
            lambda: admin.get(APPS, "other", namespace).get("status", {}).get("phase") == "Running",
            10,
            "the stand-in to run app other",
        )
        as_json = json.loads(cli(cloud_cli.apps, "--cloud", *target, "--json").stdout)
        assert [(a["app"], a["phase"], a["tenant"]) for a in as_json] == [
            ("other", "Running", tenant),
            ("shop", "Running", tenant),
        ]
        assert as_json[1]["endpoint"] == f"shop.{namespace}.aerogrid.test:443"
        assert as_json[1]["image"] == f"registry.test/runtime:{version('aerogrid')}"

        stopped = cli(cloud_cli.stop, "shop", "--cloud", *target)
        assert stopped.exit_code == 0, stopped.output
        assert admin.get(APPS, "shop", namespace)["spec"]["stopped"] is True
        wait_for(
            lambda: admin.get(APPS, "shop", namespace)["status"]["phase"] == "Stopped",
            10,
            "the stand-in to report Stopped",
        )
        # Stop used its own field manager: promote's files are untouched.
        assert "app.py" in admin.get(APPS, "shop", namespace)["spec"]["files"]
        # Promoting into a stopped app keeps it stopped (stop/start own spec.stopped).
        (folder / "more.py").write_text("Z = 3\n")
        repromoted = cli(cloud_cli.promote, str(folder), *target, "--wait")
        assert repromoted.exit_code == 0, repromoted.output
        assert (
            repromoted.stdout.splitlines()[-1] == "app shop is stopped: aerogrid start shop --cloud"
        )

        started = cli(cloud_cli.start, "shop", "--cloud", *target)
        assert started.exit_code == 0, started.output
        assert admin.get(APPS, "shop", namespace)["spec"]["stopped"] is False
        assert "more.py" in admin.get(APPS, "shop", namespace)["spec"]["files"]

        # Scale: spec.replicas under its own manager; promoting again keeps the count.
        assert admin.get(APPS, "shop", namespace)["spec"]["replicas"] == 1  # the default
        scaled = cli(cloud_cli.scale, "shop", "3", "--cloud", *target)
        assert scaled.exit_code == 0, scaled.output
        assert scaled.stdout.startswith(f"scaling App shop of tenant {tenant} to 3 replicas")
        stored = admin.get(APPS, "shop", namespace)
        assert stored["spec"]["replicas"] == 3
        owners = {m["manager"] for m in stored["metadata"]["managedFields"]}
        assert "aerogrid-scale" in owners
        (folder / "more.py").write_text("Z = 4\n")
        assert cli(cloud_cli.promote, str(folder), *target).exit_code == 0
        assert admin.get(APPS, "shop", namespace)["spec"]["replicas"] == 3
        as_json = json.loads(cli(cloud_cli.apps, "--cloud", *target, "--json").stdout)
        assert as_json[1]["replicas"] == 3
        over = cli(cloud_cli.scale, "shop", "99", "--cloud", *target)
        assert over.exit_code == 2 and "99 is not in the range 0<=x<=20" in over.stderr

    deleted = cli(cloud_cli.delete, "shop", "--cloud", *target)
    assert deleted.exit_code == 0, deleted.output
    assert [a["metadata"]["name"] for a in admin.list(APPS, namespace).items] == ["other"]
    line = _one_error_line(cli(cloud_cli.delete, "shop", "--cloud", *target))
    assert line == f"error: no app 'shop' in tenant {tenant} (namespace {namespace})"
    assert "no app 'gone'" in _one_error_line(cli(cloud_cli.stop, "gone", "--cloud", *target))


def test_a_user_without_rights_gets_one_forbidden_line(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "shop", "shop")
    # A developer of another tenant: no Role in this tenant's namespace.
    outsider = str(kube.user_kubeconfig("mallory", ["other-developers"]))
    line = _one_error_line(
        cli(cloud_cli.promote, str(folder), "--tenant", tenant, "--kubeconfig", outsider)
    )
    assert line.startswith(
        f"error: forbidden: cannot apply apps.aerogrid.io in namespace aerogrid-{tenant}: "
    )
    assert 'User "mallory" cannot patch resource "apps"' in line
    listing = _one_error_line(cli(cloud_cli.apps, "--cloud", "--kubeconfig", outsider))
    assert "forbidden: cannot list apps.aerogrid.io" in listing
    assert listing.endswith("(to list one tenant's apps, pass --tenant T)")


def test_a_tenant_that_is_not_set_up_and_a_platform_that_is_not_installed(
    kube: KubeTestbed, admin: BlockingKube, tmp_path: Path
) -> None:
    folder = make_app(tmp_path / "shop", "shop")
    line = _one_error_line(
        cli(
            cloud_cli.promote,
            *(str(folder), "--tenant", "ghost", "--kubeconfig", str(kube.admin_kubeconfig)),
        )
    )
    assert line.startswith(
        "error: tenant ghost is not set up in this cluster (namespace aerogrid-ghost"
    )
    missing = ResourceType("nothing.aerogrid.test", "v1", "widgets", "Widget")
    with pytest.raises(
        CrdMissing, match=r"does not serve widgets.nothing.aerogrid.test .*platform install"
    ):
        admin.list(missing, "default")


def test_an_expired_watch_version_is_gone(admin: BlockingKube) -> None:
    with pytest.raises(Gone):
        for _ in admin.watch(APPS, "default", resource_version="1", timeout_seconds=5):
            pass


def test_the_tuis_promote_reports_each_phase_and_failures(
    kube: KubeTestbed, admin: BlockingKube, tenant: str, tmp_path: Path
) -> None:
    """The TUI's `p` runs `promote_folder` in a thread; here it is called directly."""
    from aerogrid_cloud.targets import CloudTarget
    from aerogrid_devkit.tui.promote.worker import promote_folder

    folder = make_app(tmp_path / "shop", "shop")
    target = CloudTarget(name="lab", tenant=tenant)
    said: list[tuple[str, str]] = []
    config = str(developer(kube, tenant))
    with StandInOperator(admin, namespace_for(tenant)):
        ok = promote_folder(
            "shop", folder, target, lambda s, line: said.append((s, line)), kubeconfig=config
        )
    assert ok, said
    lines = [line for _, line in said]
    assert lines[0].startswith(f"promoting shop as shop to tenant {tenant}")
    assert [line.split(": ", 1)[1] for line in lines[1:-1]] == [
        "Pending",
        "Deploying — rolling out",
        "Running",
    ]
    assert lines[-1].startswith(f"shop runs in tenant {tenant}")
    # a developer of another tenant: one readable error, nothing raised
    said.clear()
    other = CloudTarget(name="other", tenant="ghost")
    assert not promote_folder(
        "shop", folder, other, lambda s, line: said.append((s, line)), kubeconfig=config
    )
    assert said[-1][0] == "error" and "promote shop:" in said[-1][1]


def test_wait_rides_through_a_broken_watch(
    kube: KubeTestbed,
    admin: BlockingKube,
    tenant: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API server drops promote's watch (a restart, a flaky network), up to twice:
    promote picks the App up again from a fresh get and still follows it to Running."""
    folder = make_app(tmp_path / "shop", "shop")
    config = str(developer(kube, tenant))
    broken: list[str] = []

    real_watch = Kube.watch

    async def flaky_watch(kube: Kube, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        # promote's watch only (it follows one App by name); the stand-in's is fine
        if kwargs.get("name") is not None and len(broken) < 2:
            broken.append("dropped")
            raise Unreachable("the connection to the API server was reset")
        async for event in real_watch(kube, *args, **kwargs):
            yield event

    monkeypatch.setattr(Kube, "watch", flaky_watch)
    with StandInOperator(admin, namespace_for(tenant)):
        result = cli(
            cloud_cli.promote, str(folder), "--tenant", tenant, "--kubeconfig", config, "--wait"
        )
    assert result.exit_code == 0, result.output
    assert broken  # the first watch was dropped (a fresh get may already see Running)
    assert result.stdout.splitlines()[-1] == (
        f"app shop is running at shop.aerogrid-{tenant}.aerogrid.test:443"
    )


def test_wait_names_the_connection_error_when_the_api_server_stays_away(
    kube: KubeTestbed, tenant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = make_app(tmp_path / "shop", "shop")
    config = str(developer(kube, tenant))

    async def dead_watch(kube: Kube, *args: Any, **kwargs: Any) -> AsyncIterator[WatchEvent]:
        raise Unreachable("connection refused")
        yield  # an async generator, as Kube.watch is

    monkeypatch.setattr(Kube, "watch", dead_watch)
    result = cli(
        cloud_cli.promote,
        str(folder),
        *("--tenant", tenant, "--kubeconfig", config, "--wait", "--timeout", "2"),
    )
    line = _one_error_line(result)
    assert "did not settle within 2s" in line
    assert "the API server was unreachable: connection refused" in line
