"""TLS and SASL end to end: `aerogrid run` against a real Apache Kafka with secured listeners.

One Apache Kafka for this module opens, next to its PLAINTEXT listener, SASL_PLAINTEXT (PLAIN,
SCRAM-SHA-256, SCRAM-SHA-512), SSL, SASL_SSL and MTLS (SSL with a required client certificate)
listeners, its certificate signed by a CA made for the module (`support.tls`). Each test runs
the real `aerogrid run` with `--broker <URI>` in the README's syntax, produces orders over the
same listener with aiokafka configured by `BrokerSettings.parse(uri).client_options()`, and
reads the grid through the app's gRPC endpoint. Refusals (a wrong password, an unknown CA)
must end `aerogrid run` quickly with a non-zero code and a log that says why, and no password
may ever reach a repr or the runner's log.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

# The same skip-locally / fail-in-CI logic as the session brokers (tests/ is on sys.path).
from conftest import _session_broker

import aerogrid
from aerogrid.client import GridClient
from aerogrid.settings import BrokerSettings
from support.apps import RunningApp, write_orders_app
from support.brokers import ApacheKafka, KafkaSecurity
from support.tls import TestPKI, make_test_pki

pytestmark = pytest.mark.timeout(300)

USER, PASSWORD = "alice", "alice-secret"
WRONG_PASSWORD = "not-alices-password"
#: A refused `aerogrid run` must exit within this many seconds (it takes about 1 s).
REFUSAL_SECONDS = 20.0

Records = list[tuple[bytes, bytes]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def secure_kafka(pki: TestPKI) -> Iterator[ApacheKafka]:
    """One Apache Kafka with every secured listener, for this module."""
    security = KafkaSecurity(
        users={USER: PASSWORD},
        mechanisms=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        tls_cert_chain=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca_cert,
    )
    yield from _session_broker(ApacheKafka(security=security))


# --- helpers ---------------------------------------------------------------------------------


def orders(n: int, seed: int) -> Records:
    rng = random.Random(seed)
    return [
        (
            f"order-{seed}-{i}".encode(),
            json.dumps({"product": f"p{rng.randrange(5)}", "quantity": rng.randint(1, 9)}).encode(),
        )
        for i in range(n)
    ]


def expected_sums(records: Records) -> dict[str, dict[str, int]]:
    units: Counter[str] = Counter()
    count: Counter[str] = Counter()
    for _, value in records:
        order = json.loads(value)
        units[order["product"]] += order["quantity"]
        count[order["product"]] += 1
    return {p: {"units_sold": units[p], "orders": count[p]} for p in units}


async def produce_secure(uri: str, topic: str, records: Records) -> None:
    """Produce over the secured listener, configured exactly as the runtime configures itself."""
    options = BrokerSettings.parse(uri).client_options()
    producer = AIOKafkaProducer(**options, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=k, value=v) for k, v in records]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def converged(
    target: str, app: str, want: object, timeout: float = 30.0
) -> dict[str, dict[str, object]]:
    """Poll the app's product_sum grid until it equals `want` (or return the last snapshot)."""
    deadline = time.monotonic() + timeout
    rows: dict[str, dict[str, object]] = {}
    async with GridClient(target) as client:
        while time.monotonic() < deadline:
            rows = await client.snapshot(app, "product_sum")
            if rows == want:
                return rows
            await asyncio.sleep(0.1)
    return rows


def app_log(app: RunningApp) -> str:
    return app.log_file.read_text(errors="replace") if app.log_file.exists() else ""


def assert_no_secrets(text: str) -> None:
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in text, f"a password leaked into:\n{text[-3000:]}"


async def run_orders_through(
    uri: str, tmp_path: Path, name: str, *, env: dict[str, str] | None = None, seed: int = 1
) -> None:
    """`aerogrid run` on `uri`, orders produced over `uri`, the grid checked, a clean stop."""
    topic = f"{name}-orders"
    path = write_orders_app(tmp_path, name, topic, partitions=2)
    records = orders(300, seed)
    want = expected_sums(records)
    app = RunningApp(path, uri, env=env)
    try:
        app.start(timeout=60)
        # Transactions work through the secured listener too (nothing fell back to checkpoints).
        assert app.info["guarantee"] == "exactly-once", app.log_tail()
        await produce_secure(uri, topic, records)
        assert await converged(app.target, name, want) == want, app.log_tail()
        assert app.terminate() == 0, app.log_tail()
    finally:
        app.stop()
    assert_no_secrets(app_log(app))


