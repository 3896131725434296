"""Shared fixtures: real brokers for the whole session, and unique names per test.

Brokers are session-scoped because starting Apache Kafka costs seconds; tests isolate themselves by
using `unique_name` for topics and groups instead. A missing prerequisite (Java, Maven, the tansu
binary) skips the tests that need it on a developer machine, but fails them when CI=true: CI must
never go green by skipping the broker tests.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

import pytest

from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings
from support.brokers import ApacheKafka, Broker, BrokerUnavailable, KafkaCluster, TansuBroker

# `tests/` has no __init__.py, so pytest puts tests/ itself on sys.path (for this rootdir conftest)
# and mypy names these modules `support.*`: import them as `support.brokers` to match both.
from support.ci import unavailable
from support.images import BuiltImage, ImagesBuildError, ImagesUnavailable, built_images
from support.node import NodeUnavailable, ensure_node_client
from support.schema_registry import RegistryUnavailable, TestRegistry

BROKER_FIXTURES = ("broker", "apache_kafka", "tansu", "kafka_cluster")
_B = TypeVar("_B", bound=Broker)


@pytest.fixture(scope="session", autouse=True)
def _devcert_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The local endpoint's development CA in a temporary folder: tests never make one in ~.

    Subprocesses (aerogrid dev, demo) inherit it through the environment.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AEROGRID_DEVCERT_DIR", str(tmp_path_factory.mktemp("devcert")))
        yield


def _session_broker(broker: _B) -> Iterator[_B]:
    reason = broker.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    try:
        broker.start()
    except BrokerUnavailable as exc:
        unavailable(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def apache_kafka() -> Iterator[ApacheKafka]:
    """One single-node KRaft Apache Kafka for the whole session."""
    yield from _session_broker(ApacheKafka())


@pytest.fixture(scope="session")
def tansu() -> Iterator[TansuBroker]:
    """One embedded broker (tansu, memory storage) for the whole session."""
    yield from _session_broker(TansuBroker())


@pytest.fixture(scope="module")
def kafka_cluster() -> Iterator[KafkaCluster]:
    """A three-node KRaft Apache Kafka (replication 3, min.insync.replicas 2) for one module.

    Module-scoped: it costs about 1 GB and several seconds, so only the modules using it start one.
    """
    yield from _session_broker(KafkaCluster())


@pytest.fixture(params=["kafka", "tansu"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each test using it runs once against Apache Kafka and once against tansu."""
    name = "apache_kafka" if request.param == "kafka" else "tansu"
    started: Broker = request.getfixturevalue(name)
    return started


def _session_registry(*, auth: bool) -> Iterator[TestRegistry]:
    try:
        registry = TestRegistry(auth=auth)
    except RegistryUnavailable as exc:
        unavailable(str(exc))
        raise
    try:
        registry.start()
        yield registry
    finally:
        registry.close()


@pytest.fixture(scope="session")
def schema_registry() -> Iterator[TestRegistry]:
    """One real Apicurio Registry for the session, started only when a test asks for it.

    `.url` is the Confluent-compatible API; `.stop()`/`.start()` keep schemas and ids (H2 file
    storage). A test that stops it must start it again before it returns.
    """
    yield from _session_registry(auth=False)


@pytest.fixture
async def registry_client(schema_registry: TestRegistry) -> AsyncIterator[SchemaRegistry]:
    """Our registry client on the session's real registry, closed after the test."""
    async with SchemaRegistry(RegistrySettings(url=schema_registry.url)) as client:
        yield client


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[TestRegistry]:
    """A second real registry that requires basic auth (`.username`, `.password`): Apicurio's
    own authentication, against a tiny OIDC issuer the test bed runs (support.oidc_issuer)."""
    yield from _session_registry(auth=True)


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary with tests/excel/node installed (the connect-es client)."""
    try:
        return ensure_node_client()
    except NodeUnavailable as exc:
        unavailable(str(exc))
        raise


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A fresh topic/group/app-name prefix: the test's name plus a random suffix."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"{base}-{uuid.uuid4().hex[:8]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a broker fixture with `kafka` (select with -m kafka)."""
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in BROKER_FIXTURES):
            item.add_marker(pytest.mark.kafka)


# -- the images (scripts/build_images.sh) ----------------------------------------------------

_images_error: list[Exception] = []


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the images before any test that needs them starts: a cold build takes minutes,
    more than a test's timeout (tests/cloud/conftest.py does the same for the Kubernetes
    binaries). `make test` has built them already (`make images`): then a 0.2 s no-op. A
    failure is kept for the `images` fixture to report."""
    if not any("images" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        built_images()
    except (ImagesUnavailable, ImagesBuildError) as exc:
        _images_error.append(exc)


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    """The built images (aerogrid-runtime, -platform, -builder) by name."""
    if _images_error:
        error = _images_error[0]
        if isinstance(error, ImagesUnavailable):
            unavailable(str(error))
        raise error
    try:
        return built_images()
    except ImagesUnavailable as exc:
        unavailable(str(exc))
        raise
