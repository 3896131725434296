"""Promote: from `aerogrid promote` to the app's Deployment and Service in the API.

Measured in the Kubernetes test bed (a real kube-apiserver, etcd and controllers built
from Go modules; no kubelet, so the clock stops when the objects exist, not when pods
run): the platform installed, the operator running with its own least-privilege
account, a Ready tenant. Each run promotes a new app with no extra requirements (the
fast path) as a user would, `python -m aerogrid promote DIR --tenant T`, and polls the
API until the app's Deployment and Service both exist. Side by side in the same run:

* the same promote in-process (no interpreter start), to split the CLI's own cost off;
* the floor: the rendered ConfigMap, Deployment and Service applied directly with
  server-side apply (what `kubectl apply` of rendered YAML would do, no operator).

    .venv/bin/python -m benchmarks.promote            # 5 runs each
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aerogrid_cloud import render
from aerogrid_cloud.kube import APPS, NotFound, ResourceType
from aerogrid_cloud.model import AppSpec, namespace_for
from aerogrid_cloud.platform_cli import install_objects
from aerogrid_cloud.promote import build_app, promote
from benchmarks._common import seconds_summary, write_result
from cloud.test_operator import SETTINGS, Cluster, OperatorThread, _wait_quota_controller
from support.k8s import KubeTestbed
from support.kube_blocking import BlockingKube

DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
SERVICES = ResourceType("", "v1", "services", "Service")
NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
TENANT = "bench"


def app_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "app.py").write_text(f"import aerogrid\napp = aerogrid.App({name!r})\n")
    return folder


def objects_exist(admin: BlockingKube, name: str, namespace: str) -> bool:
    try:
        admin.get(DEPLOYMENTS, name, namespace)
        admin.get(SERVICES, name, namespace)
    except NotFound:
        return False
    return True


def until_objects(admin: BlockingKube, name: str, namespace: str, started: float) -> float:
    while not objects_exist(admin, name, namespace):
        if time.monotonic() - started > 60:
            raise RuntimeError(f"no Deployment and Service for {name} after 60 s")
        time.sleep(0.02)
    return time.monotonic() - started


def direct_apply(admin: BlockingKube, name: str) -> float:
    """The floor: the app's own objects applied straight away, no App, no operator."""
    spec = AppSpec(
        files={"app.py": f"import aerogrid\napp = aerogrid.App({name!r})\n"},
        runtime_version="0.1.0",
    )
    namespace = namespace_for(TENANT)
    started = time.monotonic()
    for obj in render.app_objects(name, namespace, spec, SETTINGS):
        if obj["kind"] in ("ConfigMap", "Deployment", "Service", "ServiceAccount"):
            admin.apply(render.resource_type(obj), obj, field_manager="bench")
    return until_objects(admin, name, namespace, started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bed = KubeTestbed()
    reason = bed.unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    bed.start()
    try:
        with (
            BlockingKube.connect(bed.admin_kubeconfig) as admin,
            tempfile.TemporaryDirectory() as tmp,
        ):
            results = measure(bed, admin, Path(tmp), args.runs)
    finally:
        bed.stop()
    path = write_result("promote", results)
    for key in ("cli", "in_process", "direct_apply"):
        print(f"{key:>13}: {results[key]}")
    print(f"ratios: {results['ratios']}  -> {path}")
    return 0 if results["cli"]["p50_s"] < 5.0 else 1


def measure(bed: KubeTestbed, admin: BlockingKube, root: Path, runs: int) -> dict[str, Any]:
    for name in {SETTINGS.gateway_namespace, SETTINGS.mesh_root_namespace}:
        admin.apply(
            NAMESPACES,
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            field_manager="bench",
        )
    admin.run(install_objects(admin.kube, render.platform_objects(SETTINGS)))
    cluster = Cluster(admin, "bench")
    _wait_quota_controller(cluster)
    cli: list[float] = []
    local: list[float] = []
    floor: list[float] = []
    with OperatorThread(bed, SETTINGS, "bench"):
        cluster.apply_tenant(TENANT, ["bench-devs"])
        cluster.wait_tenant_ready(TENANT)
        # the operator only handles objects with the bench's label: a promoted App gets it
        # from a second field manager right after (what the tests do, too)
        for run in range(runs):
            cli.append(by_cli_labelled(admin, cluster, bed.admin_kubeconfig, root, f"cli-{run}"))
            local.append(in_process_labelled(admin, cluster, root, f"local-{run}"))
            floor.append(direct_apply(admin, f"floor-{run}"))
    return {
        "runs": runs,
        "cli": seconds_summary(cli),
        "in_process": seconds_summary(local),
        "direct_apply": seconds_summary(floor),
        "ratios": {
            "cli_over_direct_apply": round(statistics.median(cli) / statistics.median(floor), 1),
            "in_process_over_direct_apply": round(
                statistics.median(local) / statistics.median(floor), 1
            ),
        },
        "goal": {"cli_p50_s": 5.0},
    }


def _label(admin: BlockingKube, cluster: Cluster, name: str) -> None:
    namespace = namespace_for(TENANT)
    while True:
        try:
            cluster.app(name, TENANT)
            break
        except NotFound:
            time.sleep(0.01)
    admin.merge_patch(
        APPS,
        name,
        {"metadata": {"labels": {"aerogrid.io/test": cluster.label}}},
        namespace=namespace,
    )


def by_cli_labelled(
    admin: BlockingKube, cluster: Cluster, kubeconfig: Path, root: Path, name: str
) -> float:
    folder = app_folder(root, name)
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "aerogrid", "promote", str(folder), "--tenant", TENANT),
            *("--kubeconfig", str(kubeconfig)),
        ],
        stdout=subprocess.DEVNULL,
    )
    _label(admin, cluster, name)
    elapsed = until_objects(admin, name, namespace_for(TENANT), started)
    if proc.wait(60) != 0:
        raise RuntimeError("aerogrid promote failed")
    return elapsed


def in_process_labelled(admin: BlockingKube, cluster: Cluster, root: Path, name: str) -> float:
    folder = app_folder(root, name)
    started = time.monotonic()
    admin.run(promote(admin.kube, build_app(folder, TENANT)))
    _label(admin, cluster, name)
    return until_objects(admin, name, namespace_for(TENANT), started)


if __name__ == "__main__":
    sys.exit(main())
