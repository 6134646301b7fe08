"""SASL2 (XEP-0388) with Bind 2 (XEP-0386) and FAST (XEP-0484): one exchange authenticates,
resumes or binds, enables session features and hands out a token, without a stream restart.

Order on success (XEP-0386 §3.2): FAST bookkeeping; SASL2 inline requests (a <resume/> is
processed first, and a resumed session is not bound again); the Bind 2 request, whose
feature requests are enabled before the resource is bound so that nothing can be routed to
the session before <success/> is written; <success/>; then the new stream features.
"""

from __future__ import annotations

import base64
import secrets
from typing import TYPE_CHECKING, Final

from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.authflow import NS_SASL2, b64_element, sasl2_failure
from xmppd.errors import SASLFailure, StanzaError, StreamError
from xmppd.fast import NS_FAST, FastRequest, HashedToken, client_key, fast_mechanisms, new_token
from xmppd.jid import JIDError, prepare_resource
from xmppd.sasl import Offer, SaslStep
from xmppd.timeutil import format_datetime

if TYPE_CHECKING:
    from xmppd.authflow import Authenticator
    from xmppd.c2s import C2SSession

NS_BIND2: Final = "urn:xmpp:bind:0"
MAX_TAG: Final = 64


def add_sasl2_features(session: C2SSession, features: Element, offer: Offer
                       ) -> tuple[str, ...]:
    """XEP-0388 §2.1 <authentication/> (the same mechanisms as RFC 6120 SASL) with its
    <inline/>: Bind 2, FAST's HT mechanisms, and what plugins can do inline. Returns the
    FAST mechanisms offered."""
    auth = st.add(features, "authentication", NS_SASL2)
    for m in offer.mechanisms:
        st.add(auth, "mechanism", NS_SASL2, m)
    inline = st.add(auth, "inline", NS_SASL2)
    bind = st.add(inline, "bind", NS_BIND2)
    bind_inline = st.add(bind, "inline", NS_BIND2)
    fast: tuple[str, ...] = ()
    if session.server.config.auth.fast:
        fast = fast_mechanisms(offer.bindings, session.tls_active)
    if fast:
        f = st.add(inline, "fast", NS_FAST)
        for m in fast:
            st.add(f, "mechanism", NS_FAST, m)
    host = session.server.hosts[session.host]
    host.fire_sync(H.SASL2_FEATURES, H.Sasl2FeaturesEvent(session, inline, bind_inline))
    return fast


