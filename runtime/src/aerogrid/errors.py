"""The errors the SDK raises, each naming what the user has to fix."""

from __future__ import annotations


class AeroGridError(Exception):
    """Base class of every AeroGrid error."""


class DecodeError(AeroGridError, ValueError):
    """A Kafka record's key or value does not match its declared type.

    `field` names the offending field as a path (`$.quantity`) when the decoder knows it.
    A ValueError too: a bad value, caught where bad values are.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class GridError(AeroGridError):
    """A grid was used wrongly: an unknown column, an unsupported cell value or key."""


class ConfigurationError(AeroGridError):
    """An app is declared wrongly (a bad broker URI, a duplicate grid, a bad option)."""


class AppLoadError(AeroGridError):
    """An app file cannot be loaded; the message points at the file and line."""


class BrokerConnectionError(AeroGridError):
    """No Kafka bootstrap server could be reached; the message says why (TLS, SASL, network)."""
