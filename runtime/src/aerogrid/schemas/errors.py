"""The schema registry's errors, split by what the caller does about each.

`RegistryUnavailable` is transient (wait and retry: the engine pauses, nothing is
dead-lettered); `SchemaNotFound` and a bad payload are the record's fault (dead letter);
`RegistryAuthError` and `SchemaRejected` need a person (wrong credentials, an
incompatible schema). The client never retries itself: the retry policy lives in the
engine, in one place.
"""

from __future__ import annotations

from aerogrid.errors import AeroGridError, ConfigurationError


class SchemaRegistryError(AeroGridError):
    """Base class of every schema registry error; `url` is the registry's base URL."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class RegistryUnavailable(SchemaRegistryError):
    """The registry cannot answer now: connection refused or reset, timeout, 5xx, 429.

    Transient by definition: records waiting on it must wait, not be dead-lettered.
    """


class SchemaNotFound(SchemaRegistryError):
    """The registry answered that a schema id (or a subject's version) does not exist."""

    def __init__(self, message: str, *, url: str, schema_id: int | None = None) -> None:
        super().__init__(message, url=url)
        self.schema_id = schema_id


class RegistryAuthError(SchemaRegistryError, ConfigurationError):
    """The registry refused our credentials (401) or their rights (403).

    A ConfigurationError too: retrying does not help, the settings must change.
    """


class SchemaRejected(SchemaRegistryError):
    """The registry refused to register a schema (409 incompatible, 422 invalid).

    `reason` is the registry's own message, which names the incompatibility.
    """

    def __init__(self, message: str, *, url: str, subject: str, reason: str) -> None:
        super().__init__(message, url=url)
        self.subject = subject
        self.reason = reason


class SchemaNotLoaded(AeroGridError, LookupError):
    """decode() met a schema id nobody loaded: a bug in the caller, never the record's fault.

    The engine loads every id `schema_id_to_load` names before it decodes a batch; this
    error says it did not (so the record is not dead-lettered for our mistake).
    """
