"""The standard gRPC services beside ours: server reflection and health.

What grpcurl, Postman, evans and Kreya ask a server for its schema (reflection), and what
Kubernetes' `grpc:` probes, Envoy and cloud load balancers ask it for its health
(`grpc.health.v1.Health`), served by gRPC's own libraries (`grpcio-reflection`,
`grpcio-health-checking`).

* Reflection: `grpcio-reflection` ships only `grpc.reflection.v1alpha`; `v1` is the same
  protocol under another package name (every message and field number is the same), so
  the same servicer answers it too, and its descriptor (v1alpha's, renamed) is in the
  private pool the servicer reads. The pool holds only the files of the services served,
  so nothing else imported in the process is described.
* Health: `GrpcHealth` keeps the library's servicer in step with a function saying which
  services are serving (the same readiness `/readyz` reports): it re-reads it when told
  (`notify`) and every `POLL_SECONDS` in case nobody did. `Watch` streams each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

import grpc
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.descriptor_pool import DescriptorPool
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha._async import ReflectionServicer

__all__ = [
    "HEALTH_SERVICE",
    "LIVENESS",
    "REFLECTION_SERVICES",
    "GrpcHealth",
    "add_reflection",
    "serving_status",
]

log = logging.getLogger(__name__)

HEALTH_SERVICE: Final = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_V1ALPHA: Final = reflection_pb2.DESCRIPTOR.package  # grpc.reflection.v1alpha
_V1: Final = "grpc.reflection.v1"
REFLECTION_SERVICES: Final = (f"{_V1}.ServerReflection", f"{_V1ALPHA}.ServerReflection")

#: A health service name that is SERVING while the process runs, restored or not: for
#: Kubernetes' liveness and startup probes, which must not restart an app that restores.
LIVENESS: Final = "liveness"

#: How often `GrpcHealth` re-reads the statuses when nobody told it of a change.
POLL_SECONDS: Final = 1.0


def _reflection_v1_file() -> descriptor_pb2.FileDescriptorProto:
    """grpc/reflection/v1/reflection.proto: v1alpha's file under v1's package."""
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = _V1
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    old, new = f".{_V1ALPHA}.", f".{_V1}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    return proto


def _pool(files: Iterable[FileDescriptor]) -> DescriptorPool:
    """A pool of `files`, their imports, the health and both reflection files."""
    pool = DescriptorPool()
    added: set[str] = set()

    def add(file: FileDescriptor) -> None:
        if file.name in added:
            return
        for dependency in file.dependencies:
            add(dependency)
        pool.AddSerializedFile(file.serialized_pb)
        added.add(file.name)

    for file in (*files, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
        add(file)
    pool.AddSerializedFile(_reflection_v1_file().SerializeToString())
    return pool


def add_reflection(server: aio.Server, services: Iterable[FileDescriptor]) -> None:
    """Serve reflection (v1 and v1alpha) describing the services of the `services` files.

    The health and reflection services are listed too (register health with `GrpcHealth`).
    """
    files = list(services)
    names = [s.full_name for f in files for s in f.services_by_name.values()]
    names += [HEALTH_SERVICE, *REFLECTION_SERVICES]
    servicer = ReflectionServicer(names, pool=_pool(files))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.method_handlers_generic_handler(
        REFLECTION_SERVICES[0],
        {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((v1,))


_Status: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus.ValueType
_SERVICE_UNKNOWN: Final = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


def serving_status(serving: bool) -> _Status:
    response = health_pb2.HealthCheckResponse
    return response.SERVING if serving else response.NOT_SERVING


class _HealthServicer(HealthServicer):  # type: ignore[misc]  # its aio module has no stubs
    """The library's servicer, where a service it forgot (SERVICE_UNKNOWN) is NOT_FOUND.

    It has no way to remove a service, so `GrpcHealth` sets a name no longer served to
    SERVICE_UNKNOWN: what `Watch` answers for an unknown name; `Check` answers NOT_FOUND.
    """

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        response: health_pb2.HealthCheckResponse = await super().Check(request, context)
        if response.status == _SERVICE_UNKNOWN:
            await context.abort(grpc.StatusCode.NOT_FOUND)
        return response


class GrpcHealth:
    """`grpc.health.v1.Health` on a server, following `statuses` (service name: serving?).

    A name `statuses` does not return (now, or any more) is unknown: NOT_FOUND for
    `Check`, SERVICE_UNKNOWN for `Watch`, as the standard says; "" always has a status. Call
    `add_to` before the server starts and `start` before it serves, so no caller ever
    sees the library's initial SERVING; `stop` turns every service NOT_SERVING for good.
    """

    def __init__(
        self, statuses: Callable[[], Mapping[str, bool]], *, poll_seconds: float = POLL_SECONDS
    ) -> None:
        self.servicer: HealthServicer = _HealthServicer()
        self._statuses = statuses
        self._poll_seconds = poll_seconds
        self._served: dict[str, _Status] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failed = False

    def add_to(self, server: aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)

    async def start(self) -> None:
        await self.update()
        self._task = asyncio.create_task(self._follow(), name="grpc-health")

    def notify(self) -> None:
        """Re-read the statuses now (callable from sync code: a signal handler, a callback)."""
        self._changed.set()

    async def update(self) -> None:
        """Set every service's status from `statuses` (all NOT_SERVING if it fails)."""
        try:
            wanted = {name: serving_status(ok) for name, ok in self._statuses().items()}
            self._failed = False
        except Exception:
            if not self._failed:
                log.exception("the gRPC health statuses could not be read")
            self._failed = True
            wanted = {}
        wanted.setdefault("", serving_status(False))
        for name in self._served.keys() - wanted.keys():
            wanted[name] = _SERVICE_UNKNOWN
        for name, status in wanted.items():
            if self._served.get(name) != status:
                await self.servicer.set(name, status)
                self._served[name] = status

    async def stop(self) -> None:
        """Every service NOT_SERVING from now on (`Watch` callers are told)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.servicer.enter_graceful_shutdown()

    async def _follow(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._changed.wait()
            self._changed.clear()
            await self.update()