class Sasl2Exchange:
    """One <authenticate/> and what follows it, until success or failure."""

    def __init__(self, auth: Authenticator, request: Element) -> None:
        self.auth = auth
        self.session = auth.session
        self.request = request
        self.active = True
        self.client = ""  # client_key of the <user-agent/> id, when given

    async def begin(self) -> None:
        req = self.request
        try:
            if req.getAttribute("upgrade"):
                # §2.3: an upgrade not announced (we announce none) fails the authentication
                raise SASLFailure("invalid-mechanism", "no upgrade task is offered")
            ua = st.child(req, "user-agent", NS_SASL2)
            ua_id = (ua.getAttribute("id") or "") if ua is not None else ""
            if ua_id:
                self.client = client_key(ua_id)
            fast = self._fast_request()
            mechanism = self.auth.start(req.getAttribute("mechanism", ""), fast)
            step = await mechanism.start(b64_element(st.child(req, "initial-response",
                                                              NS_SASL2)))
        except SASLFailure as fail:
            await self._fail(fail)
            return
        await self._step(step)

    def _fast_request(self) -> FastRequest | None:
        el = st.child(self.request, "fast", NS_FAST)
        if el is None:
            return None
        if not self.client:
            # XEP-0484 §4.1: FAST needs the client's <user-agent id=''/>
            raise SASLFailure("malformed-request", "FAST needs a user-agent id")
        count: int | None = None
        if el.getAttribute("count") is not None:
            try:
                count = int(el.getAttribute("count", ""))
            except ValueError:
                raise SASLFailure("malformed-request", "count is not a number") from None
        return FastRequest(self.client, count,
                           el.getAttribute("invalidate") in ("1", "true"))

    async def element(self, el: Element) -> None:
        mechanism = self.auth.mechanism
        try:
            if el.name == "response" and mechanism is not None:
                step = await mechanism.respond(b64_element(el) or b"")
            elif el.name == "abort":
                raise SASLFailure("aborted")
            else:
                raise SASLFailure("malformed-request")
        except SASLFailure as fail:
            await self._fail(fail)
            return
        await self._step(step)

    async def _fail(self, fail: SASLFailure) -> None:
        self.active = False
        if await self.auth.failed(fail, write=False):
            self.session.write(sasl2_failure(fail))

    async def _step(self, step: SaslStep) -> None:
        s = self.session
        if s.closed:
            return
        if step.challenge is not None:
            s.write(f"<challenge xmlns='{NS_SASL2}'>"
                    f"{base64.b64encode(step.challenge).decode()}</challenge>")
            return
        if step.disabled:
            await self._fail(self.auth.disabled())
            return
        await self._success(step)

    async def _success(self, step: SaslStep) -> None:
        s = self.session
        mechanism = self.auth.mechanism
        self.active = False
        self.auth.succeeded(step)
        s.stanza_limit_changed()  # no stream restart: the authenticated budget applies now
        success = st.make("success", NS_SASL2)
        if step.data:
            st.add(success, "additional-data", NS_SASL2, base64.b64encode(step.data).decode())
        ident = st.add(success, "authorization-identifier", NS_SASL2,
                       f"{step.username}@{s.host}")
        await self._fast(mechanism, success)
        host = s.server.hosts[s.host]
        event = H.InlineEvent(s, self.request, success)
        await host.fire(H.SASL2_SUCCESS, event)
        if s.closed:
            return
        bind = st.child(self.request, "bind", NS_BIND2)
        bound = False
        if bind is not None and s.jid is None:
            bound = await self._bind2(bind, success, event)
            if bound:
                ident.children = [s.jid_str]
        elif s.jid is not None:
            ident.children = [s.jid_str]  # resumed
        s.write(st.serialize(success))
        s.send_features()  # §2.6.1: the features follow <success/> at once
        for after in event.after:
            after()
        if bound:
            s.server.session_bound(s)

    async def _bind2(self, bind: Element, success: Element, event: H.InlineEvent) -> bool:
        """XEP-0386 §3.2: the client's tag and a random part as the resource; its feature
        requests enabled (BIND2_REQUEST) before the resource is bound."""
        s = self.session
        resource = secrets.token_hex(4)
        tag = (st.child_text(bind, "tag", NS_BIND2) or "").strip()[:MAX_TAG]
        if tag:
            try:
                resource = prepare_resource(f"{tag}/{resource}")
            except JIDError:
                pass  # an unusable tag: the random part alone
        bound = st.make("bound", NS_BIND2)
        s.data["bind2"] = True
        if self.client:
            s.data["client"] = self.client
        host = s.server.hosts[s.host]
        request = H.InlineEvent(s, bind, bound, event.after)
        await host.fire(H.BIND2_REQUEST, request)
        if s.closed:
            return False
        try:
            s.bind_resource(resource, announce=False)
        except StanzaError as err:
            s.log.info("Bind 2 for {user} failed: {cond}", user=s.username, cond=err.condition)
            return False
        st.append(success, bound)
        self._replace_same_client()
        return True

    def _replace_same_client(self) -> None:
        """XEP-0386 §3.2: a new session ends earlier ones of the same client."""
        s = self.session
        if not self.client or s.jid is None:
            return
        for other in list(s.server.sessions.resources(s.jid.bare)):
            if other is not s and other.data.get("client") == self.client:
                other.close(StreamError("conflict", "replaced by a new session of this client"))

    async def _fast(self, mechanism: object, success: Element) -> None:
        """Tokens (XEP-0484 §3.2-3.5): a used token retires older ones; 'invalidate' revokes
        it; a token close to expiry is rotated; <request-token/> gets a new one."""
        s = self.session
        store = s.server.storage.fast
        cfg = s.server.config.auth
        now = s.clock.seconds()
        issue_for: str | None = None
        if isinstance(mechanism, HashedToken) and mechanism.token is not None:
            used = mechanism.token
            fast = mechanism.fast
            if fast.invalidate:
                await store.revoke(s.host, s.username, self.client, used.token)
            else:
                count = fast.count if fast.count is not None else used.count
                if count != used.count or mechanism.older:
                    # Written only when something changes: most FAST logins use the one
                    # token the client has, without a count (no TLS 0-RTT offered).
                    await store.used(s.host, s.username, self.client, used, count)
                if used.expiry - now < cfg.fast_token_ttl / 2:
                    issue_for = used.mechanism
        request = st.child(self.request, "request-token", NS_FAST)
        if request is not None:
            wanted = request.getAttribute("mechanism", "")
            if self.client and wanted in self.auth.fast_offer:
                issue_for = wanted
        if issue_for is not None and self.client:
            token = new_token(issue_for, now, cfg.fast_token_ttl)
            await store.issue(s.host, s.username, self.client, token)
            st.add(success, "token", NS_FAST, attrs={
                "token": token.token, "expiry": format_datetime(token.expiry * 1_000_000)})
