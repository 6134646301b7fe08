"""The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2) on listeners.

A load balancer in TCP mode (HAProxy ``send-proxy-v2``) opens its own connection to a node,
so the node sees the balancer's address, not the client's. The PROXY protocol puts one
header in front of the relayed bytes saying whom the connection is for. A listener with
``proxy_protocol = true`` reads it:

* From a trusted source (``proxy_trusted``, per listener or ``[proxy_protocol] trusted``)
  the header is required: it must arrive complete, well formed and within ``timeout``
  seconds, or the connection is closed. Its source address then *is* the peer address
  (``transport.getPeer()``), so logs, the brute-force guard, the unauthenticated
  connection limit and the registration limits all see the client. A LOCAL command (v2,
  health checks) or UNKNOWN (v1) keeps the connection's own address (spec §2.1, §2.2).
* From any other source no header is expected: the connection is served as it is, except
  that one starting with a PROXY signature is closed (a client must not choose the address
  that bans and limits apply to).

The reader is a first-bytes protocol: it is the transport's protocol only until the header
is through, then hands the transport to the listener's own protocol (for direct TLS, the
TLS protocol, so the header comes before the handshake as HAProxy sends it) and is out of
the data path. Memory per connection is bounded by the longest header accepted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from twisted.internet import address, protocol
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from xmppd import netaddr
from xmppd.config import ListenerConfig, ServerConfig
from xmppd.logs import Logger

log = Logger(namespace="xmppd.proxyproto")

V1_PREFIX = b"PROXY "
V1_MAX = 107  # §2.1: the longest line, "PROXY UNKNOWN <ipv6> <ipv6> 65535 65535\r\n"
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"  # §2.2: the 12 bytes that open a v2 header
V2_FIXED = 16  # signature, version/command, family/protocol, 2-byte length
# The address block plus TLVs a v2 header may carry here (the length field allows 65535):
# 216 bytes of UNIX addresses plus TLVs such as PP2_TYPE_AUTHORITY, ALPN or UNIQUE_ID.
V2_MAX_LENGTH = 2048
DEFAULT_TIMEOUT = 10.0

_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")


class ProxyHeaderError(ValueError):
    """The bytes are not an acceptable PROXY header (the connection is to be closed)."""


@dataclass(frozen=True)
class ProxyHeader:
    """A parsed header. ``source`` is None when the connection's own endpoints apply
    (v2 LOCAL, v1 UNKNOWN, or an address family other than TCP over IPv4/IPv6)."""

    version: int
    length: int  # bytes the header took; what follows is the relayed stream
    source: tuple[str, int] | None = None
    destination: tuple[str, int] | None = None
    local: bool = False  # v2 LOCAL: the proxy's own connection (a health check)


def signature_state(data: bytes) -> bool | None:
    """Whether ``data`` starts with a PROXY signature: True, False, or None while the bytes
    so far are a prefix of one (at most 12 bytes are needed to tell)."""
    for sig in (V1_PREFIX, V2_SIGNATURE):
        n = min(len(data), len(sig))
        if data[:n] == sig[:n]:
            return True if n == len(sig) else None
    return False


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None if more bytes are needed. Raises
    ProxyHeaderError for anything the spec says to reject, and once the bytes exceed the
    longest header accepted (v1: 107 bytes; v2: 16 + V2_MAX_LENGTH)."""
    state = signature_state(data)
    if state is False:
        raise ProxyHeaderError("no PROXY protocol header")
    if data[:1] == b"P":
        return _parse_v1(data)
    return _parse_v2(data)


def _parse_v1(data: bytes) -> ProxyHeader | None:
    """§2.1: one US-ASCII line ended by CRLF within 107 bytes; a lone CR or LF is an error."""
    window = data[:V1_MAX]
    cr, lf = window.find(b"\r"), window.find(b"\n")
    if lf >= 0 and (cr < 0 or lf < cr):
        raise ProxyHeaderError("PROXY v1: a LF without CR")
    if cr < 0 or cr + 1 >= len(window):
        if len(data) >= V1_MAX:
            raise ProxyHeaderError("PROXY v1: no CRLF within 107 bytes")
        return None
    if window[cr + 1] != 0x0A:
        raise ProxyHeaderError("PROXY v1: a CR without LF")
    end = cr
    line = window[:end]
    parts = line.split(b" ")
    if len(parts) < 2:
        raise ProxyHeaderError("PROXY v1: no protocol")
    if parts[1] == b"UNKNOWN":  # the receiver ignores the rest of the line (§2.1)
        return ProxyHeader(1, end + 2)
    if parts[1] not in (b"TCP4", b"TCP6") or len(parts) != 6:
        raise ProxyHeaderError("PROXY v1: expected TCP4, TCP6 or UNKNOWN and four fields")
    kind = ipaddress.IPv4Address if parts[1] == b"TCP4" else ipaddress.IPv6Address
    try:
        src, dst = (str(kind(p.decode("ascii"))) for p in parts[2:4])
    except (ValueError, UnicodeDecodeError):
        raise ProxyHeaderError(f"PROXY v1: not {parts[1].decode()} addresses") from None
    if b"%" in parts[2] + parts[3]:  # scoped IPv6 addresses are no wire format
        raise ProxyHeaderError("PROXY v1: scoped address")
    ports = []
    for p in parts[4:6]:
        if not _PORT.fullmatch(p) or int(p) > 65535:  # no leading zeroes (§2.1)
            raise ProxyHeaderError("PROXY v1: bad port")
        ports.append(int(p))
    return ProxyHeader(1, end + 2, (src, ports[0]), (dst, ports[1]))


