"""Why a broker cannot be reached: aiokafka's "Unable to bootstrap" error drops the cause.

One probe connection per bootstrap server, with the same TLS and SASL handshake as the
real clients, recovers it, so a wrong password or a missing CA says so in one line.
"""

from __future__ import annotations

import asyncio

from aiokafka.conn import create_conn
from aiokafka.protocol.metadata import MetadataRequest

from aerogrid.errors import BrokerConnectionError
from aerogrid.settings import BrokerSettings


async def diagnose_connection(settings: BrokerSettings) -> BrokerConnectionError:
    """Say why no bootstrap server answered: aiokafka's "Unable to bootstrap" drops it.

    One probe connection per server (the same TLS and SASL handshake) recovers the cause.
    """
    how = settings.security_protocol
    if how.startswith("SASL"):
        how += f", {settings.sasl_mechanism} as {settings.sasl_username!r}"
    options = settings.client_options()
    causes: list[str] = []
    for server in settings.bootstrap_servers:
        host, _, port = server.rpartition(":")
        conn = None
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host,
                    int(port),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=settings.security_protocol,
                    sasl_mechanism=settings.sasl_mechanism,
                    sasl_plain_username=settings.sasl_username,
                    sasl_plain_password=settings.sasl_password,
                ),
                10,
            )
            await asyncio.wait_for(conn.send(MetadataRequest([])), 10)
        except Exception as exc:
            text = str(exc) or type(exc).__name__
            if type(exc).__name__ not in text:
                text = f"{type(exc).__name__}: {text}"
            hint = ""
            if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
                hint = "authentication failed (check the user, password and mechanism): "
            elif "CERTIFICATE_VERIFY_FAILED" in text:
                hint = "TLS certificate verification failed (check cafile=): "
            elif isinstance(exc, ConnectionRefusedError) or "refused" in text.lower():
                hint = "connection refused (is a broker listening there?): "
            elif isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                hint = "cannot reach it: "
            elif "closed" in text or isinstance(exc, ConnectionError):
                hint = (
                    "the broker closed the connection (does this listener speak "
                    f"{settings.security_protocol}?): "
                )
            causes.append(f"{server}: {hint}{text}")
        else:
            causes.append(f"{server}: answers now (a transient failure?)")
        finally:
            if conn is not None:
                conn.close()
    return BrokerConnectionError(
        f"cannot connect to Kafka at {settings.bootstrap} ({how}): " + "; ".join(causes)
    )
