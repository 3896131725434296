"""Promote on a real node: `aerogrid promote --wait` to a Ready pod and the first grid update.

The test bed's node (tests/support/k8s_node.py: kubelet, containerd, scheduler, kube-proxy and
a registry, built from Go modules and Debian's packages), the platform installed from the
built images (`support.real_platform`: the operator and catalog as pods), a Ready tenant,
300 orders waiting on a Kafka the pods reach. Each run promotes a new copy of the seed app
(examples/ordersapp under another name) as its developer would, `python -m aerogrid promote
DIR --tenant T --wait`, and measures from the command's start to:

* the app's pod Ready (its own gRPC health probe, through the kubelet);
* the command's return (the App Running);
* the first snapshot a client reads through the Service (kube-proxy) holding the exact sums.

Fast path (empty requirements.txt) `--runs` times; then one app whose requirements.txt lists a
package, served by a package index on the node: the first such promote runs the build Job (pip,
then buildah, then a push to the registry), a second with the same requirements finds the
image recorded. Side by side: the API-only figure of `benchmarks.promote` (the objects in the
API, no kubelet) from its last result file. Goal: the fast path under 10 s to Ready.

    .venv/bin/python -m benchmarks.promote_node --runs 5      # root: the node needs it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client

from aerogrid_cloud.kube import APPS
from aerogrid_cloud.model import namespace_for
from benchmarks._common import RESULTS, seconds_summary, write_result
from support.apps import EXAMPLE_APP, produce
from support.k8s_node import KubeNode
from support.kube_blocking import BlockingKube
from support.orders import orders, units_sold
from support.package_index import PROJECT, PackageIndex
from support.real_platform import (
    Platform,
    app_folder,
    app_pods,
    installed_platform,
    make_tenant,
    timed_promote,
)

TOPIC = "orders"
TIMEOUT = 300.0


def promote_once(
    platform: Platform,
    root: Path,
    tenant: str,
    developer: Path,
    token: str,
    name: str,
    requirements: str,
    expected: dict[str, Any],
) -> dict[str, float]:
    """One `promote --wait`: seconds to the pod Ready, to Running, to the first exact grid."""
    folder = app_folder(root, name, EXAMPLE_APP.read_text(), requirements)
    timed = timed_promote(platform, folder, name, developer, tenant, token, expected, TIMEOUT)
    return {"ready": timed.ready, "running": timed.running, "first_grid": timed.first_grid}


def delete_app(platform: Platform, tenant: str, name: str) -> None:
    """Free the node for the next run (two cores): the App, then wait for its pod to go."""
    namespace = namespace_for(tenant)
    with BlockingKube.connect(platform.node.bed.admin_kubeconfig) as admin:
        admin.delete(APPS, name, namespace)
    with platform.node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        deadline = time.monotonic() + 120
        while app_pods(core, namespace, name) and time.monotonic() < deadline:
            time.sleep(0.2)


def summarize(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        key: seconds_summary([r[key] for r in runs]) for key in ("ready", "running", "first_grid")
    }


def measure(node: KubeNode, root: Path, runs: int) -> dict[str, Any]:
    with (
        PackageIndex(node.ip) as index,
        installed_platform(node, root, package_index=index.url) as platform,
    ):
        tenant = f"b{uuid.uuid4().hex[:6]}"
        group = f"{tenant}-developers"
        tenant_seconds = make_tenant(node, tenant, group, 360.0)
        developer = node.bed.user_kubeconfig(f"dev-{tenant}", [group])
        token = platform.identity.token([group])
        records = orders(300, seed=1)
        asyncio.run(produce(platform.kafka.bootstrap, TOPIC, records))
        expected = units_sold(records)
        fast: list[dict[str, float]] = []
        for run in range(runs):
            name = f"fast{run}"
            fast.append(promote_once(platform, root, tenant, developer, token, name, "", expected))
            print(f"{name}: {fast[-1]}", flush=True)
            delete_app(platform, tenant, name)
        built: list[dict[str, float]] = []
        for run in range(2):  # the first builds, the second finds the image recorded
            name = f"built{run}"
            requirements = f"{PROJECT}\n"
            built.append(
                promote_once(platform, root, tenant, developer, token, name, requirements, expected)
            )
            print(f"{name}: {built[-1]}", flush=True)
            delete_app(platform, tenant, name)
    return {
        "runs": runs,
        "fast_path": summarize(fast),
        "with_build": {key: round(value, 2) for key, value in built[0].items()},
        "image_recorded": {key: round(value, 2) for key, value in built[1].items()},
        "platform_install_s": round(platform.install_seconds, 2),
        "tenant_ready_s": round(tenant_seconds, 2),
        "api_only": _api_only(),
        "goal": {"fast_path_ready_p50_s": 10.0},
    }


def _api_only() -> dict[str, Any] | None:
    """`benchmarks.promote`'s last figure: the CLI to the objects in the API (no kubelet)."""
    try:
        result: dict[str, Any] = json.loads((RESULTS / "promote.json").read_text())
    except (OSError, ValueError):
        return None
    return {"cli_to_objects": result.get("cli"), "machine": result.get("machine")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    reason = KubeNode.unavailable_reason()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    with KubeNode() as node, tempfile.TemporaryDirectory() as tmp:
        results = measure(node, Path(tmp), args.runs)
        results["node"] = {"kubelet": node.kubelet_version, "containerd": node.containerd_version}
    path = write_result("promote_node", results)
    print(json.dumps(results, indent=2))
    print(f"-> {path}")
    return 0 if results["fast_path"]["ready"]["p50_s"] < 10.0 else 1


if __name__ == "__main__":
    sys.exit(main())
