"""Authentication of one client stream: the SASL profile of RFC 6120 §6 and SASL2
(XEP-0388) with Bind 2 (XEP-0386) and FAST (XEP-0484) inline.

Both profiles share the mechanisms (xmppd/sasl.py, and the HT mechanisms of xmppd/fast.py),
the offer a stream's features made (mechanisms, channel bindings: XEP-0440/0474) and the
brute-force guard (xmppd/authguard.py). They differ in framing: SASL2 wraps the exchange in
<authenticate/>, carries inline requests that take effect on success (binding, stream
management, tokens) and continues without a stream restart.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Final

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.authguard import Attempt, AuthGuard
from xmppd.channelbinding import NS_SASL_CB, ChannelBindings, bindings_of
from xmppd.errors import SASLFailure, StreamError
from xmppd.fast import NS_FAST, FastRequest, fast_mechanisms
from xmppd.sasl import Mechanism, Offer, SaslStep, b64_response, make_mechanism

if TYPE_CHECKING:
    from xmppd.c2s import C2SSession
    from xmppd.sasl2 import Sasl2Exchange

NS_SASL2: Final = "urn:xmpp:sasl:2"
_AUTH_RESULT: Final = {"temporary-auth-failure": "banned", "aborted": "aborted"}


class Authenticator:
    """The SASL state of one stream (recreated never: a stream authenticates once)."""

    def __init__(self, session: C2SSession) -> None:
        self.session = session
        self.offer: Offer | None = None
        self.fast_offer: tuple[str, ...] = ()
        self.mechanism: Mechanism | None = None
        self.failures = 0
        self.sasl2: Sasl2Exchange | None = None

    # -- features -------------------------------------------------------------------------------
    def add_features(self, features: Element) -> None:
        """The mechanisms for both profiles, and the channel binding types (XEP-0440)."""
        s = self.session
        self.offer = offer = self._make_offer()
        mechs = st.add(features, "mechanisms", st.NS_SASL)
        for m in offer.mechanisms:
            st.add(mechs, "mechanism", st.NS_SASL, m)
        if offer.cb_types:
            cb = st.add(features, "sasl-channel-binding", NS_SASL_CB)
            for t in offer.cb_types:
                st.add(cb, "channel-binding", NS_SASL_CB, attrs={"type": t})
        if s.server.config.auth.sasl2:
            from xmppd.sasl2 import add_sasl2_features

            self.fast_offer = add_sasl2_features(s, features, offer)

    def _make_offer(self) -> Offer:
        """The configured mechanisms (PLAIN only with TLS, RFC 6120 §13.9.4), each SCRAM one
        also as -PLUS when this process terminates the TLS and can bind to it (RFC 5802 §6,
        XEP-0440)."""
        s = self.session
        auth = s.server.config.auth
        mechs = list(auth.mechanisms)
        if not s.tls_active:
            mechs = [m for m in mechs if m != "PLAIN"]
        bindings = self.bindings() if auth.channel_binding else None
        if bindings is None:
            return Offer(tuple(mechs))
        plus = [m + "-PLUS" for m in mechs if m.startswith("SCRAM-")]
        return Offer(tuple(plus + mechs), bindings.types, bindings)

    def bindings(self) -> ChannelBindings | None:
        return bindings_of(self.session.transport) if self.session.tls_active else None

    # -- shared steps -----------------------------------------------------------------------------
    def start(self, name: str, fast: FastRequest | None = None) -> Mechanism:
        """A mechanism the features offered; the address is checked against bans first."""
        s = self.session
        offer = self.offer
        allowed = offer.mechanisms if offer is not None else ()
        if fast is not None:
            allowed = self.fast_offer
        if offer is None or name not in allowed:
            raise SASLFailure("invalid-mechanism")
        guard = s.server.auth_guard
        if guard.refused(s.peer_host) is not None:
            raise SASLFailure("temporary-auth-failure")  # banned address
        gate = _Gate(guard, s.peer_host, s.host)
        if fast is not None:
            from xmppd.fast import HashedToken

            self.mechanism = HashedToken(s.server.accounts, s.host, name, gate, offer, fast,
                                         s.server.clock)
        else:
            self.mechanism = make_mechanism(name, s.server.accounts, s.host, gate, offer)
        return self.mechanism

    def succeeded(self, step: SaslStep) -> None:
        """The credentials were right: the stream is authenticated from now on."""
        s = self.session
        mech = self.mechanism.name if self.mechanism else "?"
        if self.mechanism is not None and self.mechanism.attempt is not None:
            self.mechanism.attempt.succeeded()
        self.mechanism = None
        s.server.stats.auth["success"] += 1
        s.username = step.username
        s.authenticated_now()
        s.log.info("authenticated {user}@{host} from {peer} with {mech}", user=step.username,
                   host=s.host, peer=s.peer, mech=mech)

    async def failed(self, fail: SASLFailure, write: bool = True) -> bool:
        """Count and (after the throttle's delay) answer a failure; False if the stream is
        gone or was closed for too many failures (RFC 6120 §6.4.5)."""
        s = self.session
        attempt = self.mechanism.attempt if self.mechanism is not None else None
        self.mechanism = None
        self.failures += 1
        if attempt is not None:
            attempt.failed()  # a password or proof was checked and was wrong
        # temporary-auth-failure is only ever AuthGuard refusing (a ban, or the bar reached
        # by attempts in flight); <abort/> is the client's choice, not a wrong password.
        s.server.stats.auth[_AUTH_RESULT.get(fail.condition, "failure")] += 1
        # The account tried (when a password or proof was checked), for an admin reading
        # why a ban did or did not follow (xmppd/authguard.py).
        s.log.info("authentication failure ({cond}) for {account} on {host} from {peer}",
                   cond=fail.condition, account=attempt.account if attempt else "-",
                   host=s.host, peer=s.peer)
        delay = 0.0
        if fail.condition != "temporary-auth-failure":
            delay = s.server.auth_reply_delay(s.peer_host)
        if delay > 0:
            d: Deferred[None] = Deferred()
            s.clock.callLater(delay, d.callback, None)
            await d
        if s.closed:
            return False
        if write:
            s.write(st.serialize(fail.to_element()))
        if self.failures >= s.server.config.auth.max_failures_per_stream:
            s.stream_error(StreamError("not-authorized", "too many failed attempts"))
            return False
        return True

    def disabled(self) -> SASLFailure:
        """RFC 6120 §6.5.1 <account-disabled/>, told only once the credentials proved right
        (a wrong password fails as not-authorized and tells nothing about the account);
        neither a failed guess nor a login for the brute-force guard."""
        if self.mechanism is not None and self.mechanism.attempt is not None:
            self.mechanism.attempt.abandoned()
        return SASLFailure("account-disabled")

    def closed(self) -> None:
        if self.mechanism is not None and self.mechanism.attempt is not None:
            self.mechanism.attempt.abandoned()

    # -- RFC 6120 §6 ------------------------------------------------------------------------------
    async def sasl1(self, el: Element) -> None:
        s = self.session
        try:
            if el.name == "auth":
                mechanism = self.start(el.getAttribute("mechanism", ""))
                body = st.text(el).strip()
                step = await mechanism.start(None if body == "" else b64_response(body))
            elif el.name == "response":
                if self.mechanism is None:
                    raise SASLFailure("malformed-request", "no authentication in progress")
                step = await self.mechanism.respond(b64_response(st.text(el).strip()))
            elif el.name == "abort":
                self.mechanism = None
                raise SASLFailure("aborted")
            else:
                raise SASLFailure("malformed-request")
        except SASLFailure as fail:
            await self.failed(fail)
            return
        if s.closed:
            return
        if step.challenge is not None:
            data = base64.b64encode(step.challenge).decode() if step.challenge else ""
            s.write(f"<challenge xmlns='{st.NS_SASL}'>{data}</challenge>")
            return
        if step.disabled:
            await self.failed(self.disabled())
            return
        self.succeeded(step)
        extra = base64.b64encode(step.data).decode() if step.data else ""
        s.write(f"<success xmlns='{st.NS_SASL}'>{extra}</success>" if extra
                else f"<success xmlns='{st.NS_SASL}'/>")
        s.reset_parser()  # RFC 6120 §6.4.6: stream restart

    # -- XEP-0388 ---------------------------------------------------------------------------
    async def sasl2_element(self, el: Element) -> None:
        from xmppd.sasl2 import Sasl2Exchange

        if el.name == "authenticate":
            if self.sasl2 is not None and self.sasl2.active:
                raise StreamError("policy-violation", "an authentication is in progress")
            self.sasl2 = Sasl2Exchange(self, el)
            await self.sasl2.begin()
        elif self.sasl2 is not None and self.sasl2.active:
            await self.sasl2.element(el)
        else:
            await self.failed(SASLFailure("malformed-request", "no authentication in progress"),
                              write=False)
            self.session.write(sasl2_failure(SASLFailure("malformed-request")))


def sasl2_failure(fail: SASLFailure) -> str:
    """XEP-0388 §2.6.2: <failure/> in the SASL2 namespace around an RFC 6120 §6.5 condition."""
    el = st.make("failure", NS_SASL2)
    st.add(el, fail.condition, st.NS_SASL)
    if fail.text:
        st.add(el, "text", NS_SASL2, fail.text)
    return st.serialize(el)


def b64_element(el: Element | None) -> bytes | None:
    """SASL2 data: base64 in an element, no '=' special case; absent element -> None."""
    if el is None:
        return None
    try:
        return base64.b64decode("".join(st.text(el).split()), validate=True)
    except (binascii.Error, ValueError):
        raise SASLFailure("incorrect-encoding") from None


class _Gate:
    """AuthGuard bound to one connection's address and domain, for the SASL mechanisms."""

    __slots__ = ("address", "domain", "guard")

    def __init__(self, guard: AuthGuard, address: str, domain: str) -> None:
        self.guard, self.address, self.domain = guard, address, domain

    def refused(self, username: str) -> bool:
        return self.guard.refused(self.address, f"{username}@{self.domain}") is not None

    def begin(self, username: str) -> Attempt | None:
        return self.guard.begin(self.address, f"{username}@{self.domain}")


__all__ = ["NS_FAST", "NS_SASL2", "Authenticator", "fast_mechanisms"]
