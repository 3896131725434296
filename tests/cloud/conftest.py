"""Fixtures for the cloud tests: one real Kubernetes control plane for the session.

`kube` is a `support.k8s.KubeTestbed`: etcd, kube-apiserver and kube-controller-manager built from
Go modules (scripts/build_k8s.sh, cached), with Istio's CRDs and Pod Security admission on. No
kubelet runs, so pods are admitted but never start. Without Go the tests skip on a developer
machine, and fail under CI=true: CI must never go green by skipping them.

`kube_node` is a `support.k8s_node.KubeNode`: a second control plane bound to a test bridge, with
a real kubelet, scheduler, kube-proxy, containerd and a local registry (root only). It is its own
bed, not `kube` with a node added: many tests on `kube` write the pod status a kubelet would and
rely on pods never starting; a real kubelet and scheduler would fight them over those pods. The
session ends with the line `real node: kubelet ..., containerd ..., pods ready: N, images built: M`.

`make test` and `make test-k8s` build the binaries before pytest starts. A bare `pytest` on a
machine with Go but no build does it at the end of collection (outside every test's timeout).
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from support.ci import unavailable
from support.k8s import (
    RESTRICTED_LABELS,
    KubeStartError,
    KubeTestbed,
    KubeUnavailable,
    build_testbed,
    testbed_built,
)
from support.k8s_node import KubeNode, build_node
from support.package_index import PackageIndex
from support.real_platform import Platform, installed_platform

_build_error: list[Exception] = []
_node_error: list[Exception] = []
#: The session's node figures for the terminal summary (filled when `kube_node` stops).
_node_summary: dict[str, str | int] = {}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries once, before any test starts, when a selected test needs them.

    Done here rather than in the fixtures because a cold build takes far longer than a test's
    timeout; a failure is kept and reported by the `kube` or `kube_node` fixture.
    """
    fixtures = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    if not fixtures & {"kube", "kube_node"} or KubeTestbed.unavailable_reason() is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not testbed_built():
        reporter.write_line("building the Kubernetes test bed (scripts/build_k8s.sh) ...")
    try:
        build_testbed()
    except (KubeUnavailable, KubeStartError) as exc:
        _build_error.append(exc)
    if "kube_node" in fixtures and KubeNode.unavailable_reason() is None:
        try:
            build_node()
        except (KubeUnavailable, KubeStartError) as exc:
            _node_error.append(exc)


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeTestbed]:
    """etcd + kube-apiserver + kube-controller-manager for the whole session, Istio CRDs installed.

    Tests isolate themselves by namespace (`namespace`, `k8s_name`), not by their own server.
    """
    reason = KubeTestbed.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    if _build_error:
        error = _build_error[0]
        if isinstance(error, KubeUnavailable):
            unavailable(str(error))
        raise error
    bed = KubeTestbed()
    try:
        bed.start()
    except KubeUnavailable as exc:
        unavailable(str(exc))
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="session")
def kube_node() -> Iterator[KubeNode]:
    """A real node (kubelet, containerd, scheduler, kube-proxy, registry) on its own control plane.

    `kube_node.bed` is its `KubeTestbed` (API clients, users, namespaces); see support.k8s_node.
    """
    reason = KubeNode.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    for error in _node_error + _build_error:
        if isinstance(error, KubeUnavailable):
            unavailable(str(error))
        raise error
    node = KubeNode()
    try:
        node.start()
    except KubeUnavailable as exc:
        unavailable(str(exc))
    try:
        yield node
    finally:
        if node.bed.running:
            _node_summary["kubelet"] = node.kubelet_version
            _node_summary["containerd"] = node.containerd_version
        _node_summary["pods_ready"] = node.pods_ready
        node.stop()


@pytest.fixture(scope="session")
def real_platform(
    kube_node: KubeNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """`aerogrid platform install` on the node, its images in the node's registry, and a
    package index on the node's IP for the build Job's pip (support.real_platform)."""
    with (
        PackageIndex(kube_node.ip) as index,
        installed_platform(
            kube_node, tmp_path_factory.mktemp("platform"), package_index=index.url
        ) as installed,
    ):
        yield installed


def _images_built() -> int:
    """Images support.images built or reused in this session (0 when none were asked for)."""
    images = sys.modules.get("support.images")
    built = getattr(images, "built_images", None)
    cache_info = getattr(built, "cache_info", None)
    if built is None or cache_info is None or cache_info().currsize == 0:
        return 0
    return len(built())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line of what ran for real on the node (the issue's `make test-k8s` summary)."""
    if "kubelet" in _node_summary:
        terminalreporter.write_line(
            f"real node: kubelet {_node_summary['kubelet']}, "
            f"containerd {_node_summary['containerd']}, "
            f"pods ready: {_node_summary['pods_ready']}, images built: {_images_built()}"
        )


@pytest.fixture
def k8s_name(request: pytest.FixtureRequest) -> str:
    """A fresh DNS-1123 label (usable as a namespace or object name): the test name + a suffix."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{base or 't'}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(kube: KubeTestbed, k8s_name: str) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted`, deleted after the test.

    Its `default` ServiceAccount exists before the test starts (pods need it).
    """
    kube.create_namespace(k8s_name, labels=RESTRICTED_LABELS)
    try:
        yield k8s_name
    finally:
        with kube.api_client() as api:
            # The namespace controller finishes the deletion in the background.
            client.CoreV1Api(api).delete_namespace(k8s_name)
