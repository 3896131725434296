"""A Connect conformance server (connectrpc.com/conformance, server mode) on AeroGrid's layers.

`connectconformance --mode server` starts this program once per server configuration:
it reads a length-prefixed `ServerCompatRequest` on stdin, starts a server and writes a
length-prefixed `ServerCompatResponse` (host, port, certificate) on stdout, then serves
until SIGTERM. `ConformanceService` is served by AeroGrid's own protocol layer
(`aerogrid.server.web.create_rpc_app` under `aerogrid.server.http_server.serve_http`)
for Connect and gRPC-Web, and by grpcio (as `aerogrid run`'s gRPC port) for gRPC.

The generated code of the suite's protos (`connectrpc/conformance/v1/*_pb2.py`) must be
importable: test_connect_conformance.py generates it and puts it on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import struct
import sys
import tempfile
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import grpc
from connectrpc.conformance.v1 import (
    config_pb2,
    server_compat_pb2,
    service_pb2,
)
from google.protobuf import any_pb2
from grpc import aio

from aerogrid.net import LOOPBACK_HOST, bind_socket
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.http_server import serve_http
from aerogrid.server.identity import Caller
from aerogrid.server.web import Method, create_rpc_app, current_request
from aerogrid.server.web.error_details import GRPC_STATUS_DETAILS, grpc_status
from aerogrid.server.web.serialization import json_transcoder

SERVICE = "connectrpc.conformance.v1.ConformanceService"
_GRPC_CODES = {status.value[0]: status for status in grpc.StatusCode}


class Anyone:
    """Every caller is admitted: the suite tests the protocols, not authentication."""

    async def authenticate(self, authorization: str | None, *, peer_is_loopback: bool) -> Caller:
        return Caller("conformance", None)


# -- the service, independent of the transport ------------------------------------------------


def _request_info(headers: Sequence[tuple[str, str]], timeout: float | None, request: Any) -> Any:
    info = service_pb2.ConformancePayload.RequestInfo()
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name, []).append(value)
    for name, values in by_name.items():
        info.request_headers.add(name=name, value=values)
    if timeout is not None:
        info.timeout_ms = round(timeout * 1000)
    packed = info.requests.add()
    packed.Pack(request)
    return info


def _error(definition: Any, info: Any | None) -> ServiceError:
    """The error a response definition asks for, with the request info appended."""
    details = list(definition.details)
    if info is not None:
        extra = any_pb2.Any()
        extra.Pack(info)
        details.append(extra)
    code = Code.from_grpc(_GRPC_CODES.get(definition.code, grpc.StatusCode.UNKNOWN))
    return ServiceError(code, definition.message, details=details)


def _metadata(headers: Any) -> list[tuple[str, str]]:
    return [(h.name.lower(), value) for h in headers for value in h.value]


def _unary_response(request: Any, payload: Any) -> Any:
    if isinstance(request, service_pb2.IdempotentUnaryRequest):
        return service_pb2.IdempotentUnaryResponse(payload=payload)
    return service_pb2.UnaryResponse(payload=payload)


async def unary_result(
    request: Any, headers: Sequence[tuple[str, str]], timeout: float | None
) -> tuple[Any, list[tuple[str, str]], list[tuple[str, str]]]:
    """(UnaryResponse or the ServiceError to raise, response headers, trailers)."""
    definition = request.response_definition
    info = _request_info(headers, timeout, request)
    out_headers = _metadata(definition.response_headers)
    trailers = _metadata(definition.response_trailers)
    if definition.response_delay_ms:
        await asyncio.sleep(definition.response_delay_ms / 1000)
    if definition.WhichOneof("response") == "error":
        return _error(definition.error, info), out_headers, trailers
    payload = service_pb2.ConformancePayload(data=definition.response_data, request_info=info)
    return _unary_response(request, payload), out_headers, trailers


async def stream_results(
    request: Any, headers: Sequence[tuple[str, str]], timeout: float | None
) -> AsyncGenerator[Any, None]:
    """The ServerStreamResponses, then raises the error asked for, if any."""
    definition = request.response_definition
    info = _request_info(headers, timeout, request)
    for index, data in enumerate(definition.response_data):
        if definition.response_delay_ms:
            await asyncio.sleep(definition.response_delay_ms / 1000)
        payload = service_pb2.ConformancePayload(data=data)
        if index == 0:
            payload.request_info.CopyFrom(info)
        yield service_pb2.ServerStreamResponse(payload=payload)
    if definition.HasField("error"):
        raise _error(definition.error, None if definition.response_data else info)


# -- Connect and gRPC-Web: AeroGrid's web layer ----------------------------------------------


def _web_headers() -> tuple[list[tuple[str, str]], float | None]:
    ctx = current_request()
    raw = ctx.scope.get("headers", ())
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw]
    return headers, ctx.timeout


async def _web_unary(request: Any, caller: Caller) -> Any:
    headers, timeout = _web_headers()
    result, out_headers, trailers = await unary_result(request, headers, timeout)
    ctx = current_request()
    ctx.response_headers.extend(out_headers)
    ctx.response_trailers.extend(trailers)
    if isinstance(result, ServiceError):
        raise result
    return result


async def _web_stream(request: Any, caller: Caller) -> AsyncGenerator[bytes, None]:
    headers, timeout = _web_headers()
    definition = request.response_definition
    ctx = current_request()
    ctx.response_headers.extend(_metadata(definition.response_headers))
    ctx.response_trailers.extend(_metadata(definition.response_trailers))
    async for message in stream_results(request, headers, timeout):
        yield message.SerializeToString()


def web_methods() -> dict[str, Method[Any]]:
    return {
        f"/{SERVICE}/Unary": Method(
            service_pb2.UnaryRequest, service_pb2.UnaryResponse, unary=_web_unary
        ),
        f"/{SERVICE}/IdempotentUnary": Method(
            service_pb2.IdempotentUnaryRequest,
            service_pb2.IdempotentUnaryResponse,
            unary=_web_unary,
        ),
        f"/{SERVICE}/ServerStream": Method(
            service_pb2.ServerStreamRequest,
            service_pb2.ServerStreamResponse,
            stream=_web_stream,
            to_json=json_transcoder(service_pb2.ServerStreamResponse),
        ),
    }


# -- gRPC: grpcio -------------------------------------------------------------------------


def _grpc_headers(context: aio.ServicerContext[Any, Any]) -> list[tuple[str, str]]:
    return [
        (key, value if isinstance(value, str) else value.decode("latin-1"))
        for key, value in context.invocation_metadata() or ()
    ]


async def _grpc_fail(
    context: aio.ServicerContext[Any, Any], error: ServiceError, trailers: list[tuple[str, str]]
) -> None:
    metadata: list[tuple[str, str | bytes]] = list(trailers)
    if error.details:
        metadata.append((GRPC_STATUS_DETAILS, grpc_status(error)))
    await context.abort(error.code.grpc_status, error.message, tuple(metadata))


async def _grpc_unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
    result, out_headers, trailers = await unary_result(
        request, _grpc_headers(context), context.time_remaining()
    )
    await context.send_initial_metadata(out_headers)
    context.set_trailing_metadata(trailers)
    if isinstance(result, ServiceError):
        await _grpc_fail(context, result, trailers)
    return result


async def _grpc_stream(
    request: Any, context: aio.ServicerContext[Any, Any]
) -> AsyncGenerator[Any, None]:
    definition = request.response_definition
    await context.send_initial_metadata(_metadata(definition.response_headers))
    trailers = _metadata(definition.response_trailers)
    context.set_trailing_metadata(trailers)
    try:
        async for message in stream_results(
            request, _grpc_headers(context), context.time_remaining()
        ):
            yield message
    except ServiceError as error:
        await _grpc_fail(context, error, trailers)


def _grpc_handler() -> grpc.GenericRpcHandler[Any, Any]:
    def unary(request_type: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            _grpc_unary,
            request_deserializer=request_type.FromString,
            response_serializer=lambda message: message.SerializeToString(),
        )

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": unary(service_pb2.UnaryRequest),
            "IdempotentUnary": unary(service_pb2.IdempotentUnaryRequest),
            "ServerStream": grpc.unary_stream_rpc_method_handler(
                _grpc_stream,
                request_deserializer=service_pb2.ServerStreamRequest.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            ),
        },
    )


# -- the runner's protocol -----------------------------------------------------------------


def _read_request() -> Any:
    (length,) = struct.unpack(">I", sys.stdin.buffer.read(4))
    return server_compat_pb2.ServerCompatRequest.FromString(sys.stdin.buffer.read(length))


def _write_response(port: int, cert: bytes) -> None:
    data = server_compat_pb2.ServerCompatResponse(
        host=LOOPBACK_HOST, port=port, pem_cert=cert
    ).SerializeToString()
    sys.stdout.buffer.write(struct.pack(">I", len(data)) + data)
    sys.stdout.buffer.flush()


def _tls_context(cert: bytes, key: bytes) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        context.load_cert_chain(cert_file, key_file)
    return context


async def main() -> None:
    request = _read_request()
    creds = request.server_creds if request.use_tls else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if request.protocol == config_pb2.PROTOCOL_GRPC:
        server = aio.server()
        server.add_generic_rpc_handlers((_grpc_handler(),))
        address = f"{LOOPBACK_HOST}:0"
        if creds is not None:
            credentials = grpc.ssl_server_credentials([(creds.key, creds.cert)])
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
        await server.start()
        _write_response(port, creds.cert if creds is not None else b"")
        await stop.wait()
        await server.stop(grace=0.5)
        return
    app = create_rpc_app(web_methods(), Anyone(), is_ready=lambda: True)
    sock = bind_socket(LOOPBACK_HOST, 0)
    tls = _tls_context(creds.cert, creds.key) if creds is not None else None
    http = await serve_http(app, sock, tls=tls)
    _write_response(sock.getsockname()[1], creds.cert if creds is not None else b"")
    await stop.wait()
    await http.stop()


if __name__ == "__main__":
    asyncio.run(main())
