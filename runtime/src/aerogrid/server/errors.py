"""Errors a service raises, independent of the transport that reports them."""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """The gRPC status codes the services use; Connect spells them the same way."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    INTERNAL = "internal"


class ServiceError(Exception):
    """A request failed with a status code and a message meant for the caller."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
