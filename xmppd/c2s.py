"""Client streams (RFC 6120): header checks, STARTTLS, SASL, resource binding, then stanzas.

One C2SSession per TCP connection; it is both the Twisted protocol and the bound session.
Every top-level element goes through one in-order queue, so a session's stanzas are never
reordered even when one waits on storage (RFC 6120 §10.1).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.authflow import NS_SASL2, Authenticator, sasl2_failure
from xmppd.context import ServerContext
from xmppd.errors import SASLFailure, StanzaError, StreamError, error_reply
from xmppd.jid import JID, JIDError, prepare_domain
from xmppd.sessions import SessionData
from xmppd.tls import HostContextFactory
from xmppd.xmlstream import OrderedXmlStream, new_stream_id

NS_LIMITS = "urn:xmpp:stream-limits:0"
_AUTH_RESULT = {"temporary-auth-failure": "banned", "aborted": "aborted"}  # else "failure"


class C2SSession(OrderedXmlStream):
    kind = "c2s"
    transport_kind = "c2s"  # the metrics' connection kind ("websocket" for RFC 7395)
    can_starttls = True  # False for transports that cannot upgrade (RFC 7395 WebSocket)
    stream_management = True  # whether XEP-0198 is offered (not over BOSH: xmppd.bosh)

    def __init__(self, server: ServerContext, direct_tls: bool) -> None:
        super().__init__(server.clock)
        self.server = server
        self.max_stanza_bytes = server.config.limits.max_stanza_size
        self.preauth_stanza_bytes = server.config.limits.max_preauth_stanza_size
        self.tls_active = direct_tls
        self.host = ""
        self.username = ""
        self.jid: JID | None = None
        self.jid_str = ""
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        self.data: dict[str, Any] = SessionData()
        self.lang = ""
        self.auth = Authenticator(self)
        self._counted_unauthenticated = False  # by AuthGuard.connection_opened
        self._handshake_timer: IDelayedCall | None = None
        self.clean_close = False
        self.stanzas_in = 0  # stanzas handled since binding (XEP-0198 counts from this)
        self.superseded = False  # a resumed stream took this session over (XEP-0198)
        # ... namely this one (see adopt), or a proxy on the node it moved to (handover.py)
        self.successor: Any = None

    # -- connection lifecycle ------------------------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.server.connections.add(self)
        self.log.info("c2s connection from {peer}{tls}", peer=self.peer,
                      tls=" (direct TLS)" if self.tls_active else "")
        if not self.server.auth_guard.connection_opened(self.peer_host):
            self.stream_error(StreamError(
                "policy-violation", "too many unauthenticated connections from your address"))
            return
        self._counted_unauthenticated = True
        timeout = self.server.config.limits.handshake_timeout
        if timeout:
            self._handshake_timer = self.clock.callLater(timeout, self._handshake_expired)

    def authenticated_now(self) -> None:
        """No longer one of the address's unauthenticated connections."""
        if self._counted_unauthenticated:
            self._counted_unauthenticated = False
            self.server.auth_guard.connection_done(self.peer_host)

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.jid is None:
            self.stream_error(StreamError("connection-timeout", "negotiation took too long"))

    def on_closed(self, reason: Failure) -> None:
        self.server.connections.discard(self)
        self.authenticated_now()
        self.auth.closed()
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._queue.clear()
        if self.jid is not None:
            self.server.session_ended(self, clean=self.clean_close)
        self.log.info("c2s connection {peer} closed ({jid})", peer=self.peer,
                      jid=self.jid_str or "unauthenticated")

    def close(self, error: StreamError | None = None) -> None:
        """Session API: end the stream (with an error if given)."""
        if self.successor is not None:
            self.successor.close(error)  # resumed elsewhere (see adopt)
            return
        if error is not None:
            self.stream_error(error)
        else:
            self.close_stream()

    def stream_ended(self) -> None:
        self.clean_close = True
        super().stream_ended()

    def stream_error(self, err: StreamError) -> None:
        if err.condition == "conflict":
            self.data["kicked"] = True
        super().stream_error(err)

    def default_header_attrs(self) -> dict[str, str]:
        return {"from": self.host or next(iter(self.server.hosts)), "version": "1.0"}

    def peer_authenticated(self) -> bool:
        return bool(self.username)

    # -- stream header (RFC 6120 §4.7) ----------------------------------------------------------
    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        if default_ns != st.NS_CLIENT:
            raise StreamError("invalid-namespace", "content namespace must be jabber:client")
        if prefix != "stream":
            raise StreamError("bad-namespace-prefix")
        self.open_stream(attrs)

    def open_stream(self, attrs: dict[str, str]) -> None:
        """Validate the opening (to, version), answer with ours and the features (§4.7)."""
        try:
            domain = prepare_domain(attrs.get("to", ""))
        except JIDError:
            domain = ""
        if domain not in self.server.hosts or (self.host and domain != self.host):
            raise StreamError("host-unknown")
        self.host = domain
        version = attrs.get("version", "")
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = 0
        if major != 1:
            raise StreamError("unsupported-version", "XMPP 1.0 required")
        self.lang = attrs.get("xml:lang", self.lang) or "en"
        self.stream_id = new_stream_id()
        header = {"from": domain, "id": self.stream_id, "version": "1.0", "xml:lang": self.lang}
        peer_from = attrs.get("from")
        if peer_from:
            try:
                header["to"] = str(JID.parse(peer_from))
            except JIDError:
                pass
        self.send_header(header)
        self.send_features()

    def send_features(self) -> None:
        features = st.make("features", st.NS_STREAMS)
        host = self.server.hosts[self.host]
        if not self.tls_active and self.can_starttls and not self.username:
            stage = "pre-tls"
            tls = st.add(features, "starttls", st.NS_TLS)
            if self.server.config.tls.require_c2s:
                st.add(tls, "required", st.NS_TLS)
            else:
                self.auth.add_features(features)
        elif not self.username:
            stage = "pre-auth"
            self.auth.add_features(features)
        else:
            stage = "post-auth"
            if self.jid is None:  # not already bound by Bind 2 (XEP-0386) or resumed
                st.add(features, "bind", st.NS_BIND)
                sess = st.add(features, "session", st.NS_SESSION)
                st.add(sess, "optional", st.NS_SESSION)
        limits = st.add(features, "limits", NS_LIMITS)
        st.add(limits, "max-bytes", NS_LIMITS, str(self.stanza_limit()))
        # Feature hooks only append elements: a sync hook, no coroutine per stream header.
        host.fire_sync(H.STREAM_FEATURES, H.FeaturesEvent(self, features, stage))
        self.write(self.features_xml(st.element_children(features)))

    # -- elements (in order, see OrderedXmlStream) --------------------------------------------
    def handle(self, el: Element) -> Deferred[Any] | None:
        if el.uri == st.NS_STREAMS:
            if el.name == "error":
                self.log.info("stream error from {peer}: {xml}", peer=self.peer,
                              xml=st.serialize(el, st.NS_STREAMS))
                self.close_stream()
            else:
                self.stream_error(StreamError("unsupported-stanza-type"))
            return None
        if not self.host:
            # No stream yet: over TCP the parser cannot deliver an element before the header,
            # but a WebSocket message can come before <open/> (RFC 7395 §3.4 makes <open/>
            # the first message). Nothing is authenticated (RFC 6120 §4.9.3.12).
            self.stream_error(StreamError("not-authorized", "open the stream first"))
            return None
        if not self.tls_active and self.can_starttls and not self.username:
            # Only before SASL: RFC 6120 §5.3.1 puts TLS negotiation first; once a plain stream
            # is authenticated (TLS optional) the restarted stream goes on to binding.
            return self._pre_tls(el)
        if not self.username:
            return self._pre_auth(el)
        if self.jid is None:
            return self._pre_bind(el)
        if el.uri == st.NS_CLIENT and el.name in st.STANZA_NAMES:
            return self._stanza(el)
        return self._nonza(el)

    # -- STARTTLS (RFC 6120 §5) ---------------------------------------------------------------
    def _pre_tls(self, el: Element) -> Deferred[Any] | None:
        if el.uri == st.NS_TLS and el.name == "starttls":
            self.write(f"<proceed xmlns='{st.NS_TLS}'/>")
            assert self.transport is not None
            assert self.server.certs is not None
            self.start_tls(HostContextFactory(self.server.certs.contexts[self.host]))
            self.tls_active = True
            self.reset_parser()
            return None
        if self.server.config.tls.require_c2s:
            if el.uri == st.NS_SASL and el.name == "auth":
                self.write(st.serialize(SASLFailure("encryption-required").to_element()))
                return None
            if el.uri == NS_SASL2 and el.name == "authenticate":
                self.write(sasl2_failure(SASLFailure("encryption-required")))
                return None
            if el.uri == st.NS_CLIENT and el.name in st.STANZA_NAMES:
                self.stream_error(StreamError("not-authorized"))
            else:
                self.stream_error(StreamError("policy-violation", "STARTTLS is required"))
            return None
        return self._pre_auth(el)

    # -- SASL (RFC 6120 §6) ---------------------------------------------------------------------
    def _pre_auth(self, el: Element) -> Deferred[Any] | None:
        if el.uri == st.NS_SASL:
            return self.coro(self.auth.sasl1(el))
        if el.uri == NS_SASL2 and self.server.config.auth.sasl2:
            return self.coro(self.auth.sasl2_element(el))
        if el.uri == st.NS_TLS and el.name == "starttls":
            self.write(f"<failure xmlns='{st.NS_TLS}'/>")
            self.close_stream()
            return None
        if el.uri == st.NS_CLIENT and el.name == "iq" and self._preauth_iq_allowed(el):
            return self.coro(self._preauth_iq(el))
        self.stream_error(StreamError("not-authorized"))
        return None

    def _preauth_iq_allowed(self, el: Element) -> bool:
        payload = next((c for c in el.children if isinstance(c, Element)), None)
        host = self.server.hosts[self.host]
        return payload is not None and payload.uri is not None and (
            host.handles_iq_namespace("preauth", payload.uri))

    async def _preauth_iq(self, el: Element) -> None:
        """IQs allowed before authentication (XEP-0077 registration), answered like any other
        IQ (Host.answer_iq), without addresses."""
        self.send(await self.server.hosts[self.host].answer_iq("preauth", el, None, None, self))

    # -- resource binding (RFC 6120 §7) ---------------------------------------------------------
    def _pre_bind(self, el: Element) -> Deferred[Any] | None:
        if el.uri == st.NS_CLIENT and el.name == "iq":
            bind = st.child(el, "bind", st.NS_BIND)
            if bind is not None and el.getAttribute("type") == "set":
                self._bind(el, bind)
                return None
            # No full JID yet: the answer names nobody (a 'from' the client wrote is not an
            # address to echo back, RFC 6120 §8.1.2.1; found by the fuzzer).
            reply = error_reply(el, StanzaError("not-authorized"))
            reply.attributes.pop("to", None)
            reply.attributes.pop("from", None)
            self.send(reply)
            return None
        if el.uri != st.NS_CLIENT:
            return self._nonza(el)  # e.g. XEP-0198 <resume/> before binding
        self.stream_error(StreamError("not-authorized", "bind a resource first"))
        return None

    def _bind(self, iq: Element, bind: Element) -> None:
        requested = st.child_text(bind, "resource", st.NS_BIND)
        try:
            self.bind_resource(requested.strip() if requested else None)
        except StanzaError as err:
            self.send(error_reply(iq, err))
            return
        reply = st.make("iq", st.NS_CLIENT, {"type": "result", "id": iq.getAttribute("id", "")})
        b = st.add(reply, "bind", st.NS_BIND)
        st.add(b, "jid", st.NS_BIND, self.jid_str)
        self.send(reply)

    def bind_resource(self, requested: str | None, announce: bool = True) -> JID:
        """Bind a resource (RFC 6120 §7, or Bind 2); StanzaError when it cannot be. With
        ``announce`` the binding is announced at once (SESSION_BOUND); Bind 2 does that only
        after its <success/> went out."""
        jid = self.server.sessions.bind(self, self.host, self.username, requested)
        self.jid_str = str(jid)
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None
        self.log.info("bound {jid} from {peer}", jid=self.jid_str, peer=self.peer)
        if announce:
            self.server.session_bound(self)
        return jid

    # -- stanzas --------------------------------------------------------------------------------
    def _stanza(self, el: Element) -> Deferred[Any] | None:
        attrs = el.attributes
        frm = attrs.get("from")
        if frm is not None and frm != self.jid_str:
            # RFC 6120 §8.1.2.1: the server stamps the session's full JID, overriding what
            # the client wrote; a claim to another account is invalid-from (§4.9.3.9). A
            # client that resumed (XEP-0198) may still write the resource it made up for the
            # new connection (Converse.js after a page reload): same account, overridden.
            try:
                claimed = JID.parse(frm)
            except JIDError:
                claimed = None
            if claimed is None or claimed.bare != self.jid.bare:  # type: ignore[union-attr]
                self.stream_error(StreamError("invalid-from"))
                return None
        attrs["from"] = self.jid_str
        self.stanzas_in += 1
        self.server.stats.c2s_in[el.name] += 1
        problem = st.shape_error(el)
        if problem is not None:
            if el.getAttribute("type") != "error":
                self.send(error_reply(el, StanzaError("bad-request", text=problem)))
            return None
        if self.lang and (st.NS_XML, "lang") not in attrs:
            attrs[(st.NS_XML, "lang")] = self.lang  # RFC 6120 §4.7.4
        return self.coro(self.server.router.route(el, self))

    def _nonza(self, el: Element) -> Deferred[Any] | None:
        host = self.server.hosts[self.host]
        if not host.has_handlers(H.C2S_NONZA):
            self.stream_error(StreamError("unsupported-stanza-type"))
            return None
        return self.coro(self._nonza_async(host, el))

    async def _nonza_async(self, host: Any, el: Element) -> None:
        if not await host.fire(H.C2S_NONZA, H.NonzaEvent(self, el)):
            self.stream_error(StreamError("unsupported-stanza-type"))

    def adopt(self, old: C2SSession) -> None:
        """Become ``old`` (XEP-0198 resumption): same JID, presence and plugin state.

        Whatever still holds the old object (a handler that was waiting on storage when the
        connection dropped, the offline drain, a pending ping) keeps talking to the session:
        its send/send_raw/close go on to this stream, as XEP-0198 §5 resumes "the previous
        session state" rather than starting a new one. Nothing written to the dead
        connection is lost unnoticed."""
        self.jid, self.jid_str = old.jid, old.jid_str
        self.available, self.priority, self.presence = old.available, old.priority, old.presence
        self.data = old.data
        self.lang = old.lang or self.lang
        old.superseded = True
        old.successor = self
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    def adopt_moved(self, jid: JID, available: bool, priority: int, presence: Element | None,
                    data: SessionData, lang: str | None) -> None:
        """Become a session another cluster node held (cluster/handover.py): ``adopt`` with
        the exported state instead of the old object."""
        self.jid, self.jid_str = jid, str(jid)
        self.available, self.priority, self.presence = available, priority, presence
        self.data = data
        self.lang = lang or self.lang
        if self._handshake_timer is not None and self._handshake_timer.active():
            self._handshake_timer.cancel()
        self._handshake_timer = None

    # -- output -----------------------------------------------------------------------------------
    def send(self, stanza: Element) -> None:
        """Session API: deliver a stanza to this client (hooks may count or hold it)."""
        if self.successor is not None:
            self.successor.send(stanza)  # resumed elsewhere (see adopt)
            return
        host = self.server.hosts.get(self.host)
        if host is not None and host.has_handlers(H.STANZA_DELIVER) and host.fire_sync(
                H.STANZA_DELIVER, H.DeliverEvent(self, stanza)):
            return
        self.server.stats.c2s_out[stanza.name] += 1
        self.write(self.stanza_xml(stanza))

    def send_raw(self, data: str) -> None:
        if self.successor is not None:
            self.successor.send_raw(data)
            return
        self.write(data)


class C2SFactory(protocol.Factory):
    noisy = False

    def __init__(self, server: ServerContext, direct_tls: bool) -> None:
        self.server = server
        self.direct_tls = direct_tls

    def buildProtocol(self, addr: Any) -> C2SSession:  # noqa: N802
        return C2SSession(self.server, self.direct_tls)
