"""Error details on the wire: Connect's JSON `details` and gRPC's `grpc-status-details-bin`.

Connect writes each detail (a `google.protobuf.Any`) as `{"type", "value"}`, the type's
full name and the message in unpadded base64 (https://connectrpc.com/docs/protocol#error-end-stream).
gRPC and gRPC-Web write a whole `google.rpc.Status` (code, message, details), binary, in
a base64 trailer. That message is built here from its three-field descriptor in a pool of
its own, rather than adding `googleapis-common-protos` to every app container for it; a
private pool cannot clash with that package's `google.rpc.Status` when both are loaded.
"""

from __future__ import annotations

import base64
from typing import Final

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from aerogrid.server.errors import ServiceError

__all__ = ["GRPC_STATUS_DETAILS", "connect_details", "grpc_status", "grpc_status_details"]

#: The header or trailer gRPC and gRPC-Web carry details in.
GRPC_STATUS_DETAILS: Final = "grpc-status-details-bin"


def _status_class() -> type[Message]:
    file = descriptor_pb2.FileDescriptorProto(
        name="aerogrid/google_rpc_status.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    status = file.message_type.add(name="Status")
    field = descriptor_pb2.FieldDescriptorProto
    status.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    status.field.add(
        name="details",
        number=3,
        type=field.TYPE_MESSAGE,
        type_name=".google.protobuf.Any",
        label=field.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))


_Status: Final = _status_class()


def _type_name(detail: any_pb2.Any) -> str:
    return detail.type_url.rsplit("/", 1)[-1]


def connect_details(error: ServiceError) -> list[dict[str, str]]:
    """The `details` array of a Connect error (empty: leave the field out)."""
    return [
        {
            "type": _type_name(detail),
            "value": base64.b64encode(detail.value).decode("ascii").rstrip("="),
        }
        for detail in error.details
    ]


def grpc_status(error: ServiceError) -> bytes:
    """The error as a serialized `google.rpc.Status` (native gRPC's binary trailer value)."""
    status = _Status()
    status.code = error.code.grpc_number  # type: ignore[attr-defined]
    status.message = error.message  # type: ignore[attr-defined]
    for detail in error.details:  # the private pool's Any: copied field by field
        status.details.add(type_url=detail.type_url, value=detail.value)  # type: ignore[attr-defined]
    return status.SerializeToString()


def grpc_status_details(error: ServiceError) -> str | None:
    """The `grpc-status-details-bin` value of an error with details (base64), else None."""
    if not error.details:
        return None
    return base64.b64encode(grpc_status(error)).decode("ascii").rstrip("=")
