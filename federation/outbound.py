"""Outbound server-to-server streams: find the peer (federation.resolve: SRV records for
``_xmpps-server._tcp`` / ``_xmpp-server._tcp`` or the ``connect`` override), connect,
secure, authenticate.

Negotiation (RFC 6120 §4.3): STARTTLS when offered (required unless
``federation.require_tls = false``), then SASL EXTERNAL when the peer offers it (XEP-0178:
it does so only when our certificate names our domain), else Server Dialback (XEP-0220
§2.1.1). The stream then carries stanzas from the sending domain, plus any other local
domain verified on it later with another ``<db:result/>`` (sender multiplexing, §2.5.1).
It also carries our ``<db:verify/>`` requests to the peer as Authoritative Server (§2.1.2).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, error, protocol
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from federation import dialback as db
from federation.resolve import Target, order_srv, parse_connect, resolve
from federation.stream import S2SStream
from xmppd import stanza as st
from xmppd.errors import StreamError

if TYPE_CHECKING:
    from federation.manager import S2SManager

__all__ = ["ConnectFailure", "OutFactory", "S2SOutStream", "Target", "order_srv",
           "parse_connect", "resolve"]

# RFC 6120 §4.9.3: stream errors that mean the peer will not take this domain at all.
_NOT_FOUND_ERRORS = frozenset((
    "host-unknown", "host-gone", "not-authorized", "invalid-from", "policy-violation",
    "improper-addressing", "invalid-namespace", "unsupported-version", "see-other-host",
    "remote-connection-failed",
))


class ConnectFailure(Exception):
    """Why no authenticated stream could be had; ``condition`` is the stanza error that
    queued stanzas are bounced with (RFC 6120 §8.3.3.16, §8.3.3.17)."""

    def __init__(self, condition: str, text: str, external_refused: bool = False) -> None:
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text
        self.external_refused = external_refused


def failure_condition(reason: Failure) -> str:
    if reason.check(error.DNSLookupError):
        return "remote-server-not-found"
    return "remote-server-timeout"


class S2SOutStream(S2SStream):
    """One outbound connection from ``local`` to ``remote``."""

    kind = "s2s-out"

    def __init__(self, manager: S2SManager, local: str, remote: str, target: Target,
                 use_external: bool = True) -> None:
        super().__init__(manager)
        self.local = local
        self.remote = remote
        self.target = target
        self.use_external = use_external
        self.ready: Deferred[S2SOutStream] = Deferred()
        self.authorized: set[str] = set()  # local domains this stream may send from
        self.dialback_ready = False
        self.peer_dialback_errors = False
        self.sasl_done = False
        self.failure: ConnectFailure | None = None
        self._results: dict[str, Deferred[str]] = {}
        self._verifies: dict[tuple[str, str, str], Deferred[str]] = {}
        self._backlog: list[tuple[str, str, str, str, Deferred[str]]] = []
        self.on_lost: Callable[[S2SOutStream], None] | None = None
        self.on_dialback_ready: Callable[[S2SOutStream], object] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802
        super().connectionMade()
        self.manager.outbound.add(self)
        self.log.info("s2s {local} -> {remote}: connected to {target} ({peer})",
                      local=self.local, remote=self.remote, target=str(self.target),
                      peer=self.peer)
        if self.target.direct_tls:
            self._start_tls(alpn=True)
        self._send_header()

    def _send_header(self) -> None:
        self.send_header({"from": self.local, "to": self.remote, "version": "1.0"})

    def _start_tls(self, alpn: bool) -> None:
        self.start_tls(self.manager.contexts.client(self.local, self.remote, alpn))
        self.tls_active = True

    def fail(self, condition: str, text: str, external_refused: bool = False,
             stream_error: StreamError | None = None) -> None:
        """Give up on this stream (before or after it became ready)."""
        if self.failure is None:
            self.failure = ConnectFailure(condition, text, external_refused)
            self.log.info("s2s {local} -> {remote} ({peer}) failed: {text}", local=self.local,
                          remote=self.remote, peer=self.peer, text=text)
        if not self.ready.called:
            self.ready.errback(self.failure)
        if stream_error is not None:
            self.stream_error(stream_error)
        else:
            self.close_stream()

    def timed_out(self) -> None:
        if not self.ready.called:
            self.fail("remote-server-timeout", "no authenticated stream in time")
            self.abort()

    def on_closed(self, reason: Failure) -> None:
        self.manager.outbound.discard(self)
        failure = self.failure or ConnectFailure(
            "remote-server-timeout", "connection closed during negotiation")
        if not self.ready.called:
            self.ready.errback(failure)
        pending = list(self._results.values()) + list(self._verifies.values()) + [
            b[4] for b in self._backlog]
        self._results.clear()
        self._verifies.clear()
        self._backlog.clear()
        for d in pending:
            if not d.called:
                d.callback("remote-server-timeout")
        if self.on_lost is not None:
            self.on_lost(self)
        self.log.info("s2s {local} -> {remote} ({peer}) closed", local=self.local,
                      remote=self.remote, peer=self.peer)

    def connection_failed(self, reason: Failure) -> None:
        """TCP never came up (called by the factory)."""
        if not self.ready.called:
            self.failure = ConnectFailure(failure_condition(reason),
                                          f"{self.target}: {reason.getErrorMessage()}")
            self.ready.errback(self.failure)

    # -- header and elements -----------------------------------------------------------------------
    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        if default_ns != st.NS_SERVER:
            raise StreamError("invalid-namespace", "content namespace must be jabber:server")
        self.stream_id = attrs.get("id", "")
        if attrs.get("version", "").split(".")[0] != "1":
            if self.manager.require_tls:
                self.fail("remote-server-not-found", "peer does not speak XMPP 1.0 (no TLS)")
            else:
                self._dialback()

    def handle(self, el: Element) -> Deferred[Any] | None:
        uri, name = el.uri, el.name
        if uri == st.NS_STREAMS and name == "features":
            self._features(el)
        elif uri == st.NS_STREAMS and name == "error":
            cond = self.peer_stream_error(el)
            self.fail("remote-server-not-found" if cond in _NOT_FOUND_ERRORS
                      else "remote-server-timeout", f"stream error {cond}")
        elif uri == st.NS_TLS and name == "proceed" and not self.tls_active:
            self._start_tls(alpn=False)
            self.reset_parser()
            self._send_header()
        elif uri == st.NS_TLS:
            self.fail("remote-server-not-found", "STARTTLS failed")
        elif uri == st.NS_SASL:
            self._sasl(el)
        elif uri == db.NS_DB and name == "result":
            self._result_answer(el)
        elif uri == db.NS_DB and name == "verify":
            self._verify_answer(el)
        elif uri == st.NS_SERVER and name in st.STANZA_NAMES:
            # Unidirectional streams (RFC 6120 §4.5); XEP-0288 is not negotiated.
            self.log.warn("s2s {remote} ({peer}) sent a stanza on our outbound stream; "
                          "ignored", remote=self.remote, peer=self.peer)
        else:
            self.stream_error(StreamError("unsupported-stanza-type"))
        return None

    def _features(self, features: Element) -> None:
        if not self.tls_active:
            if st.child(features, "starttls", st.NS_TLS) is not None:
                self.write(f"<starttls xmlns='{st.NS_TLS}'/>")
            elif self.manager.require_tls:
                self.fail("remote-server-not-found", "peer does not offer STARTTLS")
            else:
                self._authenticate(features)
            return
        cert = self.check_peer_certificate("server")
        if not cert.valid_for(self.remote) and self.manager.require_valid_certificates(
                self.remote):
            self.fail("remote-server-not-found", f"certificate: {cert.describe(self.remote)}")
            return
        if self.sasl_done:
            self.peer_dialback_errors = _dialback_errors(features)
            self._now_ready_for_dialback()
            self._authorized(self.local, "SASL EXTERNAL")
            return
        self._authenticate(features)

    def _authenticate(self, features: Element) -> None:
        mechs = st.child(features, "mechanisms", st.NS_SASL)
        names = {st.text(m).strip() for m in st.children(mechs, "mechanism", st.NS_SASL)
                 } if mechs is not None else set()
        if self.tls_active and self.use_external and "EXTERNAL" in names:
            authzid = base64.b64encode(self.local.encode()).decode()
            self.write(f"<auth xmlns='{st.NS_SASL}' mechanism='EXTERNAL'>{authzid}</auth>")
            return
        self.peer_dialback_errors = _dialback_errors(features)
        self._dialback()

    def _dialback(self) -> None:
        if not self.manager.config.dialback:
            self.fail("remote-server-not-found", "no common authentication method")
            return
        self._now_ready_for_dialback()
        self._send_result(self.local)

    # -- SASL EXTERNAL (XEP-0178) ------------------------------------------------------------------
    def _sasl(self, el: Element) -> None:
        if el.name == "success":
            self.sasl_done = True
            self.reset_parser()  # RFC 6120 §6.4.6
            self._send_header()
        elif el.name == "challenge":
            self.write(f"<response xmlns='{st.NS_SASL}'>"
                       f"{base64.b64encode(self.local.encode()).decode()}</response>")
        else:
            cond = next((c.name for c in st.element_children(el) if c.name != "text"), "?")
            self.fail("remote-server-not-found", f"SASL EXTERNAL refused ({cond})",
                      external_refused=True)

    # -- dialback (XEP-0220 §2.1) ------------------------------------------------------------------
    def _now_ready_for_dialback(self) -> None:
        self.dialback_ready = True
        backlog, self._backlog = self._backlog, []
        for frm, to, id_, key, d in backlog:
            self._send_verify(frm, to, id_, key, d)
        if self.on_dialback_ready is not None:
            self.on_dialback_ready(self)

    def _send_result(self, local: str) -> Deferred[str]:
        d = self._results.get(local)
        if d is None:
            d = self._results[local] = Deferred()
            key = db.dialback_key(self.manager.secret, self.remote, local, self.stream_id)
            self.write(db.result_xml(local, self.remote, key=key))
        return d

    def authorize(self, local: str) -> Deferred[str]:
        """Verify another sending domain on this stream (sender multiplexing, §2.5.1)."""
        if local in self.authorized:
            return defer.succeed("valid")
        if not self.writable or not self.dialback_ready:
            return defer.succeed("remote-server-timeout")
        return self._send_result(local)

    def _result_answer(self, el: Element) -> None:
        addrs = db.addresses(el)
        d = self._results.get(addrs[1]) if addrs is not None and addrs[0] == self.remote else None
        if addrs is None or d is None:
            # XEP-0220 §4.1: never act on an answer to a request we did not make here.
            self.log.warn("unsolicited dialback result from {peer} ignored", peer=self.peer)
            return
        local = addrs[1]
        del self._results[local]
        outcome = db.outcome(el)
        if outcome == "valid":
            self._authorized(local, "dialback")
        d.callback(outcome)
        if local == self.local and not self.ready.called and outcome != "valid":
            # §2.1.1: invalid -> the peer will close; errors are non-fatal but the stream is
            # of no use to us without the pair it was opened for.
            self.fail("remote-server-not-found" if outcome == "invalid"
                      else "remote-server-timeout", f"dialback refused ({outcome})")

    def peer_authenticated(self) -> bool:
        return self.sasl_done or bool(self.authorized)

    def _authorized(self, local: str, how: str) -> None:
        self.authorized.add(local)
        self.stanza_limit_changed()
        self.log.info("s2s {local} -> {remote} ({peer}) authenticated ({how}{tls})",
                      local=local, remote=self.remote, peer=self.peer, how=how,
                      tls=self.tls_note(self.target.direct_tls))
        if local == self.local and not self.ready.called:
            self.ready.callback(self)

    def request_verify(self, frm: str, to: str, id_: str, key: str) -> Deferred[str]:
        """Ask the peer, as Authoritative Server, about a key (step 2). Fires with 'valid',
        'invalid' or a dialback error condition."""
        d: Deferred[str] = Deferred()
        if not self.writable:
            d.callback("remote-server-timeout")
        elif self.dialback_ready:
            self._send_verify(frm, to, id_, key, d)
        else:
            self._backlog.append((frm, to, id_, key, d))
        return d

    def _send_verify(self, frm: str, to: str, id_: str, key: str, d: Deferred[str]) -> None:
        old = self._verifies.pop((frm, to, id_), None)
        if old is not None and not old.called:
            old.callback("remote-server-timeout")  # superseded by a newer request
        self._verifies[(frm, to, id_)] = d
        self.write(db.verify_xml(frm, to, id_, key=key))

    def _verify_answer(self, el: Element) -> None:
        addrs = db.addresses(el)
        key = (addrs[1], addrs[0], el.getAttribute("id", "")) if addrs else None
        d = self._verifies.pop(key, None) if key is not None else None
        if d is None:
            self.log.warn("unsolicited dialback verify from {peer} ignored", peer=self.peer)
            return
        d.callback(db.outcome(el))

    # -- output -----------------------------------------------------------------------------------
    def send_stanza(self, el: Element) -> None:
        self.server.stats.s2s_out[el.name] += 1
        self.send_element(el)


def _dialback_errors(features: Element) -> bool:
    feat = st.child(features, "dialback", db.NS_DB_FEATURE)
    return feat is not None and st.child(feat, "errors", db.NS_DB_FEATURE) is not None


class OutFactory(protocol.ClientFactory):
    noisy = False

    def __init__(self, stream: S2SOutStream) -> None:
        self.stream = stream

    def buildProtocol(self, addr: Any) -> S2SOutStream:  # noqa: N802
        return self.stream

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        self.stream.connection_failed(reason)
