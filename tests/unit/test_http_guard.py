"""Slow HTTP clients (xmppd/web.py GuardedChannel), on a fake clock: a request's headers must
be complete within web.header_timeout of the connection or of the previous request's end,
however the bytes trickle in; one address may have at most web.max_pending_per_ip
connections at that stage."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from xmppd.web import Root, _ListenerSite

TIMEOUT = 30.0


class Conn:
    def __init__(self, site: _ListenerSite, clock: Clock, host: str) -> None:
        addr = IPv4Address("TCP", host, 40000)
        self.proto = site.buildProtocol(addr)
        assert self.proto is not None
        self.proto.callLater = clock.callLater  # type: ignore[attr-defined]
        self.transport = StringTransport(peerAddress=addr)
        self.transport.abortConnection = self._abort  # type: ignore[method-assign]
        self.aborted = False
        self.proto.makeConnection(self.transport)

    def _abort(self) -> None:
        self.aborted = True
        self.proto.connectionLost(None)  # type: ignore[arg-type]

    def send(self, data: bytes) -> None:
        self.proto.dataReceived(data)


def make_site(cap: int = 3) -> tuple[_ListenerSite, Clock]:
    root = Resource()
    root.putChild(b"", Root())
    return _ListenerSite(root, False, TIMEOUT, cap), Clock()


def test_headers_trickling_in_are_cut_off_at_the_deadline() -> None:
    site, clock = make_site()
    c = Conn(site, clock, "10.0.0.1")
    for ch in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ":
        c.send(bytes([ch]))
        clock.advance(0.5)  # a byte every half second: the idle timeout alone never fires
    assert not c.aborted
    clock.advance(TIMEOUT)
    assert c.aborted and not site.pending


def test_a_complete_request_is_served_and_a_kept_alive_connection_is_bounded_too() -> None:
    site, clock = make_site()
    c = Conn(site, clock, "10.0.0.1")
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.transport.value().startswith(b"HTTP/1.1 200")
    clock.advance(TIMEOUT - 1)
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # the next request in time: served
    assert c.transport.value().count(b"HTTP/1.1 200") == 2 and not c.aborted
    clock.advance(TIMEOUT + 1)  # then nothing more: the kept-alive connection ends
    assert c.aborted and not site.pending


def test_one_address_may_have_only_so_many_connections_in_headers() -> None:
    site, clock = make_site(cap=3)
    slow = [Conn(site, clock, "10.0.0.1") for _ in range(3)]
    assert not any(c.aborted for c in slow)
    fourth = Conn(site, clock, "10.0.0.1")
    assert fourth.aborted  # refused at once
    other = Conn(site, clock, "10.0.0.2")  # another address is not affected
    assert not other.aborted
    # Served and not kept alive: a slot is free (a kept-alive one waits for its next
    # request's headers, and counts).
    slow[0].send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert not Conn(site, clock, "10.0.0.1").aborted
    assert site.pending["10.0.0.1"] == 3
