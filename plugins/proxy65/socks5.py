"""The SOCKS5 side of the XEP-0065 proxy: the subset of RFC 1928 that XEP-0065 uses, and
the table of connections waiting for their partner and for activation.

Both parties connect the same way (XEP-0065 1.7 §4.6 for the target, §4.8 for the
requester): a greeting offering "no authentication" (RFC 1928 §3), then a CONNECT request
(§4) with ATYP 3 (domain name) whose DST.ADDR is the stream's hash
SHA1(SID + Requester JID + Target JID) in hexadecimal (40 characters) and DST.PORT 0. The
proxy answers success with BND.ADDR and BND.PORT set to the requested values (§4.6, "SHOULD
set the BND.ADDR and BND.PORT to the values provided by the client") and then waits: no
byte is relayed before the requester activates the stream over XMPP (§4.9). A connection
that does not follow these rules gets the RFC 1928 §6 reply code that says why (07 command
not supported, 08 address type not supported, 02 not allowed) and is closed.

Memory and time are bounded: the greeting and request are at most 257 and 262 bytes (longer
input is an error), a connection not activated within ``handshake_timeout`` seconds is
closed, at most ``max_pending`` connections wait at once, and what a party sends before
activation is held up to PREACTIVATION_LIMIT bytes, after which the socket is not read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol, ServerFactory

from xmppd.logs import Logger

log = Logger(namespace="xmppd.plugins.proxy65")

VERSION = 5
NO_AUTH, NO_ACCEPTABLE = 0x00, 0xFF  # RFC 1928 §3
CONNECT = 0x01  # §4 CMD
DOMAINNAME = 0x03  # §4 ATYP (XEP-0065: always 3)
# RFC 1928 §6 reply codes
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED = 0x00, 0x01, 0x02
COMMAND_NOT_SUPPORTED, ADDRESS_TYPE_NOT_SUPPORTED = 0x07, 0x08
HASH = re.compile(rb"^[0-9a-fA-F]{40}$")
PREACTIVATION_LIMIT = 65536


class Socks5Connection(Protocol):
    """One TCP connection to the proxy, from greeting to relaying."""

    transport: Any  # a TCP transport (pause/resume, abort)

    def __init__(self, relay: Socks5Relay) -> None:
        self.relay = relay
        self.buffer = bytearray()
        self.state = "greeting"  # -> request -> waiting -> relaying | closed
        self.hash = ""
        self.timer: IDelayedCall | None = None
        self.on_data: Callable[[bytes], None] | None = None  # set when relaying
        self.paused = False
        self.peer = ""
        self.stream: Any = None  # the relay.Stream once activated

    def connectionMade(self) -> None:  # noqa: N802
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        self.timer = self.relay.clock.callLater(self.relay.limits.handshake_timeout,
                                                self._expired)

    def _expired(self) -> None:
        self.timer = None
        log.info("proxy65: {peer} not activated in time ({state}), closing", peer=self.peer,
                 state=self.state)
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.on_data is not None:
            self.on_data(data)
            return
        if self.state == "closed":
            return
        self.buffer += data
        if self.state == "greeting":
            self._greeting()
        if self.state == "request":
            self._request()
        if self.state == "waiting" and len(self.buffer) > PREACTIVATION_LIMIT:
            self.pause()  # a party sending before activation waits for it (§4.9)

    def _greeting(self) -> None:
        """RFC 1928 §3: VER, NMETHODS, METHODS; only "no authentication" is offered."""
        if self.buffer[0] != VERSION:
            return self._close()  # not SOCKS5 at all: nothing sensible to answer
        if len(self.buffer) < 2:
            return None
        nmethods = self.buffer[1]
        if len(self.buffer) < 2 + nmethods:
            return None
        methods = bytes(self.buffer[2:2 + nmethods])
        del self.buffer[:2 + nmethods]
        if NO_AUTH not in methods:
            self.transport.write(bytes((VERSION, NO_ACCEPTABLE)))
            return self._close()
        self.transport.write(bytes((VERSION, NO_AUTH)))
        self.state = "request"
        return None

    def _request(self) -> None:
        """RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT, with XEP-0065 §4.6's rules."""
        b = self.buffer  # each field is judged as soon as it is in
        if b and b[0] != VERSION:
            return self._close()
        if len(b) > 1 and b[1] != CONNECT:
            return self._refuse(COMMAND_NOT_SUPPORTED, "command")
        if len(b) > 3 and b[3] != DOMAINNAME:
            return self._refuse(ADDRESS_TYPE_NOT_SUPPORTED, "address type")
        if len(b) < 5:
            return None
        size = 5 + b[4] + 2
        if len(b) < size:
            return None
        addr, port = bytes(b[5:5 + b[4]]), bytes(b[size - 2:size])
        del b[:size]
        if not HASH.match(addr) or port != b"\0\0":  # §4.6 rules 1 and 2
            return self._refuse(NOT_ALLOWED, "DST.ADDR must be a SHA-1 hash and DST.PORT 0")
        self.hash = addr.decode("ascii").lower()
        refused = self.relay.join(self)
        if refused is not None:
            return self._refuse(*refused)
        self.transport.write(_reply(SUCCEEDED, addr))
        self.state = "waiting"
        return None

    def _refuse(self, code: int, why: str) -> None:
        log.info("proxy65: refused {peer}: {why}", peer=self.peer, why=why)
        self.transport.write(_reply(code, b""))
        self._close()

    def _close(self) -> None:
        self.state = "closed"
        self.buffer.clear()
        self.transport.loseConnection()

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            self.transport.pauseProducing()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.transport.resumeProducing()

    def activated(self) -> bytes:
        """The stream is relaying now: stop the clock, hand over what arrived early."""
        self.state = "relaying"
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        early, self.buffer = bytes(self.buffer), bytearray()
        return early

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.state = "closed"
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        self.relay.left(self)
        if self.stream is not None:
            self.stream.close("a party closed its connection")


