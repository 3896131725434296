"""An app's image build: a Job that puts requirements.txt's packages on the runtime image.

Apps with the same requirements (and runtime) share one image, named by a hash of both.
Build Jobs run in the platform's build namespace, expire by TTL, and own their context
ConfigMap; `BUILT_IMAGES` records what was built so a build is never run twice.

The Job's pod has two steps, so that nothing runs a package's code with privilege:

1. init container `requirements`, on the runtime image itself (the build's base) as its
   unprivileged user, read-only root, no capability: pip installs the requirements (wheels
   only, constrained to the versions the runtime already holds) into an emptyDir at the
   path they will have in the image, so compiled bytecode names the right files;
2. container `build`, on the builder image (buildah): `buildah bud` of a Dockerfile with
   no RUN step (FROM the runtime image, COPY the installed packages, ENV PYTHONPATH), vfs
   storage, then `buildah push`. buildah runs nothing from the image, so it needs no
   runtime, no user namespace and no mount: only what unpacking the base image's layers
   as their owners takes. Found by running the builder image under podman with this
   exact securityContext and the RuntimeDefault seccomp profile:
   BUILDER_CAPABILITIES_DOC

   Root with those four (all in Pod Security baseline's allowed set) is why builds have
   their own namespace at `baseline`: `restricted` admits no root and no capability but
   NET_BIND_SERVICE, and a non-root buildah needs a user namespace, which RuntimeDefault
   seccomp forbids (unshare/clone of CLONE_NEWUSER need CAP_SYS_ADMIN). A pod in its own
   user namespace (`hostUsers: false`) would let `restricted` admit it; containerd 1.6
   cannot run one.

A failed step's own error line is the container's termination message (logs on error):
see operator/builds.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from aerogrid_cloud.model import AppSpec
from aerogrid_cloud.render.common import (
    APP_UID,
    Owner,
    api_object,
    component_labels,
    object_meta,
    restricted_container,
    stable_hash,
)
from aerogrid_cloud.settings import PlatformSettings

__all__ = [
    "APP_PACKAGES",
    "BUILDER_CAPABILITIES",
    "BUILD_CONTAINER",
    "BUILT_IMAGES",
    "REQUIREMENTS_CONTAINER",
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


#: Where an app's packages live in its image (first on PYTHONPATH).
APP_PACKAGES: Final = "/opt/aerogrid-app/site-packages"
#: What buildah needs, as root, to unpack the base image's layers (module docstring).
BUILDER_CAPABILITIES: Final = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID")
REQUIREMENTS_CONTAINER: Final = "requirements"
BUILD_CONTAINER: Final = "build"
_CONTEXT: Final = "/context"  # the ConfigMap: Dockerfile, requirements.txt
_WORKSPACE: Final = "/workspace"  # the emptyDir pip fills and buildah's context
_STORAGE: Final = "/var/lib/containers"  # buildah's storage and temporary files
_AUTH_DIR: Final = "/var/run/aerogrid/registry"

# pip's own error line is the last thing it prints (--quiet: nothing else), and so the
# termination message. The runtime's packages are constraints: a requirement that needs
# another version of one fails here, rather than shadowing it in the image.
_REQUIREMENTS_SCRIPT: Final = (
    "set -eu\n"
    "python -m pip list --format=freeze > /tmp/runtime-constraints.txt\n"
    "exec python -m pip install --quiet --no-input --only-binary=:all:"
    f" --target {APP_PACKAGES} --constraint /tmp/runtime-constraints.txt"
    f" --requirement {_CONTEXT}/requirements.txt\n"
)


def _dockerfile(build: Build) -> str:
    """No RUN step: buildah needs no container runtime, user namespace or mount."""
    return (
        f"FROM {build.base_image}\n"
        f"COPY site-packages/ {APP_PACKAGES}/\n"
        f"ENV PYTHONPATH={APP_PACKAGES}\n"
    )


def _build_script(build: Build, settings: PlatformSettings) -> str:
    buildah = f"buildah --storage-driver=vfs --root={_STORAGE}/storage --runroot={_STORAGE}/run"
    tls = " --tls-verify=false" if settings.build_registry_insecure else ""
    return (
        "set -eu\n"
        f"mkdir -p {_STORAGE}/tmp\n"
        f"{buildah} bud --quiet --isolation=chroot{tls} --file={_CONTEXT}/Dockerfile"
        f' --label=aerogrid.io/requirements={build.digest} --tag="$IMAGE" {_WORKSPACE}\n'
        f'exec {buildah} push --quiet{tls} "$IMAGE" "docker://$IMAGE"\n'
    )


def _pip_env(settings: PlatformSettings) -> list[dict[str, str]]:
    env = {
        "PIP_INDEX_URL": settings.package_index,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "TMPDIR": "/tmp",
    }
    index = urlsplit(settings.package_index)
    if index.scheme == "http" and index.hostname:
        env["PIP_TRUSTED_HOST"] = index.hostname  # pip ignores a plain-HTTP index otherwise
    return [{"name": k, "value": v} for k, v in env.items()]


def _requirements_container(build: Build, settings: PlatformSettings) -> dict[str, Any]:
    """pip, on the runtime image as its own user: a package's code never runs as root."""
    return {
        "name": REQUIREMENTS_CONTAINER,
        "image": build.base_image,
        "command": ["/bin/sh", "-c", _REQUIREMENTS_SCRIPT],
        "env": _pip_env(settings),
        "securityContext": {
            **restricted_container(),
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "volumeMounts": [
            {"name": "context", "mountPath": _CONTEXT, "readOnly": True},
            # At the packages' path in the image, so their bytecode names the right files.
            {"name": "workspace", "mountPath": APP_PACKAGES.rsplit("/", 1)[0]},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def _build_container(build: Build, settings: PlatformSettings) -> dict[str, Any]:
    """buildah as root with exactly BUILDER_CAPABILITIES (module docstring)."""
    env = [
        {"name": "IMAGE", "value": build.image},
        {"name": "BUILDAH_ISOLATION", "value": "chroot"},
        {"name": "TMPDIR", "value": f"{_STORAGE}/tmp"},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "context", "mountPath": _CONTEXT, "readOnly": True},
        {"name": "workspace", "mountPath": _WORKSPACE, "readOnly": True},
        {"name": "storage", "mountPath": _STORAGE},
    ]
    if settings.build_push_secret:
        env.append({"name": "REGISTRY_AUTH_FILE", "value": f"{_AUTH_DIR}/auth.json"})
        mounts.append({"name": "registry-auth", "mountPath": _AUTH_DIR, "readOnly": True})
    return {
        "name": BUILD_CONTAINER,
        "image": settings.build_image,
        "command": ["/bin/sh", "-c", _build_script(build, settings)],
        "env": env,
        "securityContext": {
            "runAsUser": 0,
            "runAsGroup": 0,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"], "add": list(BUILDER_CAPABILITIES)},
            "readOnlyRootFilesystem": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": "500m", "memory": "512Mi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "volumeMounts": mounts,
    }


def _volumes(build: Build, settings: PlatformSettings) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": "context", "configMap": {"name": build.job_name}},
        {"name": "workspace", "emptyDir": {"sizeLimit": "4Gi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
        # vfs keeps a full copy of the file system per layer.
        {"name": "storage", "emptyDir": {"sizeLimit": "16Gi"}},
    ]
    if settings.build_push_secret:
        volumes.append(
            {
                "name": "registry-auth",
                "secret": {
                    "secretName": settings.build_push_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "auth.json"}],
                },
            }
        )
    return volumes


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
        data={"Dockerfile": _dockerfile(build), "requirements.txt": build.requirements},
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
                    "initContainers": [_requirements_container(build, settings)],
                    "containers": [_build_container(build, settings)],
                    "volumes": _volumes(build, settings),
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
