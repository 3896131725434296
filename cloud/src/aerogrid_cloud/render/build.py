"""An app's image build: a Job that puts requirements.txt's packages on the runtime image.

Apps with the same requirements (and runtime) share one image, named by a hash of both.
Build Jobs run in the platform's build namespace, expire by TTL, and own their context
ConfigMap (the Dockerfile, requirements.txt); `BUILT_IMAGES` records what was built so a
build is never run twice. The pod's two steps, pip then buildah, and the privilege each
has are in `build_steps`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from aerogrid_cloud.model import AppSpec
from aerogrid_cloud.render.build_steps import (
    REQUIREMENTS_CONTAINER,
    build_container,
    dockerfile,
    requirements_container,
    step_volumes,
)
from aerogrid_cloud.render.common import (
    Owner,
    api_object,
    component_labels,
    object_meta,
    stable_hash,
)
from aerogrid_cloud.settings import PlatformSettings

__all__ = [
    "BUILT_IMAGES",
    "Build",
    "build_for",
    "build_objects",
    "built_images_configmap",
]

#: The build namespace's record of the images built so far (tag → image).
BUILT_IMAGES: Final = "aerogrid-built-images"
BUILD_LABEL: Final = "aerogrid.io/build"
IMAGE_ANNOTATION: Final = "aerogrid.io/image"


@dataclass(frozen=True)
class Build:
    """An image with an app's requirements on top of the runtime: what to build, where."""

    digest: str
    tag: str
    image: str
    requirements: str
    base_image: str

    @property
    def job_name(self) -> str:
        return f"aerogrid-build-{self.digest[:20]}"


def build_for(spec: AppSpec, settings: PlatformSettings) -> Build | None:
    """The build an App needs, or None when requirements.txt lists no packages.

    The tag is a hash of the requirements (sorted, comments and blanks dropped), the
    runtime image and its version: apps with the same requirements share one image.
    """
    packages = sorted(set(spec.requirements))
    if not packages:
        return None
    base = settings.runtime_image_for(spec.runtime_version)
    digest = stable_hash({"requirements": packages, "runtimeImage": base})
    version = re.sub(r"[^A-Za-z0-9_.-]", "-", spec.runtime_version)[:80]
    tag = f"{version}-{digest[:20]}"
    return Build(
        digest=digest,
        tag=tag,
        image=f"{settings.build_registry}:{tag}",
        requirements="\n".join(packages) + "\n",
        base_image=base,
    )


def build_objects(
    build: Build, settings: PlatformSettings, job_uid: str | None = None
) -> list[dict[str, Any]]:
    """The build's context ConfigMap (Dockerfile, requirements.txt) and its Job.

    With `job_uid` the ConfigMap is owned by the Job, so it goes when the Job's TTL ends.
    """
    ns = settings.build_namespace
    labels = component_labels("build", {BUILD_LABEL: build.digest[:20]})
    annotations = {IMAGE_ANNOTATION: build.image}
    owner = Owner("Job", build.job_name, job_uid, "batch/v1") if job_uid else None
    context = api_object(
        "v1",
        "ConfigMap",
        object_meta(build.job_name, labels, ns, owner, annotations),
        data={"Dockerfile": dockerfile(build), "requirements.txt": build.requirements},
        immutable=True,
    )
    job = api_object(
        "batch/v1",
        "Job",
        object_meta(build.job_name, labels, ns, None, annotations),
        spec={
            "backoffLimit": 2,
            # pip failing is the requirements' fault: another try would fail the same way.
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": REQUIREMENTS_CONTAINER,
                            "operator": "NotIn",
                            "values": [0],
                        },
                    }
                ]
            },
            "activeDeadlineSeconds": settings.build_timeout_seconds,
            "ttlSecondsAfterFinished": settings.build_ttl_seconds,
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "initContainers": [requirements_container(build, settings)],
                    "containers": [build_container(build, settings)],
                    "volumes": step_volumes(build, settings),
                },
            },
        },
    )
    return [context, job]


def built_images_configmap(settings: PlatformSettings) -> dict[str, Any]:
    """The record of built images (tag → image): a build is skipped when its tag is here.

    Rendered without `data`, so applying it again never drops what the operator recorded
    (the operator adds entries with merge patches under its own field manager).
    """
    return api_object(
        "v1",
        "ConfigMap",
        object_meta(BUILT_IMAGES, component_labels("build"), settings.build_namespace),
    )
