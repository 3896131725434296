"""The build Job's two steps: pip as the app's user, then buildah with four capabilities.

Nothing runs a package's code with privilege:

1. init container `requirements`, on the runtime image itself (the build's base) as its
   unprivileged user, read-only root, no capability: pip installs the requirements (wheels
   only, constrained to the versions the runtime holds) into an emptyDir at the path they
   have in the image, so their compiled bytecode names the right files. Its output
   (`--quiet`: errors only) is the termination message a failed build reports.
2. container `build`, on the builder image: `buildah bud` of a Dockerfile with no RUN step
   (FROM the runtime image, COPY the packages, ENV PYTHONPATH), vfs storage in an emptyDir,
   then `buildah push`. buildah runs nothing from the image, so it needs no container
   runtime and no mount; it runs as root, read-only root, no privilege escalation,
   RuntimeDefault seccomp, with only `BUILDER_CAPABILITIES`:

   * CHOWN: each file of the base image's layers is given its owner (root, shadow, 10001);
   * DAC_OVERRIDE: writing into folders root does not own or may not write (the layer
     folders buildah makes, the runtime's /app of uid 10001);
   * FOWNER: setting the mode and times of files root does not own (after that chown);
   * SYS_CHROOT: containers/storage unpacks each layer in a child chrooted into the layer's
     folder (so a layer's symlink cannot write outside it); without CAP_SYS_ADMIN it uses
     chroot(2) rather than a mount namespace, and RuntimeDefault allows chroot only with it.

   Not needed: FSETID (a setuid/setgid bit lost on the unpacked copy never reaches the
   image: the base layers are pushed as their original blobs, the new layer holds only
   the COPY's files), SETUID/SETGID, MKNOD, SYS_ADMIN. As root without CAP_SYS_ADMIN,
   buildah would re-execute itself in a new user namespace, which RuntimeDefault seccomp
   forbids (unshare/clone of CLONE_NEWUSER need CAP_SYS_ADMIN): `_CONTAINERS_ROOTLESS_UID`,
   containers/storage's mark that the user namespace is already set up, makes it run in
   place. Found by running the builder image with this securityContext under runc and the
   seccomp profile containerd 1.6.20 generates for it, pushing to a registry, and taking
   away one capability at a time (each one's error is in the issue-15 report); the Job runs
   so on the test bed's real node (tests/cloud/test_build_job.py).

   Root with capabilities from Pod Security baseline's list is why builds have their own
   namespace at `baseline`: `restricted` admits no root and no capability but
   NET_BIND_SERVICE, and a non-root buildah needs a user namespace. A pod in its own user
   namespace (`hostUsers: false`) could be `restricted`; containerd 1.6 cannot run one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from aerogrid_cloud.render.common import APP_UID, restricted_container
from aerogrid_cloud.settings import PlatformSettings

if TYPE_CHECKING:
    from aerogrid_cloud.render.build import Build

__all__ = [
    "APP_PACKAGES",
    "BUILDER_CAPABILITIES",
    "BUILD_CONTAINER",
    "REQUIREMENTS_CONTAINER",
    "build_container",
    "dockerfile",
    "requirements_container",
    "step_volumes",
]

#: Where an app's packages live in its image (first on PYTHONPATH).
APP_PACKAGES: Final = "/opt/aerogrid-app/site-packages"
#: What buildah needs, as root, to unpack the base image's layers (module docstring).
BUILDER_CAPABILITIES: Final = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SYS_CHROOT")
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


def dockerfile(build: Build) -> str:
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


def requirements_container(build: Build, settings: PlatformSettings) -> dict[str, Any]:
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


def build_container(build: Build, settings: PlatformSettings) -> dict[str, Any]:
    """buildah as root with exactly BUILDER_CAPABILITIES (module docstring)."""
    env = [
        {"name": "IMAGE", "value": build.image},
        {"name": "BUILDAH_ISOLATION", "value": "chroot"},
        {"name": "TMPDIR", "value": f"{_STORAGE}/tmp"},
        # Run in place: no user namespace (RuntimeDefault forbids one; module docstring).
        {"name": "_CONTAINERS_ROOTLESS_UID", "value": str(APP_UID)},
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


def step_volumes(build: Build, settings: PlatformSettings) -> list[dict[str, Any]]:
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
