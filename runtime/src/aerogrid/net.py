"""This machine on the network: which addresses are loopback, and how a port is bound.

Anonymous access for local callers (`server.auth`), the HTTP transport's local origins,
the devkit's loopback-only local server and its brokers' ports all ask one of these two
questions, so each has one answer here. The standard library does the work
(`ipaddress` for the address arithmetic, `socket.create_server` for binding, with
SO_REUSEADDR); what this adds is the policy: the name `localhost` and IPv4-mapped IPv6
addresses (``::ffff:127.0.0.1``, which Python 3.11's `is_loopback` does not count) are
loopback too, and every listening socket is bound the same way.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from typing import Final

__all__ = [
    "LISTEN_BACKLOG",
    "LOOPBACK_HOST",
    "bind_socket",
    "free_port",
    "is_loopback",
    "is_loopback_peer",
    "port_is_free",
]

#: Where local-only things listen (the devkit's brokers and internal servers).
LOOPBACK_HOST: Final = "127.0.0.1"
#: Pending connections a listening socket queues (what uvicorn and grpc use too).
LISTEN_BACKLOG: Final = 512


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine: ``localhost``, 127.0.0.0/8, ``::1``, ``::ffff:127.x``.

    `host` is a name or an IP literal, IPv6 with or without brackets, and no port. Any
    other name is not loopback, even one that resolves to it: only the literal is trusted.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_loopback_peer(peer: str) -> bool:
    """Whether a connection's peer is this machine: loopback addresses and Unix sockets.

    Understands gRPC peer strings (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``, also
    percent-encoded, ``unix:/path``) and plain addresses with or without a port
    (``127.0.0.1``, ``::1``, ``[::1]:80``, ``localhost``). Pass only the address the socket
    reported (gRPC ``context.peer()``, ASGI ``scope["client"][0]``), never a Host or
    X-Forwarded-For header: the client writes those.
    """
    text = urllib.parse.unquote(peer.strip())
    if text.startswith(("unix:", "unix-abstract:")):
        return True
    for prefix in ("ipv4:", "ipv6:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    host = _host_part(text)
    return host is not None and is_loopback(host)


def _host_part(text: str) -> str | None:
    """The host in "host", "host:port", "v6", "[v6]" or "[v6]:port"; None if unparsable."""
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else None
    if text.count(":") == 1:
        return text.split(":", 1)[0]
    return text or None


def bind_socket(host: str, port: int, *, blocking: bool = False) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0: a free one), non-blocking by default.

    SO_REUSEADDR (a restarted server gets its port back at once); an IPv6 address gets an
    IPv6 socket, IPv6-only except for the wildcard ``::``, which also takes IPv4.
    """
    bare = host.strip().removeprefix("[").removesuffix("]")
    family = socket.AF_INET6 if ":" in bare else socket.AF_INET
    dual_stack = bare == "::" and socket.has_dualstack_ipv6()
    made = socket.create_server(
        (bare, port), family=family, backlog=LISTEN_BACKLOG, dualstack_ipv6=dual_stack
    )
    # Say it is TCP (create_server leaves proto 0): asyncio sets TCP_NODELAY only on the
    # connections of a socket that does, and without it a response written in two parts
    # waits for the client's delayed ACK (40 ms a request on a kept-alive connection).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, fileno=made.detach())
    sock.setblocking(blocking)
    return sock


def port_is_free(port: int, host: str = LOOPBACK_HOST) -> bool:
    """Whether a server could listen on `host:port` now (it may be taken a moment later)."""
    try:
        bind_socket(host, port).close()
    except OSError:
        return False
    return True


def free_port(host: str = LOOPBACK_HOST) -> int:
    """A port nothing listens on at `host` now, for a process that binds it itself."""
    with bind_socket(host, 0) as sock:
        port: int = sock.getsockname()[1]
        return port
