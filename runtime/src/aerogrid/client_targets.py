"""Where a `GridClient` connects, and when it tries again: several targets, failover.

A replicated app has several serving processes. A client is given their targets (a list,
"h1:50051,h2:50051", or one DNS name with several addresses, as a headless Service has),
starts at a random one so that many clients spread over the replicas, and when its stream
breaks moves on to the next. Names are resolved again at each (re)connect, so a Service
that scaled is followed; an address found through a name keeps that name as the channel's
authority, which is also the name TLS checks the server's certificate against.

Only the first failure of a round is retried (almost) at once, on another address; once
every address failed in a row the client waits the jittered backoff of `aerogrid.backoff`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from aerogrid.backoff import Backoff
from aerogrid.net import is_loopback

__all__ = [
    "Resolver",
    "RetryPacing",
    "TargetAddress",
    "Targets",
    "parse_targets",
    "resolve_host",
    "split_host_port",
]

#: Target schemes gRPC resolves itself (https://github.com/grpc/grpc/blob/master/doc/naming.md):
#: such a target is dialed as given, never split at commas (``ipv4:a:1,b:1`` is one target).
GRPC_SCHEMES: Final = frozenset(
    {"dns", "unix", "unix-abstract", "ipv4", "ipv6", "vsock", "xds", "google-c2p"}
)
#: The port gRPC dials when a target names none.
DEFAULT_PORT: Final = 443
#: The longest wait before trying the next address after one failed: a random share of it
#: (full jitter), so that the clients of a replica that died do not all land on the next
#: one in the same millisecond.
HOP_SECONDS: Final = 0.05

#: How long an address that failed is passed over while another one has not failed as
#: recently: a replica that died is not tried again at each failover of the client's
#: streams (a dead pod's address can take a whole connect timeout to fail).
AVOID_SECONDS: Final = 10.0
#: How long a name's lookup may take before the name is dialed as given (gRPC resolves it
#: then): a slow DNS server must not hold up a failover.
RESOLVE_SECONDS: Final = 2.0

#: Resolves a host name to its IP addresses (the port is what getaddrinfo takes too).
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


@dataclass(frozen=True)
class TargetAddress:
    """One address a client dials, and the name it was found by.

    `authority` is the target the user gave when `address` is one of the several addresses
    that target resolved to (the channel's :authority and TLS server name); None when the
    target itself is dialed and gRPC resolves it.
    """

    address: str
    authority: str | None = None

    def __str__(self) -> str:
        return self.address if self.authority is None else f"{self.authority}@{self.address}"


def parse_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """The targets in a string ("h1:50051,h2:50051") or a list of them, each once, in order."""
    items = [targets] if isinstance(targets, str) else list(targets)
    found: list[str] = []
    for item in items:
        text = item.strip()
        parts = [text] if _scheme(text) in GRPC_SCHEMES else text.split(",")
        for part in (p.strip() for p in parts):
            if part and part not in found:
                found.append(part)
    if not found:
        raise ValueError(f"no target (host:port) in {targets!r}")
    return tuple(found)


def split_host_port(target: str) -> tuple[str, int] | None:
    """(host, port) of "host", "host:port" or "[v6]:port"; None for what gRPC dials as given
    (a target with a scheme, a bare IPv6 literal, a port that is no number)."""
    if _scheme(target) in GRPC_SCHEMES:
        return None
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            return None
        host, rest = target[1:end], target[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:]
    elif target.count(":") == 1:
        host, port = target.split(":")
    elif ":" in target:
        return None
    else:
        host, port = target, ""
    if not port:
        return host, DEFAULT_PORT
    return (host, int(port)) if port.isdigit() else None


async def resolve_host(host: str, port: int) -> list[str]:
    """The host's IP addresses (getaddrinfo, off the event loop), sorted so that every
    client walks them in the same order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


async def _addresses(target: str, resolver: Resolver) -> list[TargetAddress]:
    """What a target stands for: itself, or each address of a name that has several.

    IP literals, loopback names (one machine) and targets gRPC must resolve itself are
    dialed as given, and so is a name that resolves to one address, or not at all within
    `RESOLVE_SECONDS` (gRPC then reports why it cannot connect).
    """
    split = split_host_port(target)
    if split is None or is_loopback(split[0]) or _is_ip(split[0]):
        return [TargetAddress(target)]
    host, port = split
    try:
        ips = list(dict.fromkeys(await asyncio.wait_for(resolver(host, port), RESOLVE_SECONDS)))
    except (OSError, UnicodeError, TimeoutError):
        return [TargetAddress(target)]
    if len(ips) <= 1:
        return [TargetAddress(target)]
    return [TargetAddress(_join(ip, port), authority=target) for ip in ips]


class Targets:
    """A client's targets, the addresses they stand for now, and the one it is on.

    The first address is drawn at random; `move_on` goes to the next in order that has not
    failed in the last `AVOID_SECONDS` (the next in order when all have). Shared by a
    client's calls: when several of them lose the same address, it moves on once.
    """

    def __init__(
        self,
        targets: Sequence[str],
        *,
        resolver: Resolver = resolve_host,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = tuple(targets)
        #: The addresses as last resolved (each target itself, before the first resolve).
        self.addresses: list[TargetAddress] = [TargetAddress(t) for t in self.targets]
        self.current: TargetAddress | None = None
        self._resolver = resolver
        self._rng = rng or random.Random()
        self._clock = clock
        self._position = 0
        #: When each address last failed a call.
        self._failed_at: dict[TargetAddress, float] = {}

    async def refresh(self) -> TargetAddress:
        """Resolve the targets again and return the address to dial now."""
        resolved = await asyncio.gather(*(_addresses(t, self._resolver) for t in self.targets))
        self.addresses = list(dict.fromkeys(a for found in resolved for a in found))
        if self.current is None:
            self._position = self._rng.randrange(len(self.addresses))
        elif self.current in self.addresses:
            self._position = self.addresses.index(self.current)
        else:  # gone from the name's addresses (the Service scaled in): the next in line
            self._position %= len(self.addresses)
        self.current = self.addresses[self._position]
        return self.current

    def move_on(self, failed: TargetAddress) -> TargetAddress:
        """After a call on `failed` broke: the address to try next (the same when it is the
        only one; the current one when another call already moved away from `failed`)."""
        now = self._clock()
        self._failed_at[failed] = now
        if self.current == failed and failed in self.addresses:
            start, count = self.addresses.index(failed), len(self.addresses)
            # The others in order, then `failed` itself.
            order = [self.addresses[(start + k) % count] for k in range(1, count + 1)]
            fresh = [a for a in order if now - self._failed_at.get(a, -math.inf) >= AVOID_SECONDS]
            self.current = (fresh or order)[0]
            self._position = self.addresses.index(self.current)
        return self.current or failed


class RetryPacing:
    """How long to wait before the next attempt of one stream or call.

    Failures are counted in rounds over the addresses: within a round the next address is
    tried after at most `HOP_SECONDS`; a round in which every address failed ends with the
    backoff's delay. A success (the server sent data) starts over.
    """

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self._hop = Backoff(initial=HOP_SECONDS, maximum=HOP_SECONDS, factor=1.0, jitter=1.0)
        self._failed = 0

    def succeeded(self) -> None:
        self._failed = 0
        self._backoff.reset()

    def next_delay(self, addresses: int) -> float:
        """The wait after a failure, when the next attempt has `addresses` to go round
        (1 when it stays on the same one)."""
        self._failed += 1
        if self._failed < addresses:
            return self._hop.next_delay()
        self._failed = 0
        return self._backoff.next_delay()


def _scheme(target: str) -> str:
    head, colon, _ = target.partition(":")
    return head.lower() if colon else ""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _join(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
