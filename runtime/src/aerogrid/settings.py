"""Broker connection settings: bootstrap servers, TLS and SASL for company clusters."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aerogrid.errors import ConfigurationError

DEFAULT_BROKER = "localhost:9092"
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class BrokerSettings:
    """Where the Kafka cluster is and how to reach it.

    Parse a URI with `BrokerSettings.parse`:
    `host:port[,host:port]`, `kafka://host:port`, `kafka+ssl://host:port` (TLS), and
    `kafka+sasl_ssl://user:pass@host:port?mechanism=SCRAM-SHA-512&cafile=/ca.pem`.
    Query options: mechanism, cafile, certfile, keyfile, verify (true|false).
    """

    bootstrap_servers: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_verify: bool = True

    @classmethod
    def parse(cls, uri: str) -> BrokerSettings:
        settings = cls.parse_unchecked(uri)
        settings.validate()
        return settings

    @classmethod
    def parse_unchecked(cls, uri: str) -> BrokerSettings:
        """`parse` without `validate` (so `from_env` can fill in SASL secrets first)."""
        uri = uri.strip()
        if not uri:
            raise ConfigurationError("empty broker address")
        if "://" not in uri:
            return cls(bootstrap_servers=_split_hosts(uri))
        scheme, _, rest = uri.partition("://")
        scheme = scheme.lower()
        parts = urlsplit("//" + rest)
        protocols = {
            "kafka": "PLAINTEXT",
            "kafka+ssl": "SSL",
            "kafka+sasl": "SASL_PLAINTEXT",
            "kafka+sasl_plaintext": "SASL_PLAINTEXT",
            "kafka+sasl_ssl": "SASL_SSL",
        }
        if scheme not in protocols:
            # Never echo the credentials: show what follows the last '@' only.
            shown = f"{scheme}://***@{rest.rsplit('@', 1)[-1]}" if "@" in rest else uri
            raise ConfigurationError(
                f"unknown broker scheme {scheme!r} in {shown!r}: "
                f"use one of {', '.join(sorted(protocols))}"
            )
        netloc = parts.netloc.rsplit("@", 1)[-1]
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        protocol = protocols[scheme]
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        mechanism = query.get("mechanism", "PLAIN" if protocol.startswith("SASL") else None)
        return cls(
            bootstrap_servers=_split_hosts(netloc),
            security_protocol=protocol,
            sasl_mechanism=mechanism.upper() if mechanism else None,
            sasl_username=username,
            sasl_password=password,
            ssl_cafile=query.get("cafile"),
            ssl_certfile=query.get("certfile"),
            ssl_keyfile=query.get("keyfile"),
            ssl_verify=query.get("verify", "true").lower() not in ("false", "0", "no"),
        )

    @classmethod
    def from_env(cls, explicit: str | None = None) -> BrokerSettings:
        """`explicit`, else AEROGRID_BROKER, else localhost:9092; SASL secrets from env.

        AEROGRID_SASL_USERNAME and AEROGRID_SASL_PASSWORD apply when the URI has no user;
        AEROGRID_SASL_PASSWORD alone also supplies the password of a URI that names the
        user without one (`kafka+sasl_ssl://alice@host:9093?...`), unless
        AEROGRID_SASL_USERNAME names someone else.
        """
        uri = explicit or os.environ.get("AEROGRID_BROKER") or DEFAULT_BROKER
        settings = cls.parse_unchecked(uri)
        user = os.environ.get("AEROGRID_SASL_USERNAME")
        password = os.environ.get("AEROGRID_SASL_PASSWORD")
        if user and settings.sasl_username is None:
            settings = replace(settings, sasl_username=user, sasl_password=password)
        elif (
            password
            and settings.sasl_password is None
            and settings.sasl_username is not None
            and user in (None, "", settings.sasl_username)
        ):
            settings = replace(settings, sasl_password=password)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.security_protocol.startswith("SASL"):
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigurationError(
                    f"unsupported SASL mechanism {self.sasl_mechanism!r}: "
                    f"use {', '.join(SASL_MECHANISMS)}"
                )
            if not self.sasl_username:
                raise ConfigurationError(
                    "SASL needs a username (in the URI or AEROGRID_SASL_USERNAME)"
                )
            if not self.sasl_password:
                # aiokafka would fail later and obscurely (PLAIN: ValueError; SCRAM:
                # AttributeError on None.encode inside the connection).
                raise ConfigurationError(
                    f"SASL user {self.sasl_username!r} has no password "
                    "(in the URI or AEROGRID_SASL_PASSWORD)"
                )

    @property
    def bootstrap(self) -> str:
        return ",".join(self.bootstrap_servers)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_context"] = self.ssl_context()
        if self.security_protocol.startswith("SASL"):
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        return options

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        if not self.ssl_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _split_hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in text.split(",") if h.strip())
    if not hosts:
        raise ConfigurationError(f"no broker host in {text!r}")
    for host in hosts:
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit():
            raise ConfigurationError(f"broker address {host!r} is not host:port")
    return hosts
