"""The PROXY protocol reader (xmppd/proxyproto.py) against the byte layouts of HAProxy's
proxy-protocol.txt (§2.1 version 1, §2.2 version 2), and its Twisted first-bytes protocol."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as s
from twisted.internet import address, protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from xmppd import netaddr
from xmppd.config import ConfigError, from_dict
from xmppd.proxyproto import (
    V1_MAX,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyPolicy,
    ProxyProtocolFactory,
    parse,
    policy_for,
    signature_state,
)

TCP4 = 0x11
TCP6 = 0x21


def v2(command: int = 1, fam: int = TCP4, block: bytes = b"", version: int = 2,
       length: int | None = None) -> bytes:
    """A version 2 header: signature, version/command, family/protocol, length, block."""
    size = len(block) if length is None else length
    return V2_SIGNATURE + bytes([version << 4 | command, fam]) + struct.pack("!H", size) + block


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed
            + struct.pack("!HH", sport, dport))


def inet6(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
            + struct.pack("!HH", sport, dport))


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


# -- the parser ----------------------------------------------------------------------------------

V1_LONGEST = (b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
              b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n")

GOOD = [
    # §2.1 examples
    (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n",
     ProxyHeader(1, 47, ("192.168.0.1", 56324), ("192.168.0.11", 443))),
    (b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
     ProxyHeader(1, 56, ("255.255.255.255", 65535), ("255.255.255.255", 65535))),
    (b"PROXY TCP6 2001:db8::1 2001:db8::2 0 5222\r\n<",
     ProxyHeader(1, 43, ("2001:db8::1", 0), ("2001:db8::2", 5222))),
    (b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ::1 1 2\r\n",
     ProxyHeader(1, 60, ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1), ("::1", 2))),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, 15)),
    (V1_LONGEST, ProxyHeader(1, V1_MAX)),  # the longest line there is: 107 bytes
    (b"PROXY UNKNOWN anything at all\r\n<?xml", ProxyHeader(1, 31)),
    # §2.2
    (v2(1, TCP4, inet4("198.51.100.7", "10.0.0.1", 40000, 5222)) + b"<?xml",
     ProxyHeader(2, 28, ("198.51.100.7", 40000), ("10.0.0.1", 5222))),
    (v2(1, TCP6, inet6("2001:db8::7", "2001:db8::1", 1, 5223)) + b"\x16\x03\x01",
     ProxyHeader(2, 52, ("2001:db8::7", 1), ("2001:db8::1", 5223))),
    # TLVs after the addresses are skipped (§2.2.x: the length covers them)
    (v2(1, TCP4, inet4("192.0.2.1", "192.0.2.2", 1, 2) + tlv(0x01, b"xmpp-client")
        + tlv(0x04, b"") + tlv(0x05, b"\x00" * 64)),
     ProxyHeader(2, 16 + 12 + 14 + 3 + 67, ("192.0.2.1", 1), ("192.0.2.2", 2))),
    # LOCAL: a health check; the family is ignored, the length still counts. The first is
    # what HAProxy 2.6 sends before `option httpchk` with send-proxy-v2 check-send-proxy.
    (b"\r\n\r\n\x00\r\nQUIT\n \x00\x00\x00GET /health HTTP/1.1\r\n",
     ProxyHeader(2, 16, local=True)),
    (v2(0, 0x00), ProxyHeader(2, 16, local=True)),
    (v2(0, TCP4, inet4("1.2.3.4", "5.6.7.8", 1, 2)), ProxyHeader(2, 28, local=True)),
    # UNSPEC, UNIX, UDP: no TCP client address; the real endpoints apply
    (v2(1, 0x00), ProxyHeader(2, 16)),
    (v2(1, 0x31, b"/run/a".ljust(108, b"\x00") + b"/run/b".ljust(108, b"\x00")),
     ProxyHeader(2, 232)),
    (v2(1, 0x12, inet4("1.2.3.4", "5.6.7.8", 1, 2)), ProxyHeader(2, 28)),
]


@pytest.mark.parametrize("data,expected", GOOD)
def test_good_headers(data: bytes, expected: ProxyHeader) -> None:
    assert parse(data) == expected


@pytest.mark.parametrize("data,expected", GOOD)
def test_every_truncation_asks_for_more(data: bytes, expected: ProxyHeader) -> None:
    for cut in range(expected.length):
        assert parse(data[:cut]) is None, cut
    assert parse(data[:expected.length]) == expected


BAD = [
    (b"<?xml version='1.0'?>", "no PROXY protocol header"),
    (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
    (b"\x16\x03\x01\x02\x00", "no PROXY protocol header"),
    (b"PROXY\r\n", "no PROXY protocol header"),
    (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "no PROXY protocol header"),
    (b"\r\n\r\n\x00\r\nQUIT\r", "no PROXY protocol header"),  # a bad 12th byte
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY v1: a LF without CR"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n", "PROXY v1: a CR without LF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "PROXY v1: expected TCP4"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: expected TCP4"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: expected TCP4"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXY v1: expected TCP4"),
    (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: not TCP4"),  # heading zero
    (b"PROXY TCP4 ::1 ::1 1 2\r\n", "PROXY v1: not TCP4"),
    (b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY v1: not TCP6"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "PROXY v1: scoped address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "PROXY v1: bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "PROXY v1: bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "PROXY v1: bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n", "PROXY v1: bad port"),
    (b"PROXY UNKNOWN " + b"x" * 100, "PROXY v1: no CRLF within 107 bytes"),
    (V1_LONGEST[:-2] + b"0\r\n", "PROXY v1: no CRLF within 107 bytes"),  # 108 bytes
    (v2(1, TCP4, inet4("1.2.3.4", "5.6.7.8", 1, 2), version=1), "PROXY v2: unsupported"),
    (v2(1, TCP4, inet4("1.2.3.4", "5.6.7.8", 1, 2), version=3), "PROXY v2: unsupported"),
    (v2(2, TCP4, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "PROXY v2: unknown command"),
    (v2(0xF, 0x00), "PROXY v2: unknown command"),
    (v2(1, 0x41), "PROXY v2: unknown address family"),
    (v2(1, 0x13), "PROXY v2: unknown address family"),
    (v2(1, TCP4, b"\x01" * 8), "PROXY v2: address block too short"),
    (v2(1, TCP6, b"\x01" * 12), "PROXY v2: address block too short"),
    (v2(1, 0x31, b"\x01" * 12), "PROXY v2: address block too short"),
    (v2(1, TCP4, length=V2_MAX_LENGTH + 1), "PROXY v2: header of 2049 bytes is too long"),
    (v2(1, TCP4, length=0xFFFF), "PROXY v2: header of 65535 bytes is too long"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_bad_headers(data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError) as exc:
        parse(data)
    assert str(exc.value).startswith(message), str(exc.value)


def test_signature_state() -> None:
    assert signature_state(b"") is None
    assert signature_state(b"PROX") is None
    assert signature_state(b"PROXY ") is True
    assert signature_state(b"\r\n\r\n\x00") is None
    assert signature_state(V2_SIGNATURE) is True
    assert signature_state(b"\r\n\r\n<") is False  # XML may start with white space
    assert signature_state(b"POST /") is False
    assert signature_state(b"<") is False


@settings(max_examples=300, deadline=None)
@given(s.binary(max_size=300))
def test_any_bytes_are_parsed_refused_or_bounded(data: bytes) -> None:
    """Whatever arrives: a header no longer than the input, an error, or a request for more
    bytes that only happens below the longest header accepted."""
    for prefix in (b"", b"PROXY ", V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11"):
        chunk = prefix + data
        try:
            header = parse(chunk)
        except ProxyHeaderError:
            continue
        if header is None:
            assert len(chunk) < (V1_MAX if chunk[:1] == b"P" else 16 + V2_MAX_LENGTH)
        else:
            assert header.length <= len(chunk)


@settings(max_examples=200, deadline=None)
@given(s.ip_addresses(), s.ip_addresses(), s.integers(0, 65535), s.integers(0, 65535),
       s.lists(s.tuples(s.integers(0, 255), s.binary(max_size=40)), max_size=4),
       s.binary(max_size=20))
def test_v2_round_trip(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       dst: ipaddress.IPv4Address | ipaddress.IPv6Address, sport: int,
                       dport: int, tlvs: list[tuple[int, bytes]], payload: bytes) -> None:
    if src.version != dst.version:
        dst = src
    block = src.packed + dst.packed + struct.pack("!HH", sport, dport)
    block += b"".join(tlv(k, v) for k, v in tlvs)
    data = v2(1, TCP4 if src.version == 4 else TCP6, block)
    header = parse(data + payload)
    assert header == ProxyHeader(2, len(data), (str(src), sport), (str(dst), dport))


@settings(max_examples=200, deadline=None)
@given(s.ip_addresses(), s.ip_addresses(), s.integers(0, 65535), s.integers(0, 65535))
def test_v1_round_trip(src: ipaddress.IPv4Address | ipaddress.IPv6Address,
                       dst: ipaddress.IPv4Address | ipaddress.IPv6Address, sport: int,
                       dport: int) -> None:
    if src.version != dst.version:
        dst = src
    line = f"PROXY TCP{src.version} {src} {dst} {sport} {dport}\r\n".encode()
    assert len(line) <= V1_MAX
    assert parse(line + b"<") == ProxyHeader(1, len(line), (str(src), sport),
                                             (str(dst), dport))


# -- the Twisted reader ---------------------------------------------------------------------------

class Recorder(protocol.Protocol):
    def __init__(self) -> None:
        self.data = b""
        self.peer: object = None
        self.lost = False

    def connectionMade(self) -> None:  # noqa: N802
        self.peer = self.transport.getPeer()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.data += data

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.lost = True


class Factory(protocol.Factory):
    def __init__(self) -> None:
        self.built: list[Recorder] = []
        self.addrs: list[object] = []

    def buildProtocol(self, addr: object) -> Recorder:  # noqa: N802
        self.addrs.append(addr)
        self.built.append(Recorder())
        return self.built[-1]


class Transport(StringTransportWithDisconnection):
    aborted = False

    def abortConnection(self) -> None:  # noqa: N802
        self.aborted = True
        self.loseConnection()


POLICY = ProxyPolicy(tuple(netaddr.networks(["127.0.0.1/32"])), 5.0, "c2s")


def connect(source: str) -> tuple[Factory, Transport, Clock]:
    inner, clock = Factory(), Clock()
    factory = ProxyProtocolFactory(inner, POLICY, clock)
    peer = address.IPv4Address("TCP", source, 40000)
    proto = factory.buildProtocol(peer)
    transport = Transport(peerAddress=peer)
    transport.protocol = proto
    proto.makeConnection(transport)
    return inner, transport, clock


def feed(transport: Transport, data: bytes, step: int = 0) -> None:
    """Deliver ``data`` to whatever protocol the transport has now (in pieces of ``step``)."""
    pieces = [data[i:i + step] for i in range(0, len(data), step)] if step else [data]
    for piece in pieces:
        if transport.disconnecting:
            return
        transport.protocol.dataReceived(piece)


@pytest.mark.parametrize("step", [0, 1, 7])
def test_trusted_header_becomes_the_peer(step: int) -> None:
    inner, transport, _ = connect("127.0.0.1")
    assert inner.built == []  # nothing starts before the header
    feed(transport, v2(1, TCP4, inet4("198.51.100.7", "10.0.0.1", 4242, 5222)) + b"<?xml ",
         step)
    feed(transport, b"version='1.0'?>")
    (rec,) = inner.built
    assert inner.addrs == [address.IPv4Address("TCP", "198.51.100.7", 4242)]
    assert rec.peer == address.IPv4Address("TCP", "198.51.100.7", 4242)
    assert transport.getPeer() == rec.peer
    assert transport.protocol is rec  # out of the data path
    assert rec.data == b"<?xml version='1.0'?>"
    assert not transport.disconnecting


def test_trusted_v1_ipv6_and_local() -> None:
    inner, transport, _ = connect("127.0.0.1")
    feed(transport, b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n")
    assert inner.built[0].peer == address.IPv6Address("TCP", "2001:db8::7", 1)
    inner, transport, _ = connect("127.0.0.1")
    feed(transport, v2(0, 0x00) + b"GET /health HTTP/1.1\r\n")
    assert inner.built[0].peer == address.IPv4Address("TCP", "127.0.0.1", 40000)
    assert inner.built[0].data == b"GET /health HTTP/1.1\r\n"


@pytest.mark.parametrize("data", [b"<?xml version='1.0'?>", b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n",
                                  v2(1, TCP4, length=60000), b"P" * 200])
def test_trusted_bad_header_is_refused(data: bytes) -> None:
    inner, transport, _ = connect("127.0.0.1")
    feed(transport, data, step=1)
    assert transport.aborted and inner.built == []


def test_trusted_silence_times_out() -> None:
    inner, transport, clock = connect("127.0.0.1")
    feed(transport, b"PROXY TCP4 1.2.3.4")
    clock.advance(4.9)
    assert not transport.aborted
    clock.advance(0.2)
    assert transport.aborted and inner.built == []


def test_untrusted_is_served_as_it_is() -> None:
    inner, transport, clock = connect("192.0.2.9")
    (rec,) = inner.built  # started at once: its own limits and timers apply
    assert rec.peer == address.IPv4Address("TCP", "192.0.2.9", 40000)
    feed(transport, b"<?xml version='1.0'?>", step=1)
    assert rec.data == b"<?xml version='1.0'?>" and transport.protocol is rec
    clock.advance(60)
    assert not transport.aborted


@pytest.mark.parametrize("data", [b"PROXY TCP4 203.0.113.1 10.0.0.1 1 2\r\n",
                                  v2(1, TCP4, inet4("203.0.113.1", "10.0.0.1", 1, 2))])
def test_untrusted_header_is_refused(data: bytes) -> None:
    inner, transport, _ = connect("192.0.2.9")
    feed(transport, data, step=1)
    (rec,) = inner.built
    assert transport.aborted and rec.data == b""
    transport.protocol.connectionLost(Failure(Exception("gone")))
    assert rec.lost


def test_connection_lost_before_the_first_bytes() -> None:
    inner, transport, _ = connect("192.0.2.9")
    feed(transport, b"PRO")
    transport.protocol.connectionLost(Failure(Exception("gone")))
    assert inner.built[0].lost


# -- configuration ---------------------------------------------------------------------------------

def test_policy_from_config() -> None:
    cfg = from_dict({"proxy_protocol": {"trusted": ["10.0.0.0/8"], "timeout": 3},
                     "listeners": [
                         {"type": "c2s", "port": 1, "proxy_protocol": True},
                         {"type": "https", "port": 2, "proxy_protocol": True,
                          "proxy_trusted": ["192.0.2.1"]},
                         {"type": "s2s", "port": 3}]})
    first, second, third = (policy_for(cfg, lc) for lc in cfg.listeners)
    assert first == ProxyPolicy((ipaddress.ip_network("10.0.0.0/8"),), 3.0, "c2s")
    assert second is not None and second.trusted == (ipaddress.ip_network("192.0.2.1/32"),)
    assert third is None


@pytest.mark.parametrize("listener,extra,message", [
    ({"type": "socks5", "proxy_protocol": True}, {}, "listeners[0].proxy_protocol: not for"),
    ({"type": "c2s", "proxy_trusted": ["10.0.0.1"]}, {},
     "listeners[0].proxy_trusted: only with proxy_protocol = true"),
    ({"type": "c2s", "proxy_protocol": True, "proxy_trusted": ["nope"]}, {},
     "listeners[0].proxy_trusted[0]: 'nope' is not a network"),
    ({"type": "c2s", "proxy_protocol": True, "proxy_trusted": []}, {},
     "listeners[0].proxy_trusted: no trusted network"),
    ({"type": "c2s", "proxy_protocol": True}, {"trusted": []},
     "listeners[0].proxy_trusted: no trusted network"),
    ({"type": "c2s"}, {"trusted": ["300.1.1.1"]}, "proxy_protocol.trusted[0]: '300.1.1.1'"),
    ({"type": "c2s"}, {"timeout": 0}, "proxy_protocol.timeout: must be positive"),
])
def test_config_errors(listener: dict[str, object], extra: dict[str, object],
                       message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict({"listeners": [{"port": 1, **listener}], "proxy_protocol": extra})
    assert str(exc.value).startswith(message), str(exc.value)


# -- /health ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"OPTIONS"])
def test_health_answers_503_while_draining(method: bytes) -> None:
    from twisted.web.test.requesthelper import DummyRequest

    from tests.support.inproc import make_server

    server = make_server()
    health = server.web.root.children[b"health"]

    def status() -> tuple[int, bytes]:
        req = DummyRequest([b""])
        req.method = method
        body = health.render(req)
        return req.responseCode or 200, body

    assert status() == (200, b"ok\n")
    server.schedule_stop(300, None)  # a shutdown is scheduled: the node drains
    assert status() == (503, b"draining\n")
    server._stop_call.cancel()
    assert status() == (200, b"ok\n")
    server.stopping = True
    assert status() == (503, b"draining\n")