def _reply(code: int, addr: bytes) -> bytes:
    """RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT (the requested hash, port 0)."""
    return bytes((VERSION, code, 0, DOMAINNAME, len(addr))) + addr + b"\0\0"


class Limits:
    """What the relay enforces that is not per stream (see the plugin's options)."""

    def __init__(self, handshake_timeout: float = 60.0, max_pending: int = 1000) -> None:
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending


class Socks5Relay(ServerFactory):
    """The factory of the socks5 listeners, shared by the proxy services of all hosts (one
    listener serves them all; a stream is known only by its hash until activation)."""

    noisy = False  # no "Starting factory" lines

    def __init__(self, clock: Any, limits: Limits) -> None:
        self.clock = clock
        self.limits = limits
        self.pending: dict[str, list[Socks5Connection]] = {}
        self.waiting = 0  # connections in ``pending``
        self.streams: set[Any] = set()  # active plugins.proxy65.relay.Stream objects

    def buildProtocol(self, addr: Any) -> Socks5Connection:  # noqa: N802
        return Socks5Connection(self)

    def join(self, conn: Socks5Connection) -> tuple[int, str] | None:
        """A connection asked for its hash: wait there, or why not."""
        if self.waiting >= self.limits.max_pending:
            return GENERAL_FAILURE, "too many connections waiting for activation"
        peers = self.pending.setdefault(conn.hash, [])
        if len(peers) >= 2:  # a stream joins two parties (§3.2 narrative): a third is refused
            return NOT_ALLOWED, "this stream has both its parties already"
        peers.append(conn)
        self.waiting += 1
        return None

    def left(self, conn: Socks5Connection) -> None:
        peers = self.pending.get(conn.hash)
        if peers is not None and conn in peers:
            peers.remove(conn)
            self.waiting -= 1
            if not peers:
                del self.pending[conn.hash]

    def take(self, digest: str) -> tuple[Socks5Connection, Socks5Connection] | str:
        """Both connections of a stream, removed from the waiting table; or, if it cannot be
        activated, "unknown" (no connection used this hash) or "alone" (only one did)."""
        peers = self.pending.get(digest)
        if not peers:
            return "unknown"
        if len(peers) < 2:
            return "alone"
        del self.pending[digest]
        self.waiting -= 2
        return peers[0], peers[1]
