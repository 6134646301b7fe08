"""Address lists and the client behind a reverse proxy, shared by every place that trusts
proxies or limits by address (WebSocket, metrics, brute-force exemptions)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(specs: Iterable[str]) -> list[Network]:
    """Parse CIDR strings (a bare address is a /32 or /128); invalid ones are skipped (the
    configuration loader reports them)."""
    out: list[Network] = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec, strict=False))
        except ValueError:
            continue
    return out


def within(address: str, nets: list[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d
    return any(ip in net for net in nets)


def client_address(peer: str, forwarded_for: str | None, proxies: list[Network]) -> str:
    """The client's address: the peer's, or when the peer is a trusted proxy, the rightmost
    X-Forwarded-For hop that is not one. Each proxy appends the address it received from,
    so everything left of that hop was written by the client itself (taking the leftmost
    entry let a client pick the address that bans and limits apply to)."""
    if not forwarded_for or not within(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not within(hop, proxies):
            return hop
    return hops[0] if hops else peer
