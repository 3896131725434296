"""The web transport: Connect and gRPC-Web over HTTP, with health and metrics, on one port.

Excel's add-in runs in a browser runtime, which cannot speak native gRPC (no HTTP/2
trailers from `fetch`), so the grid and catalog services are also served here over
the Connect protocol (https://connectrpc.com/docs/protocol: unary `application/proto`
and `application/json`, server streams `application/connect+proto|json`) and over
gRPC-Web (`application/grpc-web[+proto|+json]` and the `-text` base64 variant), with
CORS, on an ASGI app that `aerogrid.server.http_server` serves over HTTP/1.1 and
HTTP/2. The same port answers `/healthz`, `/readyz` and `/metrics` so a container needs
one port for browsers and probes.

Why a small hand-written ASGI implementation and not the `connectrpc` library
(0.13.0; `connect-python` 0.9.0 is its older name): we read its server
(`ConnectASGIApplication`) and it is a careful, conformance-tested implementation,
but here it would cost more than this package:

* It is built on `protobuf-py`, a second protobuf runtime (with a native extension),
  and requires `pyqwest`, a Rust HTTP *client* (5.7 MB wheel), both of which would
  ship in every app container next to `google.protobuf`, which our generated code
  and the native gRPC transport use. Its google.protobuf support is a `compat` codec
  shim, and its code generator targets protobuf-py, so the method table would be
  hand-built anyway. (0.9.0, on google.protobuf, is the superseded 0.x line.)
* Our streams yield already-serialized bytes shared by up to thousands of
  subscribers. The library encodes each yielded message through its codec, so we
  would have to smuggle bytes through a fake message type and a custom codec that
  knows the response class to transcode for JSON.
* Authentication needs the peer's address and must produce protocol-correct
  errors, `ServiceError` must map to Connect codes, and CORS, health and metrics
  live outside it: wrappers around every procedure and around the app regardless.
* It does not serve `application/grpc-web-text`.

We need only unary and server-streaming calls, a handful of headers and two framings,
and the real Connect / gRPC-Web clients (connect-es, tests/excel/node) check us end to end.

The package, by job: `negotiation` picks the protocol object of a request (`connect`:
Connect unary and server streaming; `grpc_web`: gRPC-Web binary and text), each holding
its content types, framing (`envelope`, `compression`), timeout header and error mapping
(codes and HTTP statuses from `aerogrid.server.errors.Code`); `calls` runs an RPC with a
`context.RequestContext`; `cors`, `authentication` and `probes` (`/healthz`, `/readyz`,
`/metrics`) stand apart from the protocols; `app` routes and `create_http_app` builds it
(`create_rpc_app` for any method table: tests/runtime/conformance/ serves the Connect
conformance suite's service with it). Error details and trailers: `error_details`.
"""

from __future__ import annotations

from aerogrid.server.web.app import DEFAULT_MAX_REQUEST_BYTES, create_http_app, create_rpc_app
from aerogrid.server.web.asgi import ASGIApp, ASGIMessage, ASGIReceive, ASGIScope, ASGISend
from aerogrid.server.web.authentication import CallerAuthenticator
from aerogrid.server.web.context import RequestContext, current_request
from aerogrid.server.web.methods import Method
from aerogrid.server.web.probes import Readiness

__all__ = [
    "DEFAULT_MAX_REQUEST_BYTES",
    "ASGIApp",
    "ASGIMessage",
    "ASGIReceive",
    "ASGIScope",
    "ASGISend",
    "CallerAuthenticator",
    "Method",
    "Readiness",
    "RequestContext",
    "create_http_app",
    "create_rpc_app",
    "current_request",
]
