"""The operator's build Job on the real node: pip, then buildah, push, and a pod from the image.

Everything runs for real on the test bed's node (support.k8s_node): the kubelet starts the Job's
pod through containerd and runc; pip (on the runtime image, as uid 10001) installs from the test
bed's package index (support.package_index, on the node's IP); buildah (the `aerogrid-builder`
image, root with the four capabilities render/build_steps.py names, RuntimeDefault seccomp) pulls
the runtime image from the node's registry and pushes the app's image back there; a pod then runs
that image. The build namespace carries exactly the Pod Security labels `platform render` gives
it, so admission judges the Job's pod as it would in a cluster. The operator's own
`ensure_image` starts the Job and reads how it ended, as it does for an App.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, Final, cast

import pytest
from kubernetes import client

from aerogrid_cloud.model import AppSpec
from aerogrid_cloud.operator.builds import ImageState, ensure_image
from aerogrid_cloud.operator.status import Cluster
from aerogrid_cloud.render import Build, build_for, platform_objects
from aerogrid_cloud.settings import PlatformSettings
from support.ci import unavailable
from support.images import BUILDER, RUNTIME, BuiltImage, ImagesUnavailable, built_images
from support.k8s import RESTRICTED_LABELS
from support.k8s_node import KubeNode
from support.kube_blocking import BlockingKube
from support.package_index import MODULE, VERSION, PackageIndex

pytestmark = pytest.mark.timeout(900)

#: A cold build pulls the builder and the runtime image into containerd, then buildah pulls
#: the runtime again into its own storage: minutes on two busy cores.
BUILD_TIMEOUT: Final = 600.0


@pytest.fixture(scope="module")
def index(kube_node: KubeNode) -> Iterator[PackageIndex]:
    with PackageIndex(kube_node.ip) as served:
        yield served


@pytest.fixture(scope="module")
def settings(kube_node: KubeNode, index: PackageIndex) -> Iterator[PlatformSettings]:
    """The platform's build settings for the node: its registry (plain HTTP), its index."""
    images = _images()
    runtime, builder = images[RUNTIME], images[BUILDER]
    run = uuid.uuid4().hex[:8]
    runtime_ref = kube_node.push(runtime.archive, f"aerogrid/aerogrid-runtime:{runtime.tag}")
    builder_ref = kube_node.push(builder.archive, f"aerogrid/aerogrid-builder:{builder.tag}")
    platform = PlatformSettings(
        runtime_image=runtime_ref.rsplit(":", 1)[0],
        build_image=builder_ref,
        build_registry=f"{kube_node.registry}/aerogrid/apps-{run}",
        build_registry_insecure=True,
        package_index=index.url,
        build_namespace=f"aerogrid-builds-{run}",
    )
    (namespace,) = [
        o
        for o in platform_objects(platform)
        if o["kind"] == "Namespace" and o["metadata"]["name"] == platform.build_namespace
    ]
    kube_node.bed.create_namespace(platform.build_namespace, labels=namespace["metadata"]["labels"])
    try:
        yield platform
    finally:
        with kube_node.bed.api_client() as api:
            client.CoreV1Api(api).delete_namespace(platform.build_namespace)


def _images() -> dict[str, BuiltImage]:
    try:
        return built_images()
    except ImagesUnavailable as exc:
        unavailable(str(exc))
        raise


def _build(settings: PlatformSettings, requirements: str) -> Build:
    spec = AppSpec.model_validate(
        {
            "runtimeVersion": _images()[RUNTIME].tag,
            "files": {"app.py": "import aerogrid\n", "requirements.txt": requirements},
        }
    )
    build = build_for(spec, settings)
    assert build is not None
    return build


def _until_done(kube_node: KubeNode, settings: PlatformSettings, build: Build) -> ImageState:
    """The operator's view of the build, polled as its resync would, until it ends."""
    with BlockingKube.connect(kube_node.bed.admin_kubeconfig) as api:
        cluster = Cluster(api.kube, settings)
        deadline = time.monotonic() + BUILD_TIMEOUT
        while True:
            state = api.run(ensure_image(cluster, build))
            if state.ready or state.failed:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"the build did not end in {BUILD_TIMEOUT:.0f}s: {state}")
            time.sleep(2.0)


def _phase(core: client.CoreV1Api, namespace: str, name: str) -> str:
    status = core.read_namespaced_pod(name, namespace).status
    return str(status.phase) if status is not None else ""


def _run_pod(kube_node: KubeNode, namespace: str, image: str, code: str) -> str:
    """Run `python -c code` from `image` as Pod Security `restricted` wants; its output."""
    name = f"probe-{uuid.uuid4().hex[:8]}"
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": ["python", "-c", code],
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    with kube_node.bed.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, cast(client.V1Pod, pod))  # a dict body is sent as is
        deadline = time.monotonic() + 300
        while (phase := _phase(core, namespace, name)) not in {"Succeeded", "Failed"}:
            assert time.monotonic() < deadline, f"pod {name} still {phase}"
            time.sleep(1.0)
        logs = str(core.read_namespaced_pod_log(name, namespace))
        assert phase == "Succeeded", logs
        return logs


@pytest.fixture
def app_namespace(kube_node: KubeNode) -> Iterator[str]:
    name = f"app-{uuid.uuid4().hex[:8]}"
    kube_node.bed.create_namespace(name, labels=RESTRICTED_LABELS)
    try:
        yield name
    finally:
        with kube_node.bed.api_client() as api:
            client.CoreV1Api(api).delete_namespace(name)


def test_a_build_pushes_an_image_whose_pods_import_the_package(
    kube_node: KubeNode, settings: PlatformSettings, index: PackageIndex, app_namespace: str
) -> None:
    build = _build(settings, index.requirement + "\n")
    state = _until_done(kube_node, settings, build)
    assert state.ready, state.message
    assert state.message == f"built {build.image}"
    printed = _run_pod(
        kube_node,
        app_namespace,
        build.image,
        f"import {MODULE}; print({MODULE}.__version__, {MODULE}.__file__)",
    )
    version, path = printed.split()
    assert version == VERSION
    assert path.startswith("/opt/aerogrid-app/site-packages/")
    # The operator recorded the tag: asking again starts nothing.
    again = _until_done(kube_node, settings, build)
    assert again.ready and again.message == f"{build.image} was built before"


def test_a_missing_package_fails_the_build_with_pips_line(
    kube_node: KubeNode, settings: PlatformSettings
) -> None:
    missing = f"no-such-package-{uuid.uuid4().hex[:6]}==1.0"
    build = _build(settings, missing + "\n")
    state = _until_done(kube_node, settings, build)
    assert state.failed and not state.ready
    assert state.message.endswith(
        f"requirements: ERROR: Could not find a version that satisfies the requirement"
        f" {missing} (from versions: none)"
    ), state.message


def test_a_requirements_syntax_error_fails_the_build_with_pips_line(
    kube_node: KubeNode, settings: PlatformSettings
) -> None:
    broken = f"tabulate {uuid.uuid4().hex[:6]}"  # two words: not a requirement
    build = _build(settings, broken + "\n")
    state = _until_done(kube_node, settings, build)
    assert state.failed and not state.ready
    assert state.message.endswith(
        f"requirements: ERROR: Invalid requirement: '{broken}'"
        " (from line 1 of /context/requirements.txt)"
    ), state.message
