"""What inbound and outbound server-to-server streams share: the ``jabber:server`` content
namespace (RFC 6120 §4.8.3), the in-order element queue of OrderedXmlStream (§10.1: stanzas
from one stream are never reordered, even when one waits on storage) and the peer's
certificate once TLS is up. Received stanzas are normalised to ``jabber:client`` by
``xmppd.stanza.to_client_namespace``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from federation.dialback import DB_DECL
from federation.verify import PeerCertificate, Role, peer_certificate
from xmppd import stanza as st
from xmppd.tls import negotiated_alpn
from xmppd.xmlstream import OrderedXmlStream

if TYPE_CHECKING:
    from federation.manager import S2SManager


class S2SStream(OrderedXmlStream):
    content_ns = st.NS_SERVER
    kind = "s2s"

    def __init__(self, manager: S2SManager) -> None:
        super().__init__(manager.server.clock)
        self.manager = manager
        self.server = manager.server
        self.max_stanza_bytes = manager.server.config.limits.max_stanza_size
        self.preauth_stanza_bytes = manager.server.config.limits.max_preauth_stanza_size
        self.tls_active = False
        self.peer_cert: PeerCertificate | None = None

    # -- TLS ------------------------------------------------------------------------------------
    def check_peer_certificate(self, role: Role) -> PeerCertificate:
        """Validate the peer's chain once, after the handshake finished."""
        if self.peer_cert is None:
            self.peer_cert = peer_certificate(self.transport.getHandle(), self.manager.trust,
                                              role)
        return self.peer_cert

    def tls_note(self, direct_tls: bool) -> str:
        """For the log of a direct-TLS stream: the ALPN protocol agreed on (XEP-0368 §3 rule
        9), if any. STARTTLS lines stay as they were (peers such as Prosody and ejabberd
        offer ALPN there too, which says nothing new)."""
        proto = negotiated_alpn(self.transport) if direct_tls else ""
        return f", ALPN {proto}" if proto else ""

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
