"""Hypothesis on what a client sends: protobuf requests, Connect envelopes, the front's sniffing.

Each property has a fixed example budget (`max_examples`), so the suite's time is
bounded. The servers are real (a grid service with its listeners, on a loop of its own
thread); the clients are grpcio's and httpx's synchronous ones, sending what hypothesis
makes. What must hold: an answer in the protocol, never a server error (UNKNOWN,
INTERNAL, a 5xx) and never a traceback in the logs.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Iterator

import grpc
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerogrid.v1 import grid_pb2
from aerogrid_devkit.local_server.front import Rejected, Route, _TlsRecords, classify
from support.grid_service import APP, GRID, GridService, grid_service_in_thread

pytestmark = pytest.mark.timeout(300)

LIST_GRIDS = "/aerogrid.v1.GridService/ListGrids"
SUBSCRIBE = "/aerogrid.v1.GridService/Subscribe"
#: What a request may get back; a server error (UNKNOWN, INTERNAL) never.
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
CALL_TIMEOUT = 5.0
FIXTURES_OK = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def service() -> Iterator[GridService]:
    with grid_service_in_thread() as served:
        served.grid["seed"] = {"text": "x"}  # before any subscriber: no publication needed
        yield served


@pytest.fixture(scope="module")
def channel(service: GridService) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(service.target) as opened:
        yield opened


@pytest.fixture(scope="module")
def http(service: GridService) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.http, timeout=CALL_TIMEOUT) as client:
        yield client


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


def grpc_answer(channel: grpc.Channel, method: str, payload: bytes) -> grpc.StatusCode:
    """The status a raw request gets (a stream: once its first message came, OK)."""
    try:
        if method == LIST_GRIDS:
            channel.unary_unary(method, None, None)(payload, timeout=CALL_TIMEOUT)
            return grpc.StatusCode.OK
        call = channel.unary_stream(method, None, None)(payload, timeout=CALL_TIMEOUT)
        next(iter(call))
        call.cancel()  # type: ignore[no-untyped-call]
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code


# -- protobuf requests on native gRPC ---------------------------------------------------------

names = st.one_of(st.sampled_from([APP, GRID, "", "nope"]), st.text(max_size=20))
subscribe_requests = st.builds(
    grid_pb2.SubscribeRequest,
    app=st.sampled_from([APP, "nope", ""]),
    grid=st.sampled_from([GRID, "nope", ""]),
    keys=st.lists(names, max_size=5),
    columns=st.lists(st.sampled_from(["text", "nope", ""]), max_size=3),
    min_interval_ms=st.integers(0, 2**32 - 1),
    heartbeat_interval_ms=st.integers(0, 2**32 - 1),
    resume_epoch=names,
    resume_seq=st.integers(0, 2**64 - 1),
)


@FIXTURES_OK
@given(payload=st.binary(max_size=300), method=st.sampled_from([LIST_GRIDS, SUBSCRIBE]))
def test_grpc_random_bytes_get_an_answer_not_a_server_error(
    channel: grpc.Channel, caplog: pytest.LogCaptureFixture, payload: bytes, method: str
) -> None:
    caplog.set_level(logging.INFO)
    assert grpc_answer(channel, method, payload) in ANSWERS
    no_tracebacks(caplog)


@FIXTURES_OK
@given(request=subscribe_requests, flips=st.lists(st.integers(0, 10_000), max_size=3))
def test_grpc_subscribe_requests_and_their_corruptions_get_an_answer(
    channel: grpc.Channel,
    caplog: pytest.LogCaptureFixture,
    request: grid_pb2.SubscribeRequest,
    flips: list[int],
) -> None:
    caplog.set_level(logging.INFO)
    payload = bytearray(request.SerializeToString())
    for flip in flips:
        if payload:
            payload[flip % len(payload)] ^= 1 << (flip % 8)
    assert grpc_answer(channel, SUBSCRIBE, bytes(payload)) in ANSWERS
    no_tracebacks(caplog)


# -- Connect and gRPC-Web envelopes -----------------------------------------------------------


def envelope(flags: int, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack(">BI", flags, len(payload) if length is None else length) + payload


def end_of_stream_error(body: bytes, grpc_web: bool) -> str | None:
    """The error code a stream ended with (None: it ended well, or is still going)."""
    at = 0
    while at + 5 <= len(body):
        flags, length = struct.unpack_from(">BI", body, at)
        frame = body[at + 5 : at + 5 + length]
        at += 5 + length
        if grpc_web and flags & 0x80:
            trailers = dict(
                line.split(":", 1) for line in frame.decode().split("\r\n") if ":" in line
            )
            return None if trailers.get("grpc-status") == "0" else trailers["grpc-status"]
        if not grpc_web and flags & 0x02:
            error = json.loads(frame).get("error")
            return None if error is None else str(error["code"])
    return None


def streamed(http: httpx.Client, content_type: str, body: bytes) -> tuple[int, bytes]:
    """POST a stream call: its status and what came within a moment (a good one streams on)."""
    headers = {"content-type": content_type}
    with http.stream("POST", SUBSCRIBE, content=body, headers=headers) as response:
        data = b""
        for chunk in response.iter_raw():
            data += chunk
            if len(data) > 5:  # the first message (or the end) is here: enough
                break
        return response.status_code, data


payloads = st.one_of(
    st.binary(max_size=200),
    subscribe_requests.map(lambda r: r.SerializeToString()),
    st.just(grid_pb2.SubscribeRequest(app=APP, grid=GRID).SerializeToString()),
)
bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(envelope, st.integers(0, 255), payloads),
    st.builds(envelope, st.just(0), payloads, st.integers(0, 2**32 - 1)),
    st.builds(lambda a, b: a + b, st.builds(envelope, st.just(0), payloads), st.binary()),
)
CONTENT_TYPES = ["application/connect+proto", "application/grpc-web+proto"]


@FIXTURES_OK
@given(body=bodies, content_type=st.sampled_from([*CONTENT_TYPES, "application/grpc-web-text"]))
def test_connect_and_grpc_web_envelopes_get_an_answer_in_the_protocol(
    http: httpx.Client, caplog: pytest.LogCaptureFixture, body: bytes, content_type: str
) -> None:
    caplog.set_level(logging.INFO)
    # A first message flagged compressed while the request declares no compression must
    # be answered INTERNAL: the gRPC and Connect protocols say so, and the Connect
    # conformance suite checks it. Any other INTERNAL or UNKNOWN is a server error.
    flagged_compressed = len(body) >= 5 and body[0] & 1 == 1
    if content_type.endswith("-text"):
        body = base64.b64encode(body)
    status, data = streamed(http, content_type, body)
    assert status == 200
    code = end_of_stream_error(data, grpc_web="grpc-web" in content_type)
    if flagged_compressed and code in ("internal", "13"):
        assert b"compress" in data, data
        no_tracebacks(caplog)
        return
    assert code not in ("internal", "unknown", "2", "13"), data
    no_tracebacks(caplog)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@FIXTURES_OK
@given(
    body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())),
    codec=st.sampled_from(["proto", "json"]),
)
def test_connect_unary_bodies_get_an_answer_not_a_server_error(
    http: httpx.Client, caplog: pytest.LogCaptureFixture, body: bytes, codec: str
) -> None:
    caplog.set_level(logging.INFO)
    response = http.post(LIST_GRIDS, content=body, headers={"content-type": f"application/{codec}"})
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.json()["code"] in ("invalid_argument", "not_found")
    no_tracebacks(caplog)


# -- the devkit front's sniffing --------------------------------------------------------------

heads = st.one_of(
    st.binary(min_size=1, max_size=200),
    st.builds(
        lambda method, target, rest: method + b" " + target + b" HTTP/1.1\r\n" + rest,
        st.sampled_from([b"GET", b"POST", b"OPTIONS", b"get", b"PRI"]),
        st.binary(max_size=30),
        st.binary(max_size=60),
    ),
    st.builds(lambda rest: b"\x16\x03" + rest, st.binary(max_size=50)),
    st.builds(
        lambda cut, rest: b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[:cut] + rest,
        st.integers(1, 24),
        st.binary(max_size=10),
    ),
)


def sniffed(head: bytes) -> Route | str | None:
    """What `classify` says: a route, None (read more) or the reason it refused."""
    try:
        return classify(head)
    except Rejected as exc:
        return exc.reason


@settings(max_examples=1000, deadline=None)
@given(head=heads, more=st.binary(max_size=100))
def test_front_sniffing_decides_on_a_prefix_and_never_changes_its_mind(
    head: bytes, more: bytes
) -> None:
    first = sniffed(head)
    assert first is None or isinstance(first, Route) or first in ("garbage", "too_large")
    later = sniffed(head + more)
    if isinstance(first, Route):
        assert later is first
    elif first == "garbage":
        assert later == "garbage"


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.sampled_from([0x14, 0x15, 0x16, 0x17]), st.binary(max_size=300)),
        max_size=6,
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_front_tls_record_walk_does_not_depend_on_how_bytes_arrive(
    records: list[tuple[int, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(bytes([kind, 3, 3]) + struct.pack(">H", len(p)) + p for kind, p in records)
    whole, pieces = _TlsRecords(), _TlsRecords()
    whole.feed(stream)
    at = 0
    for cut in [*sorted(c % (len(stream) + 1) for c in cuts), len(stream)]:
        pieces.feed(stream[at:cut])
        at = max(at, cut)
    expected = any(kind == 0x17 for kind, _ in records)
    assert whole.done.is_set() is expected
    assert pieces.done.is_set() is expected
