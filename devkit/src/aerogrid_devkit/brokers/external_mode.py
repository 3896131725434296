"""The external mode: a cluster run by others (TLS, SASL); nothing to start or stop."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aerogrid.engine.connectivity import security_summary
from aerogrid.errors import ConfigurationError
from aerogrid.settings import BrokerSettings
from aerogrid_devkit.brokers.base import BrokerError, BrokerStatus, check_kafka
from aerogrid_devkit.workspace import ExternalConfig

__all__ = ["ExternalMode"]


class ExternalMode:
    """A cluster run by others: nothing to start or stop, only to reach (TLS, SASL)."""

    mode = "external"
    #: Why this mode was chosen (set by `open_broker`; shown by the TUI).
    chosen_because = ""

    def __init__(self, config: ExternalConfig, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = environ

    @property
    def uri(self) -> str:
        return self.config.uri

    def settings(self) -> BrokerSettings:
        try:
            settings = self.config.resolve(self.environ)
        except ConfigurationError as exc:
            raise BrokerError(f"external broker: {exc}") from None
        for key, path in (
            ("ca_file", settings.ssl_cafile),
            ("cert_file", settings.ssl_certfile),
            ("key_file", settings.ssl_keyfile),
        ):
            if path and not Path(path).is_file():
                raise BrokerError(f"external broker: [broker.tls] {key} {path} does not exist")
        return settings

    def app_env(self) -> dict[str, str]:
        env = {"AEROGRID_BROKER": self.uri}
        settings = self.settings()
        if settings.sasl_username and settings.sasl_password:
            env["AEROGRID_SASL_USERNAME"] = settings.sasl_username
            env["AEROGRID_SASL_PASSWORD"] = settings.sasl_password
        return env

    def status(self) -> BrokerStatus:
        bootstrap = self.config.settings.bootstrap
        try:
            settings = self.settings()
        except BrokerError as exc:
            return BrokerStatus(self.mode, False, bootstrap, str(exc))
        reach = check_kafka(settings)
        if not reach.ok:
            return BrokerStatus(self.mode, False, bootstrap, reach.cause)
        return BrokerStatus(
            self.mode,
            True,
            bootstrap,
            f"external Kafka at {bootstrap} answers ({security_summary(settings)})",
        )

    def up(self) -> BrokerStatus:
        found = self.status()
        return BrokerStatus(
            self.mode,
            found.running,
            found.bootstrap,
            f"external broker: nothing to start (aerogrid does not run it); {found.detail}",
        )

    def down(self, *, purge: bool = False) -> BrokerStatus:
        found = self.status()
        return BrokerStatus(
            self.mode,
            found.running,
            found.bootstrap,
            f"external broker: nothing to stop (aerogrid does not run it); {found.detail}",
        )
