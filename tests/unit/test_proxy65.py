"""XEP-0065 proxy internals without sockets: the SOCKS5 negotiation (RFC 1928 subset),
pairing, and an activated stream's rate, size and time limits under a fake clock."""

from __future__ import annotations

import hashlib

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection

from plugins.proxy65 import Proxy65
from plugins.proxy65.relay import Stream, StreamLimits
from plugins.proxy65.socks5 import Limits, Socks5Connection, Socks5Relay
from tests.support.inproc import make_server
from xmppd.errors import StanzaError
from xmppd.jid import JID

HASH = hashlib.sha1(b"sid" b"a@localhost/r" b"b@localhost/r").hexdigest().encode()
GREETING = b"\x05\x01\x00"
REQUEST = b"\x05\x01\x00\x03\x28" + HASH + b"\x00\x00"


def closed(t: StringTransportWithDisconnection) -> bool:
    return not t.connected or bool(t.disconnecting)


def relay(clock: Clock | None = None, **kw: float) -> Socks5Relay:
    return Socks5Relay(clock or Clock(), Limits(**kw))  # type: ignore[arg-type]


def connect(r: Socks5Relay) -> tuple[Socks5Connection, StringTransportWithDisconnection]:
    conn = r.buildProtocol(None)
    t = StringTransportWithDisconnection()
    t.protocol = conn
    conn.makeConnection(t)
    return conn, t


def negotiated(r: Socks5Relay, request: bytes = REQUEST
               ) -> tuple[Socks5Connection, StringTransportWithDisconnection]:
    conn, t = connect(r)
    conn.dataReceived(GREETING)
    conn.dataReceived(request)
    return conn, t


def test_negotiation_byte_by_byte() -> None:
    r = relay()
    conn, t = connect(r)
    for byte in GREETING + REQUEST:
        conn.dataReceived(bytes((byte,)))
    # RFC 1928 §3 method reply, then §6 success with BND = the requested values (§4.6)
    assert t.value() == b"\x05\x00" + b"\x05\x00\x00\x03\x28" + HASH + b"\x00\x00"
    assert conn.state == "waiting" and not closed(t)
    assert r.pending == {HASH.decode(): [conn]} and r.waiting == 1


