"""One external component's connection: the XEP-0114 ``jabber:component:accept`` stream.

The component opens a stream whose 'to' is its own domain; we answer with our header (its
'from' that domain, a fresh stream id) and wait for ``<handshake/>``, the lowercase hex
SHA-1 of the stream id followed by the shared secret (XEP-0114 §3). A good handshake gets an
empty ``<handshake/>`` and the component's domain is routed to this stream from then on.

Errors, all stream errors followed by the close (XEP-0114 §3, RFC 6120 §4.9):

* content namespace other than ``jabber:component:accept``: ``<invalid-namespace/>``;
* no 'to' in the header: ``<improper-addressing/>``; a 'to' that is not a configured
  component: ``<host-unknown/>``; a component that is already connected: ``<conflict/>``
  (the connected one stays: a component with a half-open link reconnects once the server
  has noticed, whereas kicking the old one would let a second instance steal the domain);
* wrong handshake: ``<not-authorized/>`` (XEP-0114 §3 "SHOULD"); also when the address is
  banned by the password-guessing guard (xmppd/authguard.py), every wrong handshake counting
  as a failed guess;
* a stanza before the handshake: ``<not-authorized/>`` (RFC 6120 §4.9.3.12);
* a stanza without 'from' or 'to', or with addresses that are not JIDs:
  ``<improper-addressing/>`` (XEP-0114 §3: "All stanzas ... MUST possess a 'from' attribute
  and a 'to' attribute"; RFC 6120 §4.9.3.7);
* a 'from' outside the component's domain: ``<invalid-from/>`` (XEP-0114 §3: "The domain
  identifier portion of the JID contained in the 'from' attribute MUST match the hostname of
  the component"; RFC 6120 §4.9.3.9). Subdomains are another hostname, so they are refused
  too; Prosody and ejabberd do the same.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID, JIDError, prepare_domain
from xmppd.xmlstream import OrderedXmlStream, new_stream_id

if TYPE_CHECKING:
    from components.manager import ComponentManager

NS_ACCEPT = "jabber:component:accept"
# XML 1.0 §4.6: the predefined entities.
_XML_ENTITIES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                               "'": "&apos;"})


def handshake_digests(stream_id: str, secret: str) -> set[str]:
    """The handshake values a component may send (XEP-0114 §3 steps 1-4).

    Step 1 asks for the secret's XML special characters to be escaped before hashing;
    Prosody and ejabberd hash the secret as it is, and so do the components written for
    them. Both are accepted (they are one value for a secret without such characters)."""
    escaped = secret.translate(_XML_ENTITIES)
    return {hashlib.sha1((stream_id + s).encode("utf-8")).hexdigest()
            for s in (secret, escaped)}


class ComponentStream(OrderedXmlStream):
    """An accepted component connection; once authenticated also the router's ``origin``
    session for what the component sends (kind ``component``)."""

    content_ns = NS_ACCEPT
    kind = "component"

    def __init__(self, manager: ComponentManager) -> None:
        super().__init__(manager.server.clock)
        self.manager = manager
        self.server = manager.server
        limits = manager.server.config.limits
        self.max_stanza_bytes = limits.max_stanza_size
        self.preauth_stanza_bytes = limits.max_preauth_stanza_size
        self.host = ""  # the component's domain, from the stream header
        self.authenticated = False
        self.jid: JID | None = None
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        self.data: dict[str, Any] = {}
        self._timer: Any = None

    # -- lifecycle ------------------------------------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.manager.streams.add(self)
        self.log.info("component connection from {peer}", peer=self.peer)
        timeout = self.server.config.limits.handshake_timeout
        if timeout:
            self._timer = self.clock.callLater(timeout, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._timer = None
        if not self.authenticated:
            self.stream_error(StreamError("connection-timeout", "no handshake in time"))

    def on_closed(self, reason: Failure) -> None:
        self.manager.streams.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._queue.clear()
        if self.authenticated:
            self.manager.disconnected(self)
        self.log.info("component connection {peer} closed ({domain})", peer=self.peer,
                      domain=self.host if self.authenticated else "unauthenticated")

    def peer_authenticated(self) -> bool:
        return self.authenticated

    def default_header_attrs(self) -> dict[str, str]:
        return {"from": self.host}

    # -- session API (the router's origin; bounces come back through send) -------------------
    def send(self, stanza: Element) -> None:
        self.send_element(stanza)

    def send_raw(self, data: str) -> None:
        self.write(data)

    def close(self, error: StreamError | None = None) -> None:
        if error is not None:
            self.stream_error(error)
        else:
            self.close_stream()

    # -- header (XEP-0114 §3) ---------------------------------------------------------------------
    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        if default_ns != NS_ACCEPT:
            raise StreamError("invalid-namespace", f"content namespace must be {NS_ACCEPT}")
        to = attrs.get("to", "")
        if not to:
            raise StreamError("improper-addressing", "the header needs 'to': the component")
        try:
            domain = prepare_domain(to)
        except JIDError:
            raise StreamError("improper-addressing", "'to' is not a domain") from None
        if domain not in self.manager.config:
            raise StreamError("host-unknown", f"{domain} is not a configured component")
        self.host = domain
        if self.manager.connected(domain):
            raise StreamError("conflict", f"{domain} is already connected")
        self.stream_id = new_stream_id()
        self.send_header({"from": domain, "id": self.stream_id})

    # -- elements ---------------------------------------------------------------------------------
    def handle(self, el: Element) -> Deferred[Any] | None:
        uri, name = el.uri, el.name
        if uri == st.NS_STREAMS and name == "error":
            cond = next((c.name for c in st.children(el, ns=st.NS_STREAM_ERRORS)
                         if c.name != "text"), "undefined-condition")
            self.log.info("stream error from component {domain}: {condition}",
                          domain=self.host, condition=cond)
            self.close_stream()
        elif uri == NS_ACCEPT and name == "handshake" and not self.authenticated:
            self._handshake(el)
        elif uri in (NS_ACCEPT, st.NS_CLIENT) and name in st.STANZA_NAMES:
            # jabber:client too, as Prosody accepts: some component libraries write it.
            return self._stanza(el)
        else:
            self.stream_error(StreamError("unsupported-stanza-type"))
        return None

    def _handshake(self, el: Element) -> None:
        # The guard's "account" is the component at this address: failures from elsewhere
        # never lock the real component out (it may have no recent login to be known by).
        guard = self.server.auth_guard
        attempt = guard.begin(self.peer_host, f"component:{self.host}@{self.peer_host}")
        if attempt is None:
            self.log.warn("component handshake for {domain} from {peer} refused: banned",
                          domain=self.host, peer=self.peer)
            self.stream_error(StreamError("not-authorized", "too many failed handshakes"))
            return
        given = st.text(el).strip().lower()
        secret = self.manager.config[self.host].secret
        good = bool(given) and not st.element_children(el) and any(
            hmac.compare_digest(given, d) for d in handshake_digests(self.stream_id, secret))
        if not good:
            attempt.failed()
            self.log.warn("component handshake for {domain} from {peer} failed",
                          domain=self.host, peer=self.peer)
            self.stream_error(StreamError("not-authorized", "handshake does not match"))
            return
        attempt.succeeded()
        if self.manager.connected(self.host):  # another one won the race since the header
            self.stream_error(StreamError("conflict", f"{self.host} is already connected"))
            return
        self.authenticated = True
        self.jid = JID.parse(self.host)
        self.stanza_limit_changed()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.write("<handshake/>")  # in the stream's default namespace, jabber:component:accept
        self.log.info("component {domain} connected from {peer}", domain=self.host,
                      peer=self.peer)
        self.manager.authenticated(self)

    def _stanza(self, el: Element) -> Deferred[Any] | None:
        if not self.authenticated:
            self.stream_error(StreamError("not-authorized", "stanza before the handshake"))
            return None
        frm, to = el.getAttribute("from"), el.getAttribute("to")
        if not frm or not to:
            self.stream_error(StreamError("improper-addressing",
                                          "stanzas need 'from' and 'to' (XEP-0114 §3)"))
            return None
        try:
            sender = JID.parse(frm)
            target = JID.parse(to)
        except JIDError:
            self.stream_error(StreamError("improper-addressing", "'from' or 'to' is no JID"))
            return None
        if sender.domain != self.host:
            self.log.warn("component {domain} sent a stanza from {from_}", domain=self.host,
                          from_=frm)
            self.stream_error(StreamError("invalid-from", f"{frm} is not at {self.host}"))
            return None
        st.to_client_namespace(el, el.uri)
        el.attributes["from"], el.attributes["to"] = str(sender), str(target)
        problem = st.shape_error(el)
        if problem is not None:
            if el.getAttribute("type") != "error":
                return self.coro(self.server.router.bounce(
                    el, StanzaError("bad-request", text=problem)))
            return None
        return self.coro(self.server.router.route(el, self))


class ComponentFactory(protocol.Factory):
    noisy = False

    def __init__(self, manager: ComponentManager) -> None:
        self.manager = manager

    def buildProtocol(self, addr: Any) -> ComponentStream:  # noqa: N802
        return ComponentStream(self.manager)
