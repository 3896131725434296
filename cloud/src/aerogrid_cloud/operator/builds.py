"""Image builds: an App whose requirements.txt lists packages runs on an image built for it.

A build is skipped when the build namespace's `aerogrid-built-images` ConfigMap records
its tag (the operator records a tag when its build Job succeeds: no registry is asked).
A Job of the same tag already running is waited for, not duplicated. A failed Job's
status says only "BackoffLimitExceeded" or "PodFailurePolicy": the App's status carries
the failing container's own error line instead (pip's or buildah's), read from the
termination message of the Job's pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from aerogrid_cloud.kube import NotFound, ResourceType
from aerogrid_cloud.model import MANAGED_BY
from aerogrid_cloud.operator.status import Cluster
from aerogrid_cloud.render import BUILT_IMAGES, Build, build_objects

__all__ = ["ImageState", "ensure_image", "error_line", "recorded"]

_CONFIGMAPS: Final = ResourceType("", "v1", "configmaps", "ConfigMap")
_JOBS: Final = ResourceType("batch", "v1", "jobs", "Job")
_PODS: Final = ResourceType("", "v1", "pods", "Pod")
#: The label the Job controller puts on its pods (the Job's uid: unique per run).
_JOB_UID_LABEL: Final = "batch.kubernetes.io/controller-uid"
#: How an error line starts: pip's "ERROR: ...", buildah's "Error: ...".
_ERROR_PREFIXES: Final = ("ERROR:", "Error:", "error:")
_MAX_ERROR: Final = 1000


@dataclass(frozen=True)
class ImageState:
    ready: bool
    failed: bool = False
    message: str = ""


async def recorded(cluster: Cluster, build: Build) -> bool:
    """Whether the build namespace's record says this image was built."""
    try:
        record = await cluster.kube.get(_CONFIGMAPS, BUILT_IMAGES, cluster.platform.build_namespace)
    except NotFound:
        return False
    return bool((record.get("data") or {}).get(build.tag) == build.image)


async def ensure_image(cluster: Cluster, build: Build) -> ImageState:
    """Whether the build's image exists; starts its build Job when nobody has."""
    ns = cluster.platform.build_namespace
    if await recorded(cluster, build):
        return ImageState(ready=True, message=f"{build.image} was built before")
    where = f"job {ns}/{build.job_name}"
    try:
        job = await cluster.kube.get(_JOBS, build.job_name, ns)
    except NotFound:
        context, job_obj = build_objects(build, cluster.platform)
        await cluster.apply(context)
        job = await cluster.apply(job_obj)
        # Now that the Job exists, it owns its context: both go when its TTL ends.
        owned, _ = build_objects(build, cluster.platform, job_uid=job["metadata"]["uid"])
        await cluster.apply(owned)
        return ImageState(ready=False, message=f"building {build.image} ({where})")
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if _true(conditions.get("Complete")) or int(status.get("succeeded") or 0) > 0:
        await _record(cluster, build)
        return ImageState(ready=True, message=f"built {build.image}")
    failed = conditions.get("Failed")
    if failed is not None and _true(failed):
        reason = await _failed_container(cluster, job)
        if not reason:
            reason = f"{failed.get('reason', '')}: {failed.get('message', '')}".strip(": ")
        return ImageState(
            ready=False,
            failed=True,
            message=f"building {build.image} failed ({where}): {reason}",
        )
    return ImageState(ready=False, message=f"building {build.image} ({where})")


async def _record(cluster: Cluster, build: Build) -> None:
    """Add a built tag to the record (a merge patch: other tags stay)."""
    ns = cluster.platform.build_namespace
    data = {"data": {build.tag: build.image}}
    try:
        await cluster.kube.merge_patch(
            _CONFIGMAPS, BUILT_IMAGES, data, namespace=ns, action="record a build in"
        )
    except NotFound:
        await cluster.kube.create(
            _CONFIGMAPS,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": BUILT_IMAGES, "namespace": ns, "labels": dict(MANAGED_BY)},
                **data,
            },
        )


async def _failed_container(cluster: Cluster, job: Mapping[str, Any]) -> str:
    """The failing container's error line, from the Job's newest failed pod ("" if none)."""
    uid = job["metadata"]["uid"]
    pods = await cluster.kube.list(
        _PODS, cluster.platform.build_namespace, labels={_JOB_UID_LABEL: uid}
    )
    newest_first = sorted(
        pods.items, key=lambda pod: pod["metadata"].get("creationTimestamp", ""), reverse=True
    )
    for pod in newest_first:
        status = pod.get("status") or {}
        for container in [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]:
            ended = (container.get("state") or {}).get("terminated") or {}
            if int(ended.get("exitCode") or 0) != 0:
                line = error_line(str(ended.get("message") or "")) or (
                    f"{ended.get('reason', 'Error')} (exit code {ended['exitCode']})"
                )
                return f"{container.get('name', '?')}: {line}"
    return ""


def error_line(message: str) -> str:
    """A failed step's own error: its first ERROR/Error line, else its last line."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    chosen = next((line for line in lines if line.startswith(_ERROR_PREFIXES)), None)
    if chosen is None:
        chosen = lines[-1] if lines else ""
    return chosen[:_MAX_ERROR]


def _true(condition: Mapping[str, Any] | None) -> bool:
    return condition is not None and condition.get("status") == "True"
