"""The standard gRPC services beside ours (`aerogrid.server.grpc_standard`), in process:
reflection answers v1 and v1alpha from the same descriptors, and health follows its
statuses, telling `Watch` callers of each change and ending NOT_SERVING."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from aerogrid.server.grpc_server import SERVICES, add_services
from aerogrid.server.grpc_standard import HEALTH_SERVICE, REFLECTION_SERVICES, GrpcHealth

Status = health_pb2.HealthCheckResponse


class _Allow:
    """Any caller: reflection and health never ask (they are not authenticated)."""


@pytest.fixture
async def served() -> AsyncIterator[tuple[aio.Channel, dict[str, bool], GrpcHealth]]:
    statuses: dict[str, bool] = {"": False, SERVICES[0]: False}
    server = aio.server()
    add_services(server, None, _Allow(), lambda peer: True)  # type: ignore[arg-type]
    health = GrpcHealth(lambda: statuses, poll_seconds=60)
    health.add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await health.start()
    await server.start()
    channel = aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, statuses, health
    finally:
        await channel.close(grace=None)
        await health.stop()
        await server.stop(0)


async def _reflect(
    channel: aio.Channel, service: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    call = channel.stream_stream(
        f"/{service}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    async for response in call(iter([request]), timeout=5):
        return response
    raise AssertionError("no reflection response")


@pytest.mark.parametrize("version", REFLECTION_SERVICES)
async def test_reflection_lists_and_describes_in_both_versions(
    served: tuple[aio.Channel, dict[str, bool], GrpcHealth], version: str
) -> None:
    channel, _, _ = served
    listed = await _reflect(
        channel, version, reflection_pb2.ServerReflectionRequest(list_services="")
    )
    names = {s.name for s in listed.list_services_response.service}
    assert names == {*SERVICES, HEALTH_SERVICE, *REFLECTION_SERVICES}
    for name in names:  # every listed service can be described (grpcurl describe)
        found = await _reflect(
            channel, version, reflection_pb2.ServerReflectionRequest(file_containing_symbol=name)
        )
        assert not found.HasField("error_response"), (name, found.error_response)
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(data)
            for data in found.file_descriptor_response.file_descriptor_proto
        ]
        package, _, service = name.rpartition(".")
        assert any(f.package == package and service in {s.name for s in f.service} for f in files)
    grid = await _reflect(
        channel, version, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICES[0])
    )
    (first, *_) = grid.file_descriptor_response.file_descriptor_proto
    methods = {
        m.name for m in descriptor_pb2.FileDescriptorProto.FromString(first).service[0].method
    }
    assert methods == {"ListGrids", "Subscribe"}


async def test_health_follows_statuses_and_watch_streams_changes(
    served: tuple[aio.Channel, dict[str, bool], GrpcHealth],
) -> None:
    channel, statuses, health = served
    stub = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest
    assert (await stub.Check(check(service=""))).status == Status.NOT_SERVING
    with pytest.raises(aio.AioRpcError) as unknown:
        await stub.Check(check(service="no-such-service"))
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

    watch = stub.Watch(check(service=SERVICES[0]))
    seen = [(await watch.read()).status]
    statuses.update({"": True, SERVICES[0]: True})
    health.notify()
    seen.append((await asyncio.wait_for(watch.read(), 5)).status)
    assert seen == [Status.NOT_SERVING, Status.SERVING]
    assert (await stub.Check(check(service=""))).status == Status.SERVING

    del statuses[SERVICES[0]]  # a service no longer named is unknown again
    health.notify()
    assert (await asyncio.wait_for(watch.read(), 5)).status == Status.SERVICE_UNKNOWN
    with pytest.raises(aio.AioRpcError) as forgotten:
        await stub.Check(check(service=SERVICES[0]))
    assert forgotten.value.code() is grpc.StatusCode.NOT_FOUND

    statuses[SERVICES[0]] = True
    health.notify()
    assert (await asyncio.wait_for(watch.read(), 5)).status == Status.SERVING
    await health.stop()  # a server that drains: NOT_SERVING for good
    assert (await asyncio.wait_for(watch.read(), 5)).status == Status.NOT_SERVING
    assert (await stub.Check(check(service=""))).status == Status.NOT_SERVING
    watch.cancel()


async def test_health_is_not_serving_when_the_statuses_fail() -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("boom")

    health = GrpcHealth(broken)
    await health.update()
    response = await health.servicer.Check(health_pb2.HealthCheckRequest(service=""), None)
    assert response.status == Status.NOT_SERVING
