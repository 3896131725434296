"""Can Kafka be reached, and if not, why: one probe and one way of naming what went wrong.

aiokafka's "Unable to bootstrap" error drops the cause. One probe connection per bootstrap
server, with the same TLS and SASL handshake as the real clients and a metadata request,
recovers it, so a closed port, a wrong password or a missing CA says so in one line.
The engine raises `diagnose_connection`'s error when its producer cannot start,
`health.BrokerWatch` names an outage with `describe_failure`, and the devkit's broker
modes (`aerogrid broker status`, the Docker start-up wait, the TUI) call `probe`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from aerogrid.errors import BrokerConnectionError
from aerogrid.settings import BrokerSettings

__all__ = [
    "DIAGNOSE_TIMEOUT_SECONDS",
    "Failure",
    "Reachability",
    "ServerFailure",
    "classify",
    "describe_failure",
    "diagnose_connection",
    "probe",
    "security_summary",
]

#: Seconds the engine's diagnosis may wait on each server (it runs once, at a failure).
DIAGNOSE_TIMEOUT_SECONDS = 10.0


class Failure(StrEnum):
    """Why one bootstrap server did not answer."""

    REFUSED = "refused"
    UNKNOWN_HOST = "unknown host"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    TLS_VERIFY = "tls verify"
    TLS = "tls"
    AUTHENTICATION = "authentication"
    CLOSED = "closed"
    OTHER = "other"

    @property
    def network(self) -> bool:
        """Nothing was said to Kafka yet (as opposed to a refused handshake)."""
        return self in _NETWORK


_NETWORK = frozenset({Failure.REFUSED, Failure.UNKNOWN_HOST, Failure.UNREACHABLE, Failure.TIMEOUT})


def classify(exc: BaseException) -> Failure:
    """The kind of a failed connection attempt, from the exception the client raised."""
    text = str(exc)
    if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
        return Failure.AUTHENTICATION
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return Failure.TLS_VERIFY
    if (
        isinstance(exc, ConnectionRefusedError)
        or f"[Errno {errno.ECONNREFUSED}]" in text
        or "refused" in text.lower()
    ):
        return Failure.REFUSED
    if isinstance(exc, socket.gaierror):
        return Failure.UNKNOWN_HOST
    if isinstance(exc, TimeoutError):
        return Failure.TIMEOUT
    if isinstance(exc, ssl.SSLError):
        return Failure.TLS
    if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
        return Failure.UNREACHABLE
    if isinstance(exc, ConnectionError) or "closed" in text:
        return Failure.CLOSED
    return Failure.OTHER


def _error_text(exc: BaseException) -> str:
    """ "Type: message", without repeating a type the message already names."""
    text = str(exc)
    name = type(exc).__name__
    if not text:
        return name
    return text if name in text else f"{name}: {text}"


def describe_failure(exc: BaseException, timeout: float) -> str:
    """A short cause for logs and status lines: "connection refused", "no answer within 3 s"."""
    failure = classify(exc)
    if failure is Failure.REFUSED and (
        isinstance(exc, ConnectionRefusedError) or f"[Errno {errno.ECONNREFUSED}]" in str(exc)
    ):
        return "connection refused"
    if failure is Failure.UNKNOWN_HOST and isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if failure is Failure.TIMEOUT:
        return f"no answer within {timeout:g} s"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    return _error_text(exc)


@dataclass(frozen=True)
class ServerFailure:
    """One bootstrap server that did not answer, and why."""

    server: str
    failure: Failure
    #: The short cause (`describe_failure`).
    short: str
    #: The client's own error, "Type: message".
    error: str

    def explain(self, settings: BrokerSettings) -> str:
        """The cause with its usual fix, for a user reading one line."""
        hint = {
            Failure.AUTHENTICATION: "authentication failed (check the user, password and "
            "mechanism): ",
            Failure.TLS_VERIFY: "TLS certificate verification failed (check cafile=): ",
            Failure.TLS: "the TLS handshake failed (does this listener speak TLS?): ",
            Failure.REFUSED: "connection refused (is a broker listening there?): ",
            Failure.UNKNOWN_HOST: "cannot reach it: ",
            Failure.UNREACHABLE: "cannot reach it: ",
            Failure.TIMEOUT: "cannot reach it: ",
            Failure.CLOSED: "the broker closed the connection (does this listener speak "
            f"{settings.security_protocol}?): ",
        }.get(self.failure, "")
        return f"{self.server}: {hint}{self.error}"


@dataclass(frozen=True)
class Reachability:
    """One probe of the cluster: ok, else why not; and the brokers the cluster advertises."""

    ok: bool
    #: Why not, in one line ("" when ok).
    cause: str = ""
    #: host:port of each broker in the metadata answer (what clients connect to next).
    advertised: tuple[str, ...] = ()
    #: The servers that did not answer, in order (before the one that did, if any).
    failures: tuple[ServerFailure, ...] = ()
    #: The server that answered ("" when none did).
    answered: str = ""


def security_summary(settings: BrokerSettings) -> str:
    """How the clients connect: "SASL_SSL, SCRAM-SHA-512 as 'alice'" (never a password)."""
    how = settings.security_protocol
    if how.startswith("SASL"):
        how += f", {settings.sasl_mechanism} as {settings.sasl_username!r}"
    return how


async def probe(settings: BrokerSettings, timeout: float) -> Reachability:
    """Connect as the clients do (TLS, SASL, ApiVersions) and ask for metadata.

    Tries each bootstrap server in turn, `timeout` seconds each, until one answers. The
    cause names network failures shortly ("cannot reach host:port: connection refused")
    and explains a refused handshake (TLS, SASL) with its usual fix.
    """
    try:
        options = settings.client_options()
    except (OSError, ValueError) as exc:
        return Reachability(False, f"cannot load the TLS files: {exc}")
    failures: list[ServerFailure] = []
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        conn = None
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    request_timeout_ms=int(timeout * 1000),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=settings.security_protocol,
                    sasl_mechanism=settings.sasl_mechanism,
                    sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=settings.sasl_password,
                ),
                timeout,
            )
            answer = await asyncio.wait_for(conn.send(MetadataRequest([])), timeout)
        except Exception as exc:
            failures.append(
                ServerFailure(
                    server, classify(exc), describe_failure(exc, timeout), _error_text(exc)
                )
            )
            continue
        finally:
            if conn is not None:
                conn.close()
        advertised = tuple(f"{b[1]}:{b[2]}" for b in getattr(answer, "brokers", ()))
        return Reachability(True, advertised=advertised, failures=tuple(failures), answered=server)
    if all(f.failure.network for f in failures):
        cause = "cannot reach " + "; ".join(f"{f.server}: {f.short}" for f in failures)
    else:
        cause = _explained(settings, [f.explain(settings) for f in failures])
    return Reachability(False, cause, failures=tuple(failures))


def _explained(settings: BrokerSettings, causes: list[str]) -> str:
    return (
        f"cannot connect to Kafka at {settings.bootstrap} ({security_summary(settings)}): "
        + "; ".join(causes)
    )


async def diagnose_connection(
    settings: BrokerSettings, timeout: float = DIAGNOSE_TIMEOUT_SECONDS
) -> BrokerConnectionError:
    """Say why no bootstrap server answered the client: aiokafka's "Unable to bootstrap"
    drops it. `probe` recovers the cause of each server's failure."""
    reach = await probe(settings, timeout)
    if not reach.failures and not reach.ok:  # the TLS files could not be loaded
        return BrokerConnectionError(_explained(settings, [reach.cause]))
    causes = [f.explain(settings) for f in reach.failures]
    if reach.ok:
        causes.append(f"{reach.answered}: answers now (a transient failure?)")
    return BrokerConnectionError(_explained(settings, causes))
