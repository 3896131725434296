"""Fixtures for the cloud tests: one real Kubernetes control plane for the session.

`kube` is a `support.k8s.KubeTestbed`: etcd, kube-apiserver and kube-controller-manager built from
Go modules (scripts/build_k8s.sh, cached), with Istio's CRDs and Pod Security admission on. No
kubelet runs, so pods are admitted but never start. Without Go the tests skip on a developer
machine, and fail under CI=true: CI must never go green by skipping them.

`make test` and `make test-k8s` build the binaries before pytest starts. A bare `pytest` on a
machine with Go but no build does it at the end of collection (outside every test's timeout).
"""

from __future__ import annotations

import re
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

_build_error: list[Exception] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the binaries once, before any test starts, when a selected test needs them.

    Done here rather than in the fixture because a cold build takes far longer than a test's
    timeout; a failure is kept and reported by the `kube` fixture.
    """
    if not any("kube" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    if KubeTestbed.unavailable_reason() is not None:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not testbed_built():
        reporter.write_line("building the Kubernetes test bed (scripts/build_k8s.sh) ...")
    try:
        build_testbed()
    except (KubeUnavailable, KubeStartError) as exc:
        _build_error.append(exc)


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
