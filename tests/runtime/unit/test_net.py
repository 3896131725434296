"""`aerogrid.net`: the one answer to "is this address loopback?" and the one way to bind."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from aerogrid.net import bind_socket, free_port, is_loopback, is_loopback_peer, port_is_free


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.255.0.9", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped: Python 3.11's is_loopback says no
        ("[::ffff:127.3.2.1]", True),
        (" 127.0.0.1 ", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.7", False),
        ("::ffff:10.0.0.7", False),
        ("2001:db8::1", False),
        ("128.0.0.1", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),  # a name that resolves to loopback is not trusted
        ("127.0.0.1:80", False),  # a host, not host:port
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", True),
        ("ipv6:[::1]:5555", True),
        ("ipv6:%5B::ffff:127.0.0.1%5D:5555", True),
        ("unix:/tmp/aerogrid.sock", True),
        ("unix-abstract:aerogrid", True),
        ("localhost:8080", True),
        ("[::1]:8080", True),
        ("ipv4:10.0.0.7:5555", False),
        ("ipv6:[2001:db8::1]:5555", False),
        ("[::1", False),
        ("garbage", False),
    ],
)
def test_is_loopback_peer(peer: str, expected: bool) -> None:
    assert is_loopback_peer(peer) is expected


def test_bind_socket_listens_non_blocking_and_reuses_the_address() -> None:
    with bind_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port > 0 and sock.family == socket.AF_INET
        assert sock.getblocking() is False
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        with socket.create_connection(("127.0.0.1", port), 1):
            pass  # it listens
        assert not port_is_free(port)
        with pytest.raises(OSError) as taken:
            bind_socket("127.0.0.1", port)
        assert taken.value.errno == errno.EADDRINUSE
    assert port_is_free(port)


async def test_connections_to_a_bound_socket_get_tcp_nodelay_from_asyncio() -> None:
    """Without it a response written in two parts waited 40 ms for a delayed ACK."""
    nodelay: asyncio.Queue[int] = asyncio.Queue()

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("socket")
        nodelay.put_nowait(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    sock = bind_socket("127.0.0.1", 0)
    assert sock.proto == socket.IPPROTO_TCP
    server = await asyncio.start_server(take, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
        assert await asyncio.wait_for(nodelay.get(), 5) != 0
        writer.close()


def test_bind_socket_ipv6_loopback_with_or_without_brackets() -> None:
    sock = bind_socket("[::1]", 0, blocking=True)
    with sock:
        assert sock.family == socket.AF_INET6 and sock.getblocking() is True
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_free_port_is_free() -> None:
    port = free_port()
    assert port_is_free(port)
    bind_socket("127.0.0.1", port).close()