@pytest.mark.parametrize("data,reply", [
    (b"GET / HTTP/1.1\r\n", b""),  # not SOCKS5: closed without an answer
    (b"\x05\x01\x02", b"\x05\xff"),  # only username/password offered: no acceptable method
    (GREETING + b"\x05\x02\x00\x03\x28" + HASH + b"\x00\x00", b"\x05\x00\x05\x07"),  # BIND
    (GREETING + b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", b"\x05\x00\x05\x08"),  # IPv4
    (GREETING + b"\x05\x01\x00\x03\x05hello\x00\x00", b"\x05\x00\x05\x02"),  # not a hash
    (GREETING + b"\x05\x01\x00\x03\x28" + HASH + b"\x00\x50", b"\x05\x00\x05\x02"),  # port 80
    (GREETING + b"\x04\x01\x00\x03", b"\x05\x00"),  # SOCKS4 request after a SOCKS5 greeting
])
def test_bad_negotiation_is_answered_and_closed(data: bytes, reply: bytes) -> None:
    r = relay()
    conn, t = connect(r)
    conn.dataReceived(data)
    assert t.value().startswith(reply)
    assert closed(t)
    assert r.pending == {} and r.waiting == 0


def test_a_third_party_and_too_many_waiting_are_refused() -> None:
    r = relay(max_pending=3)
    negotiated(r)
    negotiated(r)
    _, t = negotiated(r)
    assert t.value().endswith(b"\x05\x02\x00\x03\x00\x00\x00") and closed(t)
    other = hashlib.sha1(b"x").hexdigest().encode()
    negotiated(r, REQUEST.replace(HASH, other))
    _, t = negotiated(r, REQUEST.replace(HASH, hashlib.sha1(b"y").hexdigest().encode()))
    assert t.value().endswith(b"\x05\x01\x00\x03\x00\x00\x00")  # general failure
    assert r.waiting == 3


def test_not_activated_in_time_is_closed_and_forgotten() -> None:
    clock = Clock()
    r = relay(clock, handshake_timeout=30.0)
    conn, t = negotiated(r)
    clock.advance(29)
    assert not closed(t)
    clock.advance(2)
    assert closed(t)
    conn.connectionLost(None)
    assert r.pending == {} and r.waiting == 0


def test_take_needs_both_parties() -> None:
    r = relay()
    assert r.take(HASH.decode()) == "unknown"
    a, _ = negotiated(r)
    assert r.take(HASH.decode()) == "alone"
    b, _ = negotiated(r)
    assert r.take(HASH.decode()) == (a, b)
    assert r.pending == {} and r.waiting == 0


def stream(clock: Clock, limits: StreamLimits, early: bytes = b""
           ) -> tuple[Stream, StringTransportWithDisconnection, StringTransportWithDisconnection]:
    r = relay(clock)
    a, ta = negotiated(r)
    _, tb = negotiated(r)
    if early:
        a.dataReceived(early)
    ta.clear()
    tb.clear()
    pair = r.take(HASH.decode())
    assert not isinstance(pair, str)
    return Stream(r, pair[0], pair[1], limits, "a@localhost", "test"), ta, tb


def test_relaying_both_ways_and_early_data() -> None:
    clock = Clock()
    s, ta, tb = stream(clock, StreamLimits(), early=b"early ")
    assert tb.value() == b"early "  # held before activation, delivered at it
    s.a.dataReceived(b"to b")
    s.b.dataReceived(b"to a")
    assert tb.value() == b"early to b" and ta.value() == b"to a"
    s.b.transport.loseConnection()  # one party leaves: the other is closed too
    assert closed(ta) and s.closed and s not in s.relay.streams


def test_rate_limit_pauses_reading_until_the_bucket_refills() -> None:
    clock = Clock()
    s, ta, tb = stream(clock, StreamLimits(rate=100_000))
    s.a.dataReceived(b"x" * 100_000)  # the burst (one second's worth): no debt
    assert ta.producerState == "producing"
    s.a.dataReceived(b"x" * 50_000)  # 50 000 bytes of debt: half a second
    assert ta.producerState == "paused" and len(tb.value()) == 150_000  # nothing held back
    assert tb.producerState == "producing"  # the other direction is not affected
    clock.advance(0.49)
    assert ta.producerState == "paused"
    clock.advance(0.02)
    assert ta.producerState == "producing"


def test_back_pressure_and_rate_pause_do_not_undo_each_other() -> None:
    clock = Clock()
    s, ta, tb = stream(clock, StreamLimits(rate=10_000))
    pump = tb.producer  # a -> b: b's transport is its consumer
    assert pump is s.pumps[0]
    pump.pauseProducing()  # b's send buffer is full
    assert ta.producerState == "paused"
    pump.resumeProducing()
    assert ta.producerState == "producing"
    s.a.dataReceived(b"x" * 30_000)  # throttled for 2 s
    pump.pauseProducing()
    pump.resumeProducing()  # the buffer drained, but the bucket is still in debt
    assert ta.producerState == "paused"
    clock.advance(2.1)
    assert ta.producerState == "producing"


def test_size_limit_truncates_and_closes() -> None:
    clock = Clock()
    s, ta, tb = stream(clock, StreamLimits(max_bytes=1000))
    s.a.dataReceived(b"x" * 600)
    s.b.dataReceived(b"y" * 300)
    s.a.dataReceived(b"z" * 600)  # only 100 more fit
    assert tb.value() == b"x" * 600 + b"z" * 100 and ta.value() == b"y" * 300
    assert s.closed and closed(ta) and closed(tb)


def test_time_limit_closes() -> None:
    clock = Clock()
    s, ta, tb = stream(clock, StreamLimits(max_duration=60.0))
    clock.advance(59)
    assert not s.closed
    clock.advance(2)
    assert s.closed and closed(ta) and closed(tb)


def test_authorisation() -> None:
    local, remote = JID.parse("alice@localhost/r"), JID.parse("eve@elsewhere.example/r")
    server = make_server(["disco", "proxy65"])
    plugin = server.hosts["localhost"].plugin("proxy65")
    assert isinstance(plugin, Proxy65)
    plugin.authorise(local)
    with pytest.raises(StanzaError) as exc:
        plugin.authorise(remote)
    assert exc.value.condition == "forbidden"
    server = make_server(["disco", "proxy65"], options={"proxy65": {"open_access": True}})
    server.hosts["localhost"].plugin("proxy65").authorise(remote)  # type: ignore[union-attr]
    server = make_server(["disco", "proxy65"], options={"proxy65": {"acl": [
        "elsewhere.example", "bob@localhost"]}})
    plugin = server.hosts["localhost"].plugin("proxy65")  # type: ignore[assignment]
    plugin.authorise(remote)
    plugin.authorise(JID.parse("bob@localhost/x"))
    with pytest.raises(StanzaError):
        plugin.authorise(local)  # local, but not listed
