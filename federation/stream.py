"""What inbound and outbound server-to-server streams share: the ``jabber:server`` content
namespace (RFC 6120 §4.8.3), an in-order element queue (§10.1: stanzas from one stream are
never reordered, even when one waits on storage), the peer's certificate once TLS is up,
and namespace normalisation of received stanzas.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from federation.dialback import DB_DECL
from federation.verify import PeerCertificate, Role, peer_certificate
from xmppd import stanza as st
from xmppd.xmlstream import XmlStream

if TYPE_CHECKING:
    from federation.manager import S2SManager

MAX_QUEUE = 256  # elements waiting behind a slow one before we stop reading the socket


def to_client_namespace(el: Element) -> Element:
    """Rewrite ``jabber:server`` to ``jabber:client`` on a received stanza and on the chain of
    its descendants in that namespace (``<body/>``, ``<error/>`` ...). Stanzas are held in
    ``jabber:client`` inside the server; the serializer writes the stream's content
    namespace on output (xmppd/stanza.py), so the two directions are symmetric."""
    if el.uri == st.NS_SERVER:
        el.uri = st.NS_CLIENT
        if el.defaultUri == st.NS_SERVER:
            el.defaultUri = st.NS_CLIENT
        for c in el.children:
            if isinstance(c, Element):
                to_client_namespace(c)
    return el


class S2SStream(XmlStream):
    content_ns = st.NS_SERVER
    kind = "s2s"

    def __init__(self, manager: S2SManager) -> None:
        super().__init__(manager.server.clock)
        self.manager = manager
        self.server = manager.server
        self.max_stanza_bytes = manager.server.config.limits.max_stanza_size
        self.tls_active = False
        self.peer_cert: PeerCertificate | None = None
        self.last_active = self.clock.seconds()
        self._queue: deque[Element] = deque()
        self._busy = False
        self._paused = False

    # -- TLS ------------------------------------------------------------------------------------
    def check_peer_certificate(self, role: Role) -> PeerCertificate:
        """Validate the peer's chain once, after the handshake finished."""
        if self.peer_cert is None:
            self.peer_cert = peer_certificate(self.transport.getHandle(), self.manager.trust,
                                              role)
        return self.peer_cert

    # -- input ------------------------------------------------------------------------------------
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.last_active = self.clock.seconds()
        super().dataReceived(data)

    def element_received(self, el: Element) -> None:
        if self._busy:
            self._queue.append(el)
            if len(self._queue) >= MAX_QUEUE and not self._paused and self.transport:
                self._paused = True
                self.transport.pauseProducing()
            return
        self._run(el)

    def _run(self, el: Element) -> None:
        while True:
            d = self.handle(el) if not (self.closing or self.closed) else None
            if d is not None and not d.called:
                self._busy = True
                self.server.track(d)
                d.addBoth(self._resume)
                return
            if not self._queue or self.closed:
                break
            el = self._queue.popleft()
        self._unpause()

    def _resume(self, result: object) -> None:
        if isinstance(result, Failure):
            self.log.failure("error handling element from {peer}", result, peer=self.peer)
        self._busy = False
        if self._queue and not self.closed:
            self._run(self._queue.popleft())
        else:
            self._unpause()

    def _unpause(self) -> None:
        if self._paused and self.transport:
            self._paused = False
            self.transport.resumeProducing()

    def handle(self, el: Element) -> Deferred[Any] | None:
        raise NotImplementedError

    @staticmethod
    def coro(coro: Any) -> Deferred[Any] | None:
        d: Deferred[Any] = Deferred.fromCoroutine(coro)
        return None if d.called else d

    def peer_stream_error(self, el: Element) -> str:
        """Log a ``<stream:error/>`` from the peer; returns its condition."""
        cond = next((c.name for c in st.children(el, ns=st.NS_STREAM_ERRORS)
                     if c.name != "text"), "undefined-condition")
        text = st.child_text(el, "text", st.NS_STREAM_ERRORS) or ""
        self.log.info("stream error from {peer}: {condition} {text}", peer=self.peer,
                      condition=cond, text=text)
        return cond

    # -- output -----------------------------------------------------------------------------------
    def header_xml(self, attrs: dict[str, str]) -> str:
        """Our headers declare the dialback prefix (XEP-0220 §2.4.1: that declaration is how
        support for traditional dialback is advertised)."""
        head = super().header_xml(attrs)
        return head[:-1] + DB_DECL + ">"

    @property
    def writable(self) -> bool:
        return not (self.closed or self.closing) and self.transport is not None

    def write(self, data: str) -> None:
        self.last_active = self.clock.seconds()
        super().write(data)
