"""Where to connect for a remote domain (RFC 6120 §3.2, XEP-0368 §3).

``_xmpps-server._tcp`` (direct TLS) and ``_xmpp-server._tcp`` (STARTTLS) are looked up
together and their records mixed by priority and weight (RFC 2782); a target of "." means
the service is not offered. Only when neither name has records is the domain itself tried on
5269 (RFC 6120 §3.2.2). ``federation.domains.<d>.connect`` replaces all of that for one
domain (tests, private deployments). Names reserved by RFC 6761 (``.invalid``,
``localhost``) are never looked up.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet import defer
from twisted.names import client as dns_client
from twisted.names import dns
from twisted.names.error import DNSNameError

DEFAULT_PORT = 5269


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    direct_tls: bool

    def __str__(self) -> str:
        return f"{'tls://' if self.direct_tls else ''}{self.host}:{self.port}"


def parse_connect(value: str) -> Target:
    """``host:port`` (STARTTLS) or ``tls://host:port`` (direct TLS); IPv6 in brackets."""
    direct = value.startswith("tls://")
    rest = value[6:] if direct else value
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected host:port or tls://host:port, not {value!r}")
    return Target(host.strip("[]"), int(port), direct)


def order_srv(records: Sequence[tuple[int, int, Target]], rng: random.Random | None = None
              ) -> list[Target]:
    """RFC 2782 ordering: ascending priority; within one, weighted random selection."""
    rng = rng or random.Random()
    out: list[Target] = []
    for prio in sorted({r[0] for r in records}):
        group = [(w, t) for p, w, t in records if p == prio]
        group.sort(key=lambda x: x[0])  # zero weights first, as RFC 2782 asks
        while group:
            total = sum(w for w, _ in group)
            pick = rng.randint(0, total)
            running = 0
            for i, (w, t) in enumerate(group):
                running += w
                if running >= pick:
                    out.append(t)
                    del group[i]
                    break
    return out


def _special(domain: str) -> bool:
    """RFC 6761 §6.4/§6.3: names that never resolve to a remote server."""
    return domain == "invalid" or domain.endswith(".invalid") or domain == "localhost" or (
        domain.endswith(".localhost"))


async def _srv(name: str, timeout: Sequence[int]) -> list[tuple[int, int, str, int]] | None:
    """SRV records of ``name`` (None: no such records or the lookup failed)."""
    try:
        answers, _auth, _add = await dns_client.lookupService(name, timeout=timeout)
    except DNSNameError:
        return None
    except Exception:
        return None
    out = []
    for rr in answers:
        if rr.type == dns.SRV:
            p = rr.payload
            out.append((p.priority, p.weight, str(p.target.name.decode("ascii", "replace")),
                        p.port))
    return out or None


async def resolve(domain: str, connect: str = "", dns_timeout: Sequence[int] = (2, 4)
                  ) -> list[Target]:
    """Connection targets for a remote domain, best first (see module docstring)."""
    if connect:
        return [parse_connect(connect)]
    if _special(domain):
        return []
    bare = domain.strip("[]")
    try:
        ipaddress.ip_address(bare)
        return [Target(bare, DEFAULT_PORT, False)]  # an IP literal domain: no DNS
    except ValueError:
        pass
    ascii_name = domain.encode("idna").decode("ascii")
    results = await defer.gatherResults([
        defer.Deferred.fromCoroutine(_srv(f"_xmpps-server._tcp.{ascii_name}", dns_timeout)),
        defer.Deferred.fromCoroutine(_srv(f"_xmpp-server._tcp.{ascii_name}", dns_timeout)),
    ])
    direct, starttls = results
    if direct is None and starttls is None:
        return [Target(ascii_name, DEFAULT_PORT, False)]  # RFC 6120 §3.2.2 fallback
    records: list[tuple[int, int, Target]] = []
    for found, is_direct in ((direct, True), (starttls, False)):
        for prio, weight, host, port in found or []:
            if host not in ("", "."):  # "." = service not offered (RFC 2782)
                records.append((prio, weight, Target(host.rstrip("."), port, is_direct)))
    return order_srv(records)


