"""The one broker probe (`aerogrid.engine.connectivity`): how it names each failure.

The cases that need a real broker (a wrong password, an untrusted CA) run in
tests/devkit/test_broker_modes.py and tests/runtime/integration/test_secure_brokers.py; these need
none: a closed port, an unknown host, and the classification of the errors clients raise.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl

import pytest
from aiokafka.errors import KafkaConnectionError

from aerogrid.engine.connectivity import (
    Failure,
    ServerFailure,
    classify,
    describe_failure,
    diagnose_connection,
    probe,
)
from aerogrid.errors import BrokerConnectionError
from aerogrid.net import free_port
from aerogrid.settings import BrokerSettings


@pytest.mark.parametrize(
    ("exc", "failure", "short"),
    [
        (
            ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
            Failure.REFUSED,
            "connection refused",
        ),
        (
            OSError(f"[Errno {errno.ECONNREFUSED}] Connect call failed"),
            Failure.REFUSED,
            "connection refused",
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            Failure.UNKNOWN_HOST,
            "unknown host (Name or service not known)",
        ),
        (TimeoutError(), Failure.TIMEOUT, "no answer within 3 s"),
        (OSError(errno.EHOSTUNREACH, "No route to host"), Failure.UNREACHABLE, "host unreachable"),
        (
            ssl.SSLCertVerificationError(
                1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
            ),
            Failure.TLS_VERIFY,
            None,
        ),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), Failure.TLS, None),
        (
            KafkaConnectionError("SaslAuthenticationFailed: Authentication failed"),
            Failure.AUTHENTICATION,
            "KafkaConnectionError: SaslAuthenticationFailed: Authentication failed",
        ),
        (ConnectionResetError(), Failure.CLOSED, "ConnectionResetError"),
        (KafkaConnectionError("Connection at 127.0.0.1:9 closed"), Failure.CLOSED, None),
        (ValueError("bad frame"), Failure.OTHER, "ValueError: bad frame"),
    ],
)
def test_each_failure_is_classified_once(
    exc: BaseException, failure: Failure, short: str | None
) -> None:
    assert classify(exc) is failure
    assert failure.network is (
        failure in (Failure.REFUSED, Failure.UNKNOWN_HOST, Failure.UNREACHABLE, Failure.TIMEOUT)
    )
    if short is not None:
        assert describe_failure(exc, 3.0) == short


def test_a_handshake_failure_is_explained_with_its_fix() -> None:
    settings = BrokerSettings.parse("kafka+sasl_ssl://alice:secret@kafka.test:9093")
    failure = ServerFailure(
        "kafka.test:9093",
        Failure.AUTHENTICATION,
        "x",
        "KafkaConnectionError: SaslAuthenticationFailed",
    )
    assert failure.explain(settings) == (
        "kafka.test:9093: authentication failed (check the user, password and mechanism): "
        "KafkaConnectionError: SaslAuthenticationFailed"
    )
    closed = ServerFailure("kafka.test:9093", Failure.CLOSED, "x", "ConnectionResetError")
    assert "does this listener speak SASL_SSL?" in closed.explain(settings)


def test_probe_of_a_closed_port_says_connection_refused_quickly() -> None:
    port = free_port()
    settings = BrokerSettings.parse(f"127.0.0.1:{port}")
    reach = asyncio.run(probe(settings, 3.0))
    assert not reach.ok and reach.answered == ""
    assert reach.cause == f"cannot reach 127.0.0.1:{port}: connection refused"
    assert [f.failure for f in reach.failures] == [Failure.REFUSED]


def test_probe_names_every_server_that_failed() -> None:
    first, second = free_port(), free_port()
    reach = asyncio.run(probe(BrokerSettings.parse(f"127.0.0.1:{first},127.0.0.1:{second}"), 3.0))
    assert reach.cause == (
        f"cannot reach 127.0.0.1:{first}: connection refused; "
        f"127.0.0.1:{second}: connection refused"
    )


def test_diagnosis_for_the_engine_explains_the_cause() -> None:
    port = free_port()
    error = asyncio.run(diagnose_connection(BrokerSettings.parse(f"127.0.0.1:{port}"), 3.0))
    assert isinstance(error, BrokerConnectionError)
    assert str(error).startswith(
        f"cannot connect to Kafka at 127.0.0.1:{port} (PLAINTEXT): 127.0.0.1:{port}: "
        "connection refused (is a broker listening there?): "
    )


def test_unloadable_tls_files_are_named() -> None:
    settings = BrokerSettings.parse("kafka+ssl://kafka.test:9093?cafile=/nonexistent/ca.pem")
    reach = asyncio.run(probe(settings, 1.0))
    assert not reach.ok and reach.cause.startswith("cannot load the TLS files: ")
    error = asyncio.run(diagnose_connection(settings, 1.0))
    assert "cannot load the TLS files" in str(error)
