"""The client address behind trusted proxies (xmppd/netaddr.py)."""

from __future__ import annotations

import pytest

from xmppd.netaddr import client_address, networks, within

PROXIES = networks(["10.0.0.0/8", "::1", "not a network"])


@pytest.mark.parametrize("peer,header,expected", [
    ("192.0.2.9", "203.0.113.5", "192.0.2.9"),  # the peer is no proxy: the header is ignored
    ("10.0.0.2", None, "10.0.0.2"),
    ("10.0.0.2", "203.0.113.5", "203.0.113.5"),
    # a client writing its own X-Forwarded-For: the proxy appends the real address
    ("10.0.0.2", "127.0.0.1, 203.0.113.5", "203.0.113.5"),
    ("10.0.0.2", "198.51.100.1, 203.0.113.5, 10.0.0.7", "203.0.113.5"),  # two proxies
    ("10.0.0.2", "10.0.0.9, 10.0.0.7", "10.0.0.9"),  # only proxies: the first hop
    ("::1", "2001:db8::5", "2001:db8::5"),
])
def test_client_address(peer: str, header: str | None, expected: str) -> None:
    assert client_address(peer, header, PROXIES) == expected


def test_within_maps_ipv4_in_ipv6() -> None:
    assert within("::ffff:10.1.2.3", PROXIES) and not within("garbage", PROXIES)
    assert len(PROXIES) == 2
