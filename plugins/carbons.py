"""XEP-0280 Message Carbons: every resource that enabled carbons sees the whole conversation.

Received copies go to the user's other carbons-enabled resources that did not get the
message itself; sent copies go to the sender's other carbons-enabled resources. Copies are
wrapped per XEP-0297 and sent directly, so they are never archived or routed twice.
"""

from __future__ import annotations

from twisted.words.xish.domish import Element

from plugins.hints import has_body, hint, message_type
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.sessions import Session

NS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
ENABLED = "carbons"


class Carbons(Plugin):
    name = "carbons"
    specs = ("XEP-0280 1.0.1", "XEP-0297 1.0")
    features = (NS,)
    account_features = ()

    def setup(self) -> None:
        self.host.share_session_flag(ENABLED)  # other cluster nodes send carbons too
        self.host.iq("set", NS, "enable", self.enable, scope="account")
        self.host.iq("set", NS, "disable", self.disable, scope="account")
        self.host.on(H.MESSAGE_DELIVERED, self.received, priority=-10)
        self.host.on(H.STANZA_OUTBOUND, self.sent, priority=-60)
        self.host.on(H.SASL2_FEATURES, self.sasl2_features)
        self.host.on(H.BIND2_REQUEST, self.bind2)

    def sasl2_features(self, ev: H.Sasl2FeaturesEvent) -> None:
        st.add(ev.bind_inline, "feature", ev.bind_inline.uri, attrs={"var": NS})

    def bind2(self, ev: H.InlineEvent) -> bool:
        """XEP-0386 §3.2: <enable xmlns='urn:xmpp:carbons:2'/> in a Bind 2 request enables
        carbons for the new session (it cannot fail: nothing to answer)."""
        if st.child(ev.request, "enable", NS) is not None:
            ev.session.data[ENABLED] = True
        return False

    def _session(self, req: IqRequest) -> Session:
        if not req.is_own_account or req.origin is None or req.origin.kind != "c2s":
            raise StanzaError("not-allowed", text="carbons are enabled by a client session")
        return req.origin

    def enable(self, req: IqRequest) -> None:
        self._session(req).data[ENABLED] = True  # §3.1

    def disable(self, req: IqRequest) -> None:
        self._session(req).data.pop(ENABLED, None)  # §3.2

    @staticmethod
    def eligible(stanza: Element, to_full: bool) -> bool:
        """§6: one-to-one chat messages, not marked private, not MUC private messages."""
        mtype = message_type(stanza)
        if mtype == "chat" or (mtype == "normal" and has_body(stanza)):
            pass
        else:
            return False
        if st.child(stanza, "private", NS) is not None or hint(stanza, "no-copy"):
            return False
        return not (to_full and st.child(stanza, "x", NS_MUC_USER) is not None)

    def received(self, ev: H.StanzaEvent) -> None:
        if not self.eligible(ev.stanza, bool(ev.to.resource)):
            return
        got = ev.extra.get("sessions", [])
        self._copy(ev.to.bare, ev.stanza, "received", exclude=got)

    def sent(self, ev: H.StanzaEvent) -> bool:
        s = ev.stanza
        if s.name == "message" and ev.origin is not None and self.eligible(
                s, bool(ev.to.resource)):
            self._copy(ev.from_.bare, s, "sent", exclude=[ev.origin])
        return False

    def _copy(self, user: JID, stanza: Element, kind: str, exclude: list[Session]) -> None:
        targets = [s for s in self.host.sessions_of(user)
                   if s.data.get(ENABLED) and not any(s is x for x in exclude)]
        if not targets:
            return
        for s in targets:
            wrapper = st.make("message", attrs={
                "from": user.bare_str, "to": str(s.jid), "type": message_type(stanza)})
            fwd = st.add(st.add(wrapper, kind, NS), "forwarded", NS_FORWARD)
            st.append(fwd, st.copy(stanza))
            s.send(wrapper)
