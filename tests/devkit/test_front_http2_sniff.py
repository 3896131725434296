"""How the local endpoint's front tells native gRPC from Connect on HTTP/2: by the content
type of a connection's first request (`front.classify`, `http2`), decided on a prefix of
what the client sent; and the client's acknowledgement of the front's own SETTINGS is taken
out of what the server behind it sees. Pure functions over bytes an h2 client makes."""

from __future__ import annotations

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from hyperframe.frame import SettingsFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from aerogrid_devkit.local_server.front import Rejected, Route, classify
from aerogrid_devkit.local_server.http2 import DropFirstSettingsAck


def client_preface() -> bytes:
    """An HTTP/2 client's preface and SETTINGS (h2, as a client)."""
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    return client.data_to_send()


def client_bytes(content_type: str | None, *, ack_first: bool = False) -> bytes:
    """What an HTTP/2 client sends up to its first request's headers (h2, as a client)."""
    client = H2Connection(H2Configuration(client_side=True))
    client.initiate_connection()
    sent = client.data_to_send()
    if ack_first:  # as grpc-go does: it acknowledges the server's SETTINGS, then calls
        sent += SettingsFrame(0, flags=["ACK"]).serialize()
    headers = [(":method", "POST"), (":path", "/x"), (":scheme", "http"), (":authority", "a")]
    if content_type is not None:
        headers.append(("content-type", content_type))
    client.send_headers(1, headers)
    return sent + client.data_to_send()


@pytest.mark.parametrize(
    ("content_type", "route"),
    [
        ("application/grpc", Route.GRPC),
        ("application/grpc+proto", Route.GRPC),
        ("application/grpc; charset=utf-8", Route.GRPC),
        ("application/connect+proto", Route.HTTP2),
        ("application/connect+json", Route.HTTP2),
        ("application/proto", Route.HTTP2),
        ("application/json", Route.HTTP2),
        ("application/grpc-web+proto", Route.HTTP2),
        ("application/grpc-web-text", Route.HTTP2),
        (None, Route.HTTP2),  # a GET /healthz
    ],
)
def test_http2_is_routed_by_its_first_requests_content_type(
    content_type: str | None, route: Route
) -> None:
    head = client_bytes(content_type, ack_first=True)
    assert classify(head) is route
    assert classify(head[:-3]) is None  # the headers not whole yet: read more


@settings(max_examples=200, deadline=None)
@given(
    grpc=st.booleans(),
    cut=st.integers(0, 200),
    more=st.binary(max_size=60),
)
def test_an_http2_route_once_chosen_stays_whatever_follows(
    grpc: bool, cut: int, more: bytes
) -> None:
    head = client_bytes("application/grpc" if grpc else "application/proto")
    head = head[: min(cut, len(head))] if cut < len(head) else head
    try:
        first = classify(head) if head else None
    except Rejected:
        return
    if first is not None:
        assert first is (Route.GRPC if grpc else Route.HTTP2)
        assert classify(head + more) is first


def test_http2_that_is_not_http2_is_refused() -> None:
    broken_headers = b"\x00\x00\x05\x01\x05\x00\x00\x00\x01" + b"\xff" * 5  # bad HPACK
    with pytest.raises(Rejected) as caught:
        classify(client_preface() + broken_headers)
    assert caught.value.reason == "garbage"
    ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + bytes(8)
    assert classify(client_preface() + ping * 100) is None  # no request yet: read on
    with pytest.raises(Rejected) as caught:
        classify(client_preface() + ping * 4000)  # ... but not for ever
    assert caught.value.reason == "too_large"


def test_the_clients_first_settings_ack_is_taken_out_whatever_the_chunks() -> None:
    ack = SettingsFrame(0, flags=["ACK"]).serialize()
    with_ack = client_bytes("application/grpc", ack_first=True)
    stream = with_ack + b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"  # a second ACK: the server's
    want = stream.replace(ack, b"", 1)
    assert want != stream and want.endswith(ack)
    for size in (1, 2, 5, 9, 24, 100, len(stream)):
        drop = DropFirstSettingsAck()
        got = b"".join(drop(stream[at : at + size]) for at in range(0, len(stream), size))
        assert got == want, size
        assert drop.done
