"""The C2SSession of a BOSH session (XEP-0206): the TCP stream's state machine, framed in
<body/> wrappers instead of a stream element.

Only the framing differs from TCP, as for WebSocket: no stream header or closing tag (the
session creation and terminate bodies stand for them), every element written standalone
(explicit namespaces), no STARTTLS (BOSH is secure when its HTTP is, XEP-0206 §4), and a
stream restart that the client asks for with xmpp:restart (XEP-0206 §5) instead of a new
stream header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.c2s import C2SSession
from xmppd.context import ServerContext
from xmppd.errors import StreamError
from xmppd.xmlstream import stream_error_xml

if TYPE_CHECKING:
    from xmppd.bosh.session import BoshSession

# Queued behind a terminate request's payloads, so that they are handled before the stream
# closes (XEP-0124 §13: they MUST be forwarded, e.g. an unavailable presence).
TERMINATE = Element(("http://jabber.org/protocol/httpbind", "terminate"))


class BoshC2S(C2SSession):
    can_starttls = False
    transport_kind = "bosh"
    # XEP-0198 is not offered over BOSH: the rids and replayed responses of XEP-0124 §14.3
    # already recover lost responses, and what is still undelivered when a session ends is
    # handed back as XEP-0206 §7 says (xmppd.bosh.session). Prosody does the same.
    stream_management = False

    def __init__(self, server: ServerContext, secure: bool, bosh: BoshSession) -> None:
        super().__init__(server, direct_tls=secure)
        self.bosh = bosh
        self.restart_expected = False  # after SASL success (RFC 6120 §6.4.6)
        self.header: dict[str, str] = {}  # our latest stream header (for the creation body)
        self.error: StreamError | None = None  # the stream error that ended the session

    def reset_parser(self) -> None:
        """Each request body is parsed on its own (xmppd.bosh.wire); a reset after the
        stream has started is a restart the client has to ask for."""
        self.drop_parser()
        self.restart_expected = self.header_sent

    # -- framing --------------------------------------------------------------------------
    def header_xml(self, attrs: dict[str, str]) -> str:
        self.header = dict(attrs)
        return ""

    def features_xml(self, children: list[Element]) -> str:
        return (f"<stream:features xmlns:stream='{st.NS_STREAMS}'>"
                + "".join(st.serialize(c) for c in children) + "</stream:features>")

    def error_xml(self, err: StreamError) -> str:
        return stream_error_xml(err).replace(
            "<stream:error>", f"<stream:error xmlns:stream='{st.NS_STREAMS}'>", 1)

    def close_xml(self) -> str:
        return ""

    def stanza_xml(self, el: Element) -> str:
        return st.serialize(el, explicit_ns=True)

    # -- closing ----------------------------------------------------------------------------
    def stream_error(self, err: StreamError) -> None:
        if not (self.closed or self.closing):
            self.error = err
        super().stream_error(err)

    def close_stream(self) -> None:
        """No closing handshake to wait for: the terminate body is the end (XEP-0124 §13)."""
        if self.closed or self.closing:
            return
        self.write_close()
        if self.transport is not None:
            self.transport.loseConnection()

    def stream_ended(self) -> None:
        """The client terminated the session (after its payloads were handled)."""
        self.clean_close = True
        if not self.closing:
            self.write_close()
        if self.transport is not None:
            self.transport.loseConnection()

    def handle(self, el: Element) -> Deferred[Any] | None:
        if el is TERMINATE:
            self.stream_ended()
            return None
        return super().handle(el)

    # -- output -------------------------------------------------------------------------------
    def send(self, stanza: Element) -> None:
        """As C2SSession.send, but the outbox keeps what kind of stanza each piece is, so
        that one never delivered can be handed back when the session ends."""
        host = self.server.hosts.get(self.host)
        if host is not None and host.has_handlers(H.STANZA_DELIVER) and host.fire_sync(
                H.STANZA_DELIVER, H.DeliverEvent(self, stanza)):
            return
        self.server.stats.c2s_out[stanza.name] += 1
        if not self.closed and not self.close_written:
            self.bosh.output(self.stanza_xml(stanza).encode(), stanza.name)


class Address:
    """A peer or local address as twisted reports them (host, port)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class BoshTransport:
    """What BoshC2S writes to: its output goes to the BoshSession's outbox, closing it ends
    the BOSH session."""

    def __init__(self, bosh: BoshSession, peer: Address, local: Any) -> None:
        self.bosh = bosh
        self.peer = peer
        self.local = local
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        if data and not self.disconnecting:
            self.bosh.output(data, None)

    def loseConnection(self) -> None:  # noqa: N802 (twisted API)
        if not self.disconnecting:
            self.disconnecting = True
            self.bosh.stream_closed()

    def abortConnection(self) -> None:  # noqa: N802
        self.loseConnection()

    def getPeer(self) -> Address:  # noqa: N802
        return self.peer

    def getHost(self) -> Any:  # noqa: N802
        return self.local

    def pauseProducing(self) -> None:  # noqa: N802
        self.bosh.pause()

    def resumeProducing(self) -> None:  # noqa: N802
        self.bosh.resume()