def start_refused(uri: str, tmp_path: Path, name: str) -> tuple[str, float]:
    """Start `aerogrid run` on `uri` expecting a refusal; return its log and how long it took."""
    path = write_orders_app(tmp_path, name, f"{name}-orders")
    app = RunningApp(path, uri)
    started = time.monotonic()
    try:
        # RunningApp.start raises "app exited with N" (or kills it: "not ready in ...s").
        with pytest.raises(RuntimeError, match=r"^app exited with 1:"):
            app.start(timeout=REFUSAL_SECONDS)
    finally:
        app.stop()
    elapsed = time.monotonic() - started
    assert not app.ready_file.exists()
    return app_log(app), elapsed


def sasl_uri(kafka: ApacheKafka, listener: str, mechanism: str, **query: str) -> str:
    scheme = "kafka+sasl_ssl" if listener == "SASL_SSL" else "kafka+sasl"
    password = query.pop("password", PASSWORD)
    params = "&".join(f"{k}={v}" for k, v in {"mechanism": mechanism, **query}.items())
    return f"{scheme}://{USER}:{password}@{kafka.address(listener)}?{params}"


# --- it works --------------------------------------------------------------------------------


@pytest.mark.kafka
async def test_sasl_plain(secure_kafka: ApacheKafka, unique_name: str, tmp_path: Path) -> None:
    uri = sasl_uri(secure_kafka, "SASL_PLAINTEXT", "PLAIN")
    await run_orders_through(uri, tmp_path, unique_name, seed=1)


@pytest.mark.kafka
async def test_sasl_scram_sha_256(
    secure_kafka: ApacheKafka, unique_name: str, tmp_path: Path
) -> None:
    uri = sasl_uri(secure_kafka, "SASL_PLAINTEXT", "SCRAM-SHA-256")
    await run_orders_through(uri, tmp_path, unique_name, seed=2)


@pytest.mark.kafka
async def test_sasl_ssl_scram_sha_512_with_cafile(
    secure_kafka: ApacheKafka, pki: TestPKI, unique_name: str, tmp_path: Path
) -> None:
    # The README's own example, blanks included.
    uri = sasl_uri(
        secure_kafka,
        "SASL_SSL",
        "SCRAM-SHA-512",
        cafile=str(pki.ca_cert),
        certfile="",
        keyfile="",
        verify="",
    )
    await run_orders_through(uri, tmp_path, unique_name, seed=3)


@pytest.mark.kafka
async def test_tls_with_cafile(
    secure_kafka: ApacheKafka, pki: TestPKI, unique_name: str, tmp_path: Path
) -> None:
    uri = f"kafka+ssl://{secure_kafka.address('SSL')}?cafile={pki.ca_cert}"
    await run_orders_through(uri, tmp_path, unique_name, seed=4)


@pytest.mark.kafka
async def test_mutual_tls_with_client_certificate(
    secure_kafka: ApacheKafka, pki: TestPKI, unique_name: str, tmp_path: Path
) -> None:
    where = secure_kafka.address("MTLS")
    uri = (
        f"kafka+ssl://{where}?cafile={pki.ca_cert}"
        f"&certfile={pki.client_cert}&keyfile={pki.client_key}"
    )
    await run_orders_through(uri, tmp_path, unique_name, seed=5)


@pytest.mark.kafka
async def test_sasl_secrets_from_the_environment(
    secure_kafka: ApacheKafka, pki: TestPKI, unique_name: str, tmp_path: Path
) -> None:
    """README: AEROGRID_SASL_USERNAME/_PASSWORD keep the secret out of the URI (and argv)."""
    where = secure_kafka.address("SASL_SSL")
    uri = f"kafka+sasl_ssl://{where}?mechanism=SCRAM-SHA-512&cafile={pki.ca_cert}"
    env = {"AEROGRID_SASL_USERNAME": USER, "AEROGRID_SASL_PASSWORD": PASSWORD}
    topic = f"{unique_name}-orders"
    path = write_orders_app(tmp_path, unique_name, topic, partitions=1)
    records = orders(50, seed=6)
    want = expected_sums(records)
    with RunningApp(path, uri, env=env) as app:
        await produce_secure(
            sasl_uri(secure_kafka, "SASL_SSL", "PLAIN", cafile=str(pki.ca_cert)), topic, records
        )
        assert await converged(app.target, unique_name, want) == want
    assert_no_secrets(app_log(app))


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.parametrize(
    ("listener", "mechanism"),
    [("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-512")],
)
def test_wrong_password_exits_nonzero_saying_authentication_failed(
    secure_kafka: ApacheKafka,
    pki: TestPKI,
    unique_name: str,
    tmp_path: Path,
    listener: str,
    mechanism: str,
) -> None:
    tls = {"cafile": str(pki.ca_cert)} if listener == "SASL_SSL" else {}
    uri = sasl_uri(secure_kafka, listener, mechanism, password=WRONG_PASSWORD, **tls)
    log, elapsed = start_refused(uri, tmp_path, unique_name)
    assert elapsed < REFUSAL_SECONDS
    assert "Authentication failed" in log, log
    assert "SaslAuthenticationFailed" in log, log
    assert_no_secrets(log)


