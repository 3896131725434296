"""The errors of the web transport: a request the protocol refuses, and any failure as the
caller is told it."""

from __future__ import annotations

import logging

from aerogrid.server.connections import refused
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.web.error_details import connect_details

__all__ = ["ProtocolError", "connect_error_json", "wire_error"]

log = logging.getLogger(__name__)


class ProtocolError(ServiceError):
    """A request the protocol itself refuses (its form, its headers), before any service.

    `refused` labels one refused for its form (malformed, too large, incomplete): it is
    counted and logged, rate-limited (`connections.refused`).
    """

    def __init__(self, code: Code, message: str, *, refused: str | None = None) -> None:
        super().__init__(code, message)
        self.refused = refused


def wire_error(exc: BaseException, where: str) -> ServiceError:
    """What a call raised, as the caller is told it; internal errors are logged, not leaked."""
    if isinstance(exc, ProtocolError) and exc.refused is not None:
        refused("http", exc.refused, f"{where}: {exc.message}")
    if isinstance(exc, ServiceError):
        return exc
    log.error("%s failed", where, exc_info=exc)
    return ServiceError(Code.INTERNAL, "internal server error")


def connect_error_json(error: ServiceError) -> dict[str, object]:
    """A Connect error object: `{"code", "message"}`, and `"details"` when it has any."""
    body: dict[str, object] = {"code": error.code.value, "message": error.message}
    if error.details:
        body["details"] = connect_details(error)
    return body
