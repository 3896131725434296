"""One reconcile pass per object at a time, whatever started it (no API server needed).

kopf serialises an object's change handlers but not its resync timer, nor the passes that
other objects' events start; `Cluster.one_pass` is what keeps two passes of one object from
writing its status from different reads.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aerogrid_cloud.operator.status import Cluster


def _cluster() -> Cluster:
    # No pass here touches the client or the settings.
    return Cluster(kube=cast(Any, None), platform=cast(Any, None))


async def _pass(cluster: Cluster, kind: str, name: str, log: list[str]) -> None:
    async with cluster.one_pass(kind, name, "ns"):
        log.append(f"start {kind}/{name}")
        await asyncio.sleep(0.05)
        log.append(f"end {kind}/{name}")


async def test_passes_of_one_object_run_one_at_a_time() -> None:
    cluster, log = _cluster(), list[str]()
    await asyncio.gather(*(_pass(cluster, "App", "orders", log) for _ in range(3)))
    assert log == ["start App/orders", "end App/orders"] * 3
    assert cluster._passes == {}


async def test_passes_of_different_objects_overlap() -> None:
    cluster, log = _cluster(), list[str]()
    await asyncio.gather(
        _pass(cluster, "App", "orders", log),
        _pass(cluster, "App", "prices", log),
        _pass(cluster, "Tenant", "orders", log),
    )
    assert log[:3] == ["start App/orders", "start App/prices", "start Tenant/orders"]


async def test_a_failed_pass_releases_its_object() -> None:
    cluster = _cluster()
    try:
        async with cluster.one_pass("App", "orders", "ns"):
            raise RuntimeError("API server away")
    except RuntimeError:
        pass
    await asyncio.wait_for(_pass(cluster, "App", "orders", []), timeout=1)