@pytest.mark.kafka
def test_tls_without_the_ca_fails_certificate_verification(
    secure_kafka: ApacheKafka, unique_name: str, tmp_path: Path
) -> None:
    uri = f"kafka+ssl://{secure_kafka.address('SSL')}"  # verification on, system CAs only
    log, elapsed = start_refused(uri, tmp_path, unique_name)
    assert elapsed < REFUSAL_SECONDS
    assert "CERTIFICATE_VERIFY_FAILED" in log, log


@pytest.mark.kafka
def test_the_runner_itself_says_authentication_failed(
    secure_kafka: ApacheKafka, unique_name: str, tmp_path: Path
) -> None:
    """Stricter than the test above: the cause in AeroGrid's own words, nothing misleading
    (no fallback to checkpoints on a refused connection, no producer left open)."""
    uri = sasl_uri(secure_kafka, "SASL_PLAINTEXT", "SCRAM-SHA-256", password=WRONG_PASSWORD)
    log, _ = start_refused(uri, tmp_path, unique_name)
    assert "no usable transactions" not in log, log
    assert "Unclosed AIOKafkaProducer" not in log, log
    failed = [line for line in log.splitlines() if "aerogrid.runner" in line and "failed:" in line]
    assert len(failed) == 1, log
    assert "authentication failed" in failed[0].lower(), log
    assert_no_secrets(log)


# --- secrets stay secret (no broker) -----------------------------------------------------------


def test_passwords_never_appear_in_settings_reprs_or_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AEROGRID_BROKER", "AEROGRID_SASL_USERNAME", "AEROGRID_SASL_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    uri = f"kafka+sasl_ssl://{USER}:{PASSWORD}@127.0.0.1:9093?mechanism=SCRAM-SHA-512"
    settings = BrokerSettings.parse(uri)
    assert settings.sasl_password == PASSWORD
    assert settings.client_options()["sasl_plain_password"] == PASSWORD
    for text in (repr(settings), str(settings), f"{settings}", repr(aerogrid.App("x", uri).broker)):
        assert_no_secrets(text)
    # An error about the URI must not echo the password either.
    with pytest.raises(aerogrid.ConfigurationError) as bad_scheme:
        BrokerSettings.parse(uri.replace("kafka+sasl_ssl", "kafka+scram"))
    assert_no_secrets(str(bad_scheme.value))
    assert "kafka+scram" in str(bad_scheme.value)
    # Secrets from the environment (the URI without them; or the user in it, the password not).
    monkeypatch.setenv("AEROGRID_SASL_USERNAME", USER)
    monkeypatch.setenv("AEROGRID_SASL_PASSWORD", PASSWORD)
    for from_env in (
        BrokerSettings.from_env("kafka+sasl://127.0.0.1:9092?mechanism=SCRAM-SHA-256"),
        BrokerSettings.from_env(f"kafka+sasl://{USER}@127.0.0.1:9092?mechanism=PLAIN"),
    ):
        assert (from_env.sasl_username, from_env.sasl_password) == (USER, PASSWORD)
        assert_no_secrets(repr(from_env))
    # A SASL user with no password anywhere is a configuration error, not an obscure failure.
    monkeypatch.delenv("AEROGRID_SASL_PASSWORD")
    with pytest.raises(aerogrid.ConfigurationError, match="no password"):
        BrokerSettings.from_env(f"kafka+sasl://{USER}@127.0.0.1:9092?mechanism=SCRAM-SHA-512")
