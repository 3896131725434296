"""Status codes, and the errors a service raises, independent of the transport that reports them.

`Code` is the one status-code table: the gRPC server, the Connect / gRPC-Web server, the
devkit's gateway and `GridClient` all read it, so a code means the same on every wire.
Per code it holds the gRPC status (https://grpc.github.io/grpc/core/md_doc_statuscodes.html),
the Connect name (the enum's value) and the HTTP status of a Connect unary error
(https://connectrpc.com/docs/protocol#error-codes), and whether `GridClient` retries a
call that failed with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import grpc
from google.protobuf import any_pb2

__all__ = ["Code", "ServiceError"]


class Code(StrEnum):
    """A status code, valued by its Connect name (gRPC's name, in lower case; `canceled`)."""

    CANCELED = "canceled"
    UNKNOWN = "unknown"
    INVALID_ARGUMENT = "invalid_argument"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    PERMISSION_DENIED = "permission_denied"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    FAILED_PRECONDITION = "failed_precondition"
    ABORTED = "aborted"
    OUT_OF_RANGE = "out_of_range"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"
    UNAUTHENTICATED = "unauthenticated"

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return _TABLE[self].grpc_status

    @property
    def grpc_number(self) -> int:
        """The number gRPC puts on the wire (`grpc-status`)."""
        number: int = self.grpc_status.value[0]
        return number

    @property
    def http_status(self) -> int:
        """The HTTP status of a Connect unary response carrying this error."""
        return _TABLE[self].http_status

    @property
    def retryable(self) -> bool:
        """Whether a client calls again after this error: the server or the path to it
        failed (a restart, a dropped connection), not the request."""
        return _TABLE[self].retryable

    @classmethod
    def from_grpc(cls, status: grpc.StatusCode) -> Code:
        """The code of a gRPC status (OK, which is no error, has none: UNKNOWN)."""
        return _BY_GRPC.get(status, cls.UNKNOWN)


@dataclass(frozen=True, slots=True)
class _Row:
    grpc_status: grpc.StatusCode
    http_status: int
    retryable: bool = False


_TABLE: Final[dict[Code, _Row]] = {
    # CANCELLED: a server under a connection storm can drop calls it has not accepted yet.
    Code.CANCELED: _Row(grpc.StatusCode.CANCELLED, 499, retryable=True),
    Code.UNKNOWN: _Row(grpc.StatusCode.UNKNOWN, 500),
    Code.INVALID_ARGUMENT: _Row(grpc.StatusCode.INVALID_ARGUMENT, 400),
    Code.DEADLINE_EXCEEDED: _Row(grpc.StatusCode.DEADLINE_EXCEEDED, 504, retryable=True),
    Code.NOT_FOUND: _Row(grpc.StatusCode.NOT_FOUND, 404),
    Code.ALREADY_EXISTS: _Row(grpc.StatusCode.ALREADY_EXISTS, 409),
    Code.PERMISSION_DENIED: _Row(grpc.StatusCode.PERMISSION_DENIED, 403),
    # Retried only by a subscription the server dropped for falling behind (GridClient).
    Code.RESOURCE_EXHAUSTED: _Row(grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    Code.FAILED_PRECONDITION: _Row(grpc.StatusCode.FAILED_PRECONDITION, 400),
    Code.ABORTED: _Row(grpc.StatusCode.ABORTED, 409),
    Code.OUT_OF_RANGE: _Row(grpc.StatusCode.OUT_OF_RANGE, 400),
    Code.UNIMPLEMENTED: _Row(grpc.StatusCode.UNIMPLEMENTED, 501),
    # INTERNAL: also what grpc reports for a stream reset mid-flight.
    Code.INTERNAL: _Row(grpc.StatusCode.INTERNAL, 500, retryable=True),
    Code.UNAVAILABLE: _Row(grpc.StatusCode.UNAVAILABLE, 503, retryable=True),
    Code.DATA_LOSS: _Row(grpc.StatusCode.DATA_LOSS, 500),
    Code.UNAUTHENTICATED: _Row(grpc.StatusCode.UNAUTHENTICATED, 401),
}

_BY_GRPC: Final = {row.grpc_status: code for code, row in _TABLE.items()}


class ServiceError(Exception):
    """A request failed with a status code and a message meant for the caller.

    `details` are error details (`google.protobuf.Any`), as Connect's `details` and gRPC's
    `grpc-status-details-bin` carry them.
    """

    def __init__(self, code: Code, message: str, *, details: Sequence[any_pb2.Any] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = tuple(details)
