"""The local server listens on loopback only: which addresses a host means, and refusals."""

from __future__ import annotations

import pytest

from aerogrid_devkit.local_server.front import listen_addresses


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("localhost", ["127.0.0.1", "::1"]),
        ("127.0.0.1", ["127.0.0.1", "::1"]),
        ("127.0.0.2", ["127.0.0.2"]),
        ("::1", ["::1"]),
        ("[::1]", ["::1"]),
        ("::ffff:127.0.0.1", ["127.0.0.1"]),  # an IPv4 socket's address, written as IPv6
    ],
)
def test_loopback_hosts_and_the_addresses_they_mean(host: str, addresses: list[str]) -> None:
    assert listen_addresses(host) == addresses


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.com", ""])
def test_any_other_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="listens on loopback only"):
        listen_addresses(host)