def _parse_v2(data: bytes) -> ProxyHeader | None:
    """§2.2: 16 fixed bytes, then ``length`` bytes of addresses and TLVs (skipped)."""
    if len(data) < V2_FIXED:
        return None
    ver_cmd, fam_proto = data[12], data[13]
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError("PROXY v2: unsupported version")
    command = ver_cmd & 0x0F
    if command not in (0, 1):  # LOCAL, PROXY; "other values ... must drop" (§2.2)
        raise ProxyHeaderError("PROXY v2: unknown command")
    family, transport = fam_proto >> 4, fam_proto & 0x0F
    if family > 3 or transport > 2:  # §2.2: other values must be rejected
        raise ProxyHeaderError("PROXY v2: unknown address family or protocol")
    length = int.from_bytes(data[14:16], "big")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"PROXY v2: header of {length} bytes is too long")
    total = V2_FIXED + length
    if len(data) < total:
        return None
    if command == 0:  # LOCAL: the proxy's own connection; the family is ignored
        return ProxyHeader(2, total, local=True)
    block = data[V2_FIXED:total]
    if transport == 1 and family in (1, 2):  # TCP over IPv4 / IPv6
        size = 4 if family == 1 else 16
        need = 2 * size + 4
        if length < need:
            raise ProxyHeaderError("PROXY v2: address block too short")
        kind = ipaddress.IPv4Address if family == 1 else ipaddress.IPv6Address
        src = str(kind(block[:size]))
        dst = str(kind(block[size:2 * size]))
        sport = int.from_bytes(block[2 * size:2 * size + 2], "big")
        dport = int.from_bytes(block[2 * size + 2:need], "big")
        return ProxyHeader(2, total, (src, sport), (dst, dport))
    # UNSPEC, UNIX or DGRAM: not a TCP client address; the receiver falls back to the real
    # endpoints (§2.2, "automatically falls back to the UNSPEC mode").
    min_size = {1: 12, 2: 36, 3: 216}.get(family, 0)
    if length < min_size:
        raise ProxyHeaderError("PROXY v2: address block too short")
    return ProxyHeader(2, total)


# -- Twisted -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProxyPolicy:
    """What a listener with ``proxy_protocol = true`` accepts."""

    trusted: tuple[netaddr.Network, ...]
    timeout: float = DEFAULT_TIMEOUT
    listener: str = ""  # for log lines: "c2s", "https" ...


class ProxyProtocolFactory(protocol.Factory):
    """Wraps a listener's factory: each connection starts with a ``_HeaderReader``."""

    def __init__(self, wrapped: Any, policy: ProxyPolicy, clock: Any) -> None:
        self.wrapped = wrapped
        self.policy = policy
        self.clock = clock
        self.noisy = False

    def logPrefix(self) -> str:  # noqa: N802 (twisted API)
        inner = getattr(self.wrapped, "logPrefix", None)
        return f"PROXY protocol + {inner() if inner else type(self.wrapped).__name__}"

    def doStart(self) -> None:  # noqa: N802 (twisted API)
        self.wrapped.doStart()
        super().doStart()

    def doStop(self) -> None:  # noqa: N802 (twisted API)
        self.wrapped.doStop()
        super().doStop()

    def buildProtocol(self, addr: Any) -> protocol.Protocol:  # noqa: N802 (twisted API)
        return _HeaderReader(self, addr)


