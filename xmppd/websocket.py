"""XMPP over WebSocket (RFC 7395): the same C2SSession, framed one element per message.

Only the framing differs from TCP: <open/> and <close/> in the framing namespace instead of
the stream tags, every message a standalone document (explicit namespaces), no STARTTLS
(the WebSocket is secure when it runs over TLS or a trusted proxy says it did).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from xmppd import netaddr
from xmppd import stanza as st
from xmppd.c2s import C2SSession
from xmppd.context import ServerContext
from xmppd.errors import StreamError
from xmppd.web import origin_allowed
from xmppd.xmlstream import XMLStreamParser, stream_error_xml

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
_WRAP_OPEN = (f"<stream:stream xmlns='{st.NS_CLIENT}' xmlns:stream='{st.NS_STREAMS}'>").encode()


class _Frame:
    """Collects the elements parsed from one WebSocket message, so that a message holding
    more or less than one complete element is refused before any of it is acted on."""

    def __init__(self) -> None:
        self.elements: list[Element] = []

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        pass

    def element_received(self, el: Element) -> None:
        self.elements.append(el)

    def stream_ended(self) -> None:
        raise StreamError("not-well-formed", "each WebSocket message must hold one element")


class WebSocketC2S(C2SSession):
    """A c2s session whose transport is a WebSocket (see WSTransport).

    The messages of one connection are parsed as the children of one synthetic stream
    element, by one parser per stream (restarted like a TCP stream's, after SASL): so each
    message is held to the same per-stanza budget as on TCP (RFC 6120 §13.12; pre- and
    post-authentication), not to the stream-header budget, and a parser is not built per
    message."""

    can_starttls = False
    error_linger = 0.0  # the WebSocket close handshake already ends it cleanly
    transport_kind = "websocket"

    def __init__(self, server: ServerContext, secure: bool) -> None:
        super().__init__(server, direct_tls=secure)
        self.secure = secure
        self._frame = _Frame()

    def reset_parser(self) -> None:
        self.drop_parser()
        self.parser = XMLStreamParser(self._frame, self.stanza_limit())
        self.parser.feed(_WRAP_OPEN)

    def frame_received(self, payload: bytes) -> None:
        """One WebSocket text message: exactly one complete element (RFC 7395 §3.3.3)."""
        if self.closed or self.closing:
            return
        self.last_active = self.clock.seconds()
        data = payload.strip()
        if data.startswith(b"<?xml"):
            end = data.find(b"?>")
            data = data[end + 2:].lstrip() if end >= 0 else data
        if not data:
            return  # whitespace keepalive
        parser = self.parser
        if parser is None:
            return
        frame = self._frame
        try:
            parser.feed(data)
            if len(frame.elements) != 1 or parser.depth != 1 or parser.pending:
                raise StreamError("not-well-formed",
                                  "each WebSocket message must hold exactly one element")
        except StreamError as err:
            frame.elements.clear()
            self.stream_error(err)
            return
        el = frame.elements.pop()
        try:
            if el.uri == NS_FRAMING and el.name == "open":
                self._open(el)
            elif el.uri == NS_FRAMING and el.name == "close":
                self.stream_ended()
            else:
                self.element_received(el)
        except StreamError as err:
            self.stream_error(err)

    def _open(self, el: Element) -> None:
        """RFC 7395 §3.4: <open/> starts (or restarts) the stream."""
        attrs = {k if isinstance(k, str) else f"xml:{k[1]}": v
                 for k, v in el.attributes.items()
                 if isinstance(k, str) or k[0] == st.NS_XML}
        if not self.secure and self.server.config.tls.require_c2s:
            self.host = self.host or attrs.get("to", "")
            raise StreamError("policy-violation",
                              "use wss:// (or a TLS-terminating proxy that says so)")
        self.open_stream(attrs)

    # -- framing --------------------------------------------------------------------------
    def header_xml(self, attrs: dict[str, str]) -> str:
        parts = [f"<open xmlns='{NS_FRAMING}'"]
        for k, v in attrs.items():
            if v:
                # Double quotes: escape_attr leaves ' alone, and xml:lang is the client's.
                parts.append(f' {k}="{st.escape_attr(v)}"')
        return "".join(parts) + "/>"

    def features_xml(self, children: list[Element]) -> str:
        return (f"<stream:features xmlns:stream='{st.NS_STREAMS}'>"
                + "".join(st.serialize(c) for c in children) + "</stream:features>")

    def error_xml(self, err: StreamError) -> str:
        return stream_error_xml(err).replace(
            "<stream:error>", f"<stream:error xmlns:stream='{st.NS_STREAMS}'>", 1)

    def close_xml(self) -> str:
        return f"<close xmlns='{NS_FRAMING}'/>"

    def stanza_xml(self, el: Element) -> str:
        return st.serialize(el, explicit_ns=True)

    def stream_ended(self) -> None:
        """The client sent <close/>: answer with ours and end the WebSocket (§3.6)."""
        self.clean_close = True
        if not self.closing:
            self.write_close()
        if self.transport is not None:
            self.transport.loseConnection()


class WSTransport:
    """Adapts an autobahn protocol to the transport interface C2SSession writes to."""

    def __init__(self, proto: XmppWebSocketProtocol) -> None:
        self.proto = proto
        self.disconnecting = False

    def write(self, data: bytes) -> None:
        # Once the client has sent its Close frame, autobahn has answered it and refuses to
        # send (RFC 6455 §5.5.1: no data frames after a Close); the TCP connection and with it
        # the session end a moment later, or only when a slow peer lets go. A write in that
        # gap (a stanza routed to the session, a stream-management timer) is dropped, as a
        # TCP transport drops writes after loseConnection: stream management still holds the
        # stanza until it is acknowledged. Raising instead failed whatever routed it.
        if not self.disconnecting and self.proto.state == WebSocketServerProtocol.STATE_OPEN:
            self.proto.sendMessage(data, isBinary=False)

    def loseConnection(self) -> None:  # noqa: N802
        if not self.disconnecting:
            self.disconnecting = True
            self.proto.sendClose(code=1000)

    def abortConnection(self) -> None:  # noqa: N802
        self.disconnecting = True
        self.proto.dropConnection(abort=True)

    def getPeer(self) -> Any:  # noqa: N802
        return self.proto.peer_address

    def getHandle(self) -> Any:  # noqa: N802
        """The TLS connection under the WebSocket, for channel binding (the socket when
        the WebSocket is plain or its TLS ends at a proxy: nothing to bind to)."""
        return self.proto.tcp.getHandle()

    def getHost(self) -> Any:  # noqa: N802
        return self.proto.tcp.getHost()

    def pauseProducing(self) -> None:  # noqa: N802
        self.proto.tcp.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        self.proto.tcp.resumeProducing()


class XmppWebSocketProtocol(WebSocketServerProtocol):
    session: WebSocketC2S | None = None
    peer_address: Any = None
    factory: XmppWebSocketFactory

    @property
    def tcp(self) -> Any:
        return self.transport

    def onConnect(self, request: ConnectionRequest) -> str:  # noqa: N802
        """RFC 7395 §3.1: the 'xmpp' subprotocol is required; Origin must be allowed."""
        if "xmpp" not in request.protocols:
            raise ConnectionDeny(400, "the 'xmpp' WebSocket subprotocol is required")
        web = self.factory.server.config.web
        headers = {k.lower(): v for k, v in request.headers.items()}
        origin = request.origin or headers.get("origin")
        if origin and origin != "null" and not origin_allowed(origin, headers.get("host", ""),
                                                               web.websocket_origins):
            raise ConnectionDeny(403, "origin not allowed")
        peer = self.tcp.getPeer()
        secure = self.factory.secure
        proxies = netaddr.networks(web.trusted_proxies)
        trusted = netaddr.within(getattr(peer, "host", ""), proxies)
        if trusted and headers.get("x-forwarded-proto", "").lower() == "https":
            secure = True
        self.peer_address = peer
        if trusted and headers.get("x-forwarded-for"):
            self.peer_address = _Forwarded(netaddr.client_address(
                getattr(peer, "host", ""), headers["x-forwarded-for"], proxies))
        self._secure = secure
        return "xmpp"

    def onOpen(self) -> None:  # noqa: N802
        self.session = WebSocketC2S(self.factory.server, self._secure)
        self.session.makeConnection(WSTransport(self))

    def onMessage(self, payload: bytes, isBinary: bool) -> None:  # noqa: N802, N803
        if self.session is None:
            return
        if isBinary:
            self.session.stream_error(StreamError("bad-format", "use text frames (RFC 7395)"))
            return
        self.session.frame_received(payload)

    # A message over the limit: autobahn would drop the TCP connection at once (failByDrop)
    # and the client would never learn why. The frame header announces the length, so the
    # stream gets <policy-violation/> and a Close frame (RFC 7395 §3.6) first, as on TCP, and
    # the oversized payload is read and thrown away, never held (the close handshake's
    # timeout ends a peer that keeps sending).
    _oversized = False

    def onMessageFrameBegin(self, length: int) -> None:  # noqa: N802
        if self._oversized:
            return
        if (self.session is not None and not self.session.closed
                and self.message_data_total_length + length > self.factory.payload_limit):
            self._oversized = True
            self.session.stream_error(StreamError("policy-violation", "stanza too large"))
            return
        super().onMessageFrameBegin(length)

    def onMessageFrameData(self, payload: bytes) -> None:  # noqa: N802
        if not self._oversized:
            super().onMessageFrameData(payload)

    def onMessageFrameEnd(self) -> None:  # noqa: N802
        if not self._oversized:
            super().onMessageFrameEnd()

    def onMessageEnd(self) -> None:  # noqa: N802
        if not self._oversized:
            super().onMessageEnd()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None  # noqa: N802, N803
                ) -> None:
        if self.session is not None and not self.session.closed:
            self.session.connectionLost(Failure(ConnectionDone()))


class XmppWebSocketFactory(WebSocketServerFactory):
    protocol = XmppWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, server: ServerContext, secure: bool) -> None:
        super().__init__()
        self.server = server
        self.secure = secure
        self.payload_limit = limit = server.config.limits.max_stanza_size + 4096
        # autobahn's own limits stay as a backstop (twice ours: our check comes first).
        self.setProtocolOptions(maxMessagePayloadSize=2 * limit,
                                maxFramePayloadSize=2 * limit, autoPingInterval=0)


def websocket_resource(server: ServerContext, secure: bool) -> WebSocketResource:
    return WebSocketResource(XmppWebSocketFactory(server, secure))


class _Forwarded:
    def __init__(self, host: str) -> None:
        self.host, self.port = host, 0
