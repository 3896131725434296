"""Where the schema registry is and how to reach it: URL, basic auth, TLS and mTLS.

Mirrors `aerogrid.settings.BrokerSettings`: explicit values first, then the
AEROGRID_SCHEMA_REGISTRY* environment variables; credentials may also sit in the URL
(`https://user:pass@host/`), and are never shown in messages.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

from aerogrid.errors import ConfigurationError

ENV_URL = "AEROGRID_SCHEMA_REGISTRY"
ENV_USERNAME = "AEROGRID_SCHEMA_REGISTRY_USERNAME"
ENV_PASSWORD = "AEROGRID_SCHEMA_REGISTRY_PASSWORD"
ENV_CAFILE = "AEROGRID_SCHEMA_REGISTRY_CAFILE"
ENV_CERTFILE = "AEROGRID_SCHEMA_REGISTRY_CERTFILE"
ENV_KEYFILE = "AEROGRID_SCHEMA_REGISTRY_KEYFILE"
ENV_VERIFY = "AEROGRID_SCHEMA_REGISTRY_VERIFY"

#: How an app names its registry: the hint of every "no registry" message of the runtime.
NAME_A_REGISTRY = f"set {ENV_URL} or pass App(..., schema_registry=URL)"


def no_registry(needed_by: str = "", *, how: str = NAME_A_REGISTRY) -> str:
    """The one wording of a missing registry: who needs one, and how to name one.

    The devkit's tools say it with their own `how` (their --schema-registry option and
    the workspace's [schema_registry]), so a reader meets the same sentence everywhere.
    """
    who = f" for {needed_by}" if needed_by else ""
    return f"no schema registry is configured{who}: {how}"


@dataclass(frozen=True)
class RegistrySettings:
    """A Confluent-compatible registry's base URL (e.g. `.../apis/ccompat/v7`) and secrets."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: bool = True

    def __post_init__(self) -> None:
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                f"schema registry URL {_shown(self.url)!r} is not http(s)://host[:port][/path]"
            )
        # Credentials in the URL move to the fields, so the URL is safe to print.
        username = self.username or (unquote(parts.username) if parts.username else None)
        password = self.password or (unquote(parts.password) if parts.password else None)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), parts.query, ""))
        object.__setattr__(self, "url", clean)
        object.__setattr__(self, "username", username)
        object.__setattr__(self, "password", password)
        if self.username and not self.password:
            raise ConfigurationError(
                f"schema registry user {self.username!r} has no password "
                f"(in the URL or {ENV_PASSWORD})"
            )

    @classmethod
    def from_env(cls, url: str | None = None) -> RegistrySettings:
        """`url`, else AEROGRID_SCHEMA_REGISTRY; the other settings from the environment."""
        chosen = url or os.environ.get(ENV_URL)
        if not chosen:
            raise ConfigurationError(no_registry())
        verify = os.environ.get(ENV_VERIFY, "true").strip().lower()
        return cls(
            url=chosen,
            username=os.environ.get(ENV_USERNAME) or None,
            password=os.environ.get(ENV_PASSWORD) or None,
            cafile=os.environ.get(ENV_CAFILE) or None,
            certfile=os.environ.get(ENV_CERTFILE) or None,
            keyfile=os.environ.get(ENV_KEYFILE) or None,
            verify=verify not in ("false", "0", "no"),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for an https registry (CA, client certificate, verification)."""
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _shown(url: str) -> str:
    """`url` without credentials, for messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}://***@{rest.rsplit('@', 1)[-1]}" if sep and "@" in rest else url