class _HeaderReader(protocol.Protocol):
    transport: Any  # a TCP transport: getPeer is replaced, protocol swapped

    def __init__(self, factory: ProxyProtocolFactory, addr: Any) -> None:
        self.proxy_factory = factory
        self.addr = addr
        self.buffer = b""
        self.inner: Any = None  # untrusted sources: started at once, fed once bytes decide
        self.trusted = False
        self.timer: IDelayedCall | None = None
        self.done = False

    def connectionMade(self) -> None:  # noqa: N802 (twisted API)
        policy = self.proxy_factory.policy
        self.trusted = netaddr.within(getattr(self.addr, "host", ""), list(policy.trusted))
        if self.trusted:
            self.timer = self.proxy_factory.clock.callLater(policy.timeout, self._expired)
            return
        # A direct client: served as without the PROXY protocol (its own timers and limits
        # run from now); only its first bytes are looked at.
        self.inner = self.proxy_factory.wrapped.buildProtocol(self.addr)
        if self.inner is None:
            self.done = True
            self.transport.loseConnection()
            return
        self.inner.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (twisted API)
        if self.done:
            return
        self.buffer += data
        if not self.trusted:
            state = signature_state(self.buffer)
            if state is None:
                return  # at most 11 bytes held
            if state:
                self._refuse("a PROXY header from an untrusted address")
                return
            self._hand_over(self.inner, self.buffer)
            return
        try:
            header = parse(self.buffer)
        except ProxyHeaderError as exc:
            self._refuse(str(exc))
            return
        if header is None:
            return  # bounded by parse(): it refuses past the longest header
        self._cancel_timer()
        peer = self.addr
        if header.source is not None:
            host, port = header.source
            kind = address.IPv6Address if ":" in host else address.IPv4Address
            peer = kind("TCP", host, port)
            # Everything above asks the transport; the relayed client is the peer from here.
            self.transport.getPeer = lambda: peer
        inner = self.proxy_factory.wrapped.buildProtocol(peer)
        if inner is None:
            self.done = True
            self.transport.loseConnection()
            return
        rest = self.buffer[header.length:]
        self._hand_over(inner, b"")
        inner.makeConnection(self.transport)
        if rest and not getattr(self.transport, "disconnecting", False):
            inner.dataReceived(rest)

    def _hand_over(self, inner: Any, data: bytes) -> None:
        """The listener's protocol owns the transport from now on."""
        self.done = True
        self.inner = None
        self.buffer = b""
        self.transport.protocol = inner
        if data and not getattr(self.transport, "disconnecting", False):
            inner.dataReceived(data)

    def _refuse(self, why: str) -> None:
        self.done = True
        self.buffer = b""
        self._cancel_timer()
        log.warn("PROXY protocol: refused {peer} on the {listener} listener: {why}",
                 peer=_describe(self.addr), listener=self.proxy_factory.policy.listener,
                 why=why)
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def _expired(self) -> None:
        self.timer = None
        if not self.done:
            self._refuse("no PROXY header within "
                         f"{self.proxy_factory.policy.timeout:g} s")

    def _cancel_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self._cancel_timer()
        self.done = True
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.connectionLost(reason)


def _describe(addr: Any) -> str:
    host = getattr(addr, "host", None)
    return f"{host}:{getattr(addr, 'port', '?')}" if host is not None else str(addr)


def listen(reactor: Any, port: int, interface: str, factory: Any, tls: Any = None,
           policy: ProxyPolicy | None = None) -> IListeningPort:
    """``listenTCP`` (or ``listenSSL`` with ``tls``, a context factory), with the PROXY
    header read first when ``policy`` is given (before TLS: the proxy sends it first)."""
    if policy is None:
        if tls is not None:
            ssl_port: IListeningPort = reactor.listenSSL(port, factory, tls,
                                                         interface=interface)
            return ssl_port
        tcp_port: IListeningPort = reactor.listenTCP(port, factory, interface=interface)
        return tcp_port
    return reactor.listenTCP(port, wrap(factory, policy, reactor, tls), interface=interface)


def wrap(factory: Any, policy: ProxyPolicy | None, clock: Any, tls: Any = None) -> Any:
    """The factory to listen with: TLS around ``factory`` if ``tls``, then the PROXY reader
    if ``policy``."""
    if tls is not None:
        factory = TLSMemoryBIOFactory(tls, False, factory)
    if policy is not None:
        factory = ProxyProtocolFactory(factory, policy, clock)
    return factory



def policy_for(config: ServerConfig, lc: ListenerConfig) -> ProxyPolicy | None:
    """The listener's PROXY protocol policy (None: the listener does not use it)."""
    if not lc.proxy_protocol:
        return None
    trusted = config.proxy_protocol.trusted if lc.proxy_trusted is None else lc.proxy_trusted
    return ProxyPolicy(tuple(netaddr.networks(trusted)), config.proxy_protocol.timeout,
                       lc.type)
