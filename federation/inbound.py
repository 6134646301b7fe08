"""Inbound server-to-server streams (RFC 6120 §4-§6 on the receiving side, XEP-0178 and
XEP-0220 as Receiving and Authoritative Server).

A stream accepts stanzas only from the remote domains it has authenticated: the SASL
EXTERNAL authorization identity (XEP-0178) and every domain verified with dialback on it
(XEP-0220 §2.5 multiplexing). A stanza from any other domain is ``<invalid-from/>``
(RFC 6120 §4.9.3.9); one before any authentication ``<not-authorized/>`` (§4.9.3.12); one
without 'to'/'from' or with unusable addresses ``<improper-addressing/>`` (§4.9.3.7); one for
a domain not served here ``<host-unknown/>`` (§4.9.3.6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from federation import dialback as db
from federation.stream import S2SStream
from xmppd import stanza as st
from xmppd.errors import SASLFailure, StanzaError, StreamError
from xmppd.jid import JID, JIDError, prepare_domain
from xmppd.sasl import b64_response
from xmppd.xmlstream import new_stream_id

if TYPE_CHECKING:
    from federation.manager import S2SManager

MAX_PENDING_DIALBACK = 16  # dialback requests one stream may have outstanding


class S2SInStream(S2SStream):
    """One inbound connection; also the router's ``origin`` session (kind ``s2s-in``)."""

    kind = "s2s-in"

    def __init__(self, manager: S2SManager, direct_tls: bool) -> None:
        super().__init__(manager)
        self.tls_active = direct_tls
        self.direct_tls = direct_tls
        self.host = ""  # the local domain named in the stream header
        self.remote_from = ""  # the 'from' of the peer's header ('' if absent)
        self.authenticated: set[str] = set()  # remote domains this stream may speak for
        self.sasl_done = False
        self._external_offered = False
        self._external_pending = False
        self._pending_dialback: set[tuple[str, str]] = set()
        self.jid: JID | None = None
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        self.data: dict[str, Any] = {}
        self._timer: Any = None

    # -- lifecycle --------------------------------------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.manager.inbound.add(self)
        self.log.info("s2s connection from {peer}{tls}", peer=self.peer,
                      tls=" (direct TLS)" if self.direct_tls else "")
        timeout = self.server.config.limits.handshake_timeout
        if timeout:
            self._timer = self.clock.callLater(timeout, self._handshake_expired)

    def _handshake_expired(self) -> None:
        self._timer = None
        if not self.authenticated:
            self.stream_error(StreamError("connection-timeout", "negotiation took too long"))

    def on_closed(self, reason: Failure) -> None:
        self.manager.inbound.discard(self)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._queue.clear()
        self.log.info("s2s connection {peer} closed ({domains})", peer=self.peer,
                      domains=", ".join(sorted(self.authenticated)) or "unauthenticated")

    def close(self, error: StreamError | None = None) -> None:
        if error is not None:
            self.stream_error(error)
        else:
            self.close_stream()

    def default_header_attrs(self) -> dict[str, str]:
        return {"from": self.host or next(iter(self.server.hosts)), "version": "1.0"}

    def send(self, stanza: Element) -> None:
        """Session API. Streams are unidirectional (RFC 6120 §4.5): route it outbound."""
        self.server.router.route_soon(stanza, None)

    def send_raw(self, data: str) -> None:
        self.write(data)

    # -- header (RFC 6120 §4.7) --------------------------------------------------------------------
    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        if default_ns != st.NS_SERVER:
            raise StreamError("invalid-namespace", "content namespace must be jabber:server")
        to = attrs.get("to", "")
        if not to:
            raise StreamError("improper-addressing", "the stream header needs a 'to'")
        try:
            domain = prepare_domain(to)
        except JIDError:
            raise StreamError("improper-addressing", "'to' is not a domain") from None
        if not self.manager.serves(domain):
            raise StreamError("host-unknown", f"{domain} is not served here")
        if self.host and domain != self.host:
            raise StreamError("host-unknown", "'to' changed across a stream restart")
        self.host = domain
        frm = attrs.get("from", "")
        if frm:
            try:
                self.remote_from = prepare_domain(frm)
            except JIDError:
                raise StreamError("improper-addressing", "'from' is not a domain") from None
        version = attrs.get("version", "")
        self.stream_id = new_stream_id()  # also dialback key input (XEP-0185)
        header = {"from": domain, "to": self.remote_from, "id": self.stream_id,
                  "version": "1.0" if version else ""}
        if version.split(".")[0] != "1":
            # A pre-RFC 3920 peer (no version) cannot negotiate TLS (RFC 6120 §4.7.5).
            self.send_header(header)
            if self.manager.require_tls or not self.manager.config.dialback:
                raise StreamError("unsupported-version", "XMPP 1.0 and TLS required")
            return
        self.send_header(header)
        self._send_features()

    def _send_features(self) -> None:
        parts = []
        if not self.tls_active:
            req = "<required/>" if self.manager.require_tls else ""
            parts.append(f"<starttls xmlns='{st.NS_TLS}'>{req}</starttls>")
            if not self.manager.require_tls and self.manager.config.dialback:
                parts.append(db.features_xml())
        elif not self.sasl_done:
            cert = self.check_peer_certificate("client")
            self._external_offered = cert.trusted and (
                not self.remote_from or cert.valid_for(self.remote_from))
            if self._external_offered:
                parts.append(f"<mechanisms xmlns='{st.NS_SASL}'>"
                             "<mechanism>EXTERNAL</mechanism></mechanisms>")
            if self.manager.config.dialback:
                parts.append(db.features_xml())
        elif self.manager.config.dialback:
            parts.append(db.features_xml())  # more domain pairs may follow (XEP-0220 §2.5)
        self.write("<stream:features>" + "".join(parts) + "</stream:features>")

    # -- elements ---------------------------------------------------------------------------------
    def handle(self, el: Element) -> Deferred[Any] | None:
        uri, name = el.uri, el.name
        if uri == st.NS_STREAMS:
            if name == "error":
                self.peer_stream_error(el)
                self.close_stream()
            else:
                self.stream_error(StreamError("unsupported-stanza-type"))
            return None
        if uri == st.NS_TLS and name == "starttls":
            self._starttls()
            return None
        if uri == st.NS_SASL:
            self._sasl(el)
            return None
        if uri == db.NS_DB and name in ("result", "verify"):
            if name == "result":
                self._db_result(el)
            else:
                self._db_verify(el)
            return None
        if uri == st.NS_SERVER and name in st.STANZA_NAMES:
            return self._stanza(el)
        self.stream_error(StreamError("unsupported-stanza-type"))
        return None

    # -- STARTTLS (RFC 6120 §5.4) ------------------------------------------------------------------
    def _starttls(self) -> None:
        if self.tls_active:
            self.write(f"<failure xmlns='{st.NS_TLS}'/>")  # §5.4.2.2
            self.close_stream()
            return
        self.write(f"<proceed xmlns='{st.NS_TLS}'/>")
        self.start_tls(self.manager.contexts.server_for(self.host))
        self.tls_active = True
        self.reset_parser()

    # -- SASL EXTERNAL (RFC 6120 §6, XEP-0178) -----------------------------------------------------
    def _sasl(self, el: Element) -> None:
        if not self.tls_active or self.sasl_done:
            self.stream_error(StreamError("policy-violation", "SASL is not available now"))
            return
        try:
            if el.name == "auth":
                if el.getAttribute("mechanism") != "EXTERNAL" or not self._external_offered:
                    raise SASLFailure("invalid-mechanism")
                body = st.text(el).strip()
                if body == "":
                    self._external_pending = True  # no initial response: empty challenge
                    self.write(f"<challenge xmlns='{st.NS_SASL}'/>")
                    return
                self._external(body)
            elif el.name == "response" and self._external_pending:
                self._external_pending = False
                self._external(st.text(el).strip() or "=")
            elif el.name == "abort":
                self._external_pending = False
                raise SASLFailure("aborted")
            else:
                raise SASLFailure("malformed-request")
        except SASLFailure as fail:
            self.write(st.serialize(fail.to_element()))
            if fail.condition == "not-authorized":
                self.log.info("SASL EXTERNAL refused for {peer}: {text}", peer=self.peer,
                              text=fail.text or "")
                self.close_stream()  # XEP-0178 §3 step 7.2: failure, then close

    def _external(self, body: str) -> None:
        try:
            authzid = b64_response(body).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SASLFailure("incorrect-encoding") from None
        authzid = authzid or self.remote_from
        if not authzid:
            raise SASLFailure("invalid-authzid", "no identity asserted")
        try:
            domain = prepare_domain(authzid)
        except JIDError:
            raise SASLFailure("invalid-authzid") from None
        if self.remote_from and domain != self.remote_from:
            raise SASLFailure("invalid-authzid", "authzid differs from the stream 'from'")
        cert = self.check_peer_certificate("client")
        if not cert.valid_for(domain):
            raise SASLFailure("not-authorized", cert.describe(domain))
        self.sasl_done = True
        self._authenticated(domain, "SASL EXTERNAL")
        self.write(f"<success xmlns='{st.NS_SASL}'/>")
        self.reset_parser()  # RFC 6120 §6.4.6

    def peer_authenticated(self) -> bool:
        return bool(self.authenticated)

    def _authenticated(self, domain: str, how: str) -> None:
        self.authenticated.add(domain)
        self.stanza_limit_changed()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.log.info("s2s from {peer} authenticated as {domain} for {host} ({how}{tls})",
                      peer=self.peer, domain=domain, host=self.host, how=how,
                      tls=self.tls_note(self.direct_tls))
        self.manager.inbound_authenticated(domain)

    # -- dialback: Receiving Server (XEP-0220 §2.2.1) ----------------------------------------------
    def _db_addresses(self, el: Element) -> tuple[str, str] | None:
        addrs = db.addresses(el)
        if addrs is None:
            self.stream_error(StreamError("improper-addressing", "dialback needs domains"))
        return addrs

    def _db_result(self, el: Element) -> None:
        if el.getAttribute("type") is not None:
            # §2.2: no 'type' on requests; an unsolicited answer is never acted upon (§4.1).
            self.log.info("ignoring unsolicited dialback result from {peer}", peer=self.peer)
            return
        addrs = self._db_addresses(el)
        if addrs is None:
            return
        remote, local = addrs
        if not self.tls_active and self.manager.require_tls:
            self.write(db.result_xml(local, remote, type_="error", error="policy-violation"))
            return
        if not self.manager.config.dialback:
            self.write(db.result_xml(local, remote, type_="error", error="not-authorized"))
            return
        if not self.manager.serves(local):
            self.write(db.result_xml(local, remote, type_="error", error="item-not-found"))
            return
        cert = self.check_peer_certificate("client") if self.tls_active else None
        if cert is not None and cert.valid_for(remote):
            # §2.2.1: "MAY use any method": a certificate naming the domain proves it.
            self._authenticated(remote, "dialback, certificate")
            self.write(db.result_xml(local, remote, type_="valid"))
            return
        if self.manager.require_valid_certificates(remote):
            self.log.info("dialback from {peer} for {domain} refused: {why}", peer=self.peer,
                          domain=remote, why=cert.describe(remote) if cert else "no TLS")
            self.write(db.result_xml(local, remote, type_="error", error="not-authorized"))
            return
        key = st.text(el).strip()
        if not key or (remote, local) in self._pending_dialback or (
                len(self._pending_dialback) >= MAX_PENDING_DIALBACK):
            self.stream_error(StreamError("policy-violation", "bad or duplicate dialback key"))
            return
        self._pending_dialback.add((remote, local))
        d = self.manager.verify_dialback(local, remote, self.stream_id, key)
        d.addCallback(self._db_verified, remote, local)
        d.addErrback(self._db_failed, remote, local)
        self.server.track(d)

    def _db_verified(self, outcome: str, remote: str, local: str) -> None:
        self._pending_dialback.discard((remote, local))
        if self.closed or self.closing:
            return
        if outcome == "valid":
            self._authenticated(remote, "dialback")
            self.write(db.result_xml(local, remote, type_="valid"))
        elif outcome == "invalid":
            # §2.2.1: the peer tried to spoof the domain: say so and close the stream.
            self.log.warn("invalid dialback key from {peer} for {domain}", peer=self.peer,
                          domain=remote)
            self.write(db.result_xml(local, remote, type_="invalid"))
            self.stream_error(StreamError("not-authorized", f"dialback for {remote} failed"))
        else:
            self.write(db.result_xml(local, remote, type_="error", error=outcome))

    def _db_failed(self, failure: Failure, remote: str, local: str) -> None:
        self.log.failure("dialback verification for {domain} failed", failure, domain=remote)
        self._db_verified("remote-server-timeout", remote, local)

    # -- dialback: Authoritative Server (XEP-0220 §2.2.2) ------------------------------------------
    def _db_verify(self, el: Element) -> None:
        if el.getAttribute("type") is not None:
            self.log.info("ignoring unsolicited dialback verify from {peer}", peer=self.peer)
            return
        addrs = self._db_addresses(el)
        if addrs is None:
            return
        receiving, originating = addrs
        id_ = el.getAttribute("id", "")
        if not self.manager.serves(originating):
            self.write(db.verify_xml(originating, receiving, id_, type_="error",
                                     error="item-not-found"))
            return
        valid = bool(id_) and db.key_matches(self.manager.secret, receiving, originating, id_,
                                             st.text(el))
        self.log.info("dialback key from {domain} for {host} checked: {result}",
                      domain=receiving, host=originating, result="valid" if valid else "invalid")
        self.write(db.verify_xml(originating, receiving, id_,
                                 type_="valid" if valid else "invalid"))

    # -- stanzas -----------------------------------------------------------------------------------
    def _stanza(self, el: Element) -> Deferred[Any] | None:
        if not self.authenticated:
            self.stream_error(StreamError("not-authorized", "stanza before authentication"))
            return None
        frm, to = el.getAttribute("from"), el.getAttribute("to")
        try:
            sender = JID.parse(frm or "")
            target = JID.parse(to or "")
        except JIDError:
            self.stream_error(StreamError("improper-addressing",
                                          "stanzas need valid 'from' and 'to'"))
            return None
        if sender.domain not in self.authenticated:
            self.log.warn("s2s from {peer} ({domains}) sent a stanza from {from_}",
                          peer=self.peer, domains=", ".join(sorted(self.authenticated)),
                          from_=frm)
            self.stream_error(StreamError("invalid-from", f"not authenticated for {frm}"))
            return None
        if not self.manager.serves(target.domain):
            self.stream_error(StreamError("host-unknown", f"{target.domain} is not served here"))
            return None
        self.server.stats.s2s_in[el.name] += 1
        st.to_client_namespace(el, st.NS_SERVER)
        el.attributes["from"], el.attributes["to"] = str(sender), str(target)
        problem = st.shape_error(el)
        if problem is not None:
            if el.getAttribute("type") != "error":
                return self.coro(self.server.router.bounce(
                    el, StanzaError("bad-request", text=problem)))
            return None
        return self.coro(self.server.router.route(el, self))


class S2SInFactory(protocol.Factory):
    noisy = False

    def __init__(self, manager: S2SManager, direct_tls: bool) -> None:
        self.manager = manager
        self.direct_tls = direct_tls

    def buildProtocol(self, addr: Any) -> S2SInStream:  # noqa: N802
        return S2SInStream(self.manager, self.direct_tls)
