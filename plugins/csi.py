"""XEP-0352 Client State Indication: while a client says it is inactive, presence updates are
held back (only the newest per contact is kept) and flushed, in order, before anything
important or when the client becomes active again. Messages are never held."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.xish.domish import Element

from plugins.hints import chat_state_only
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.plugin import Plugin
from xmppd.sessions import Session

NS = "urn:xmpp:csi:0"


@dataclass(frozen=True)
class Options:
    max_held: int = 500  # held stanzas per session before a flush is forced


class ClientState(Plugin):
    name = "csi"
    specs = ("XEP-0352 1.0.0",)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.host.on(H.STREAM_FEATURES, self.features_)
        self.host.on(H.C2S_NONZA, self.nonza)
        self.host.on(H.STANZA_DELIVER, self.deliver, priority=100)
        self.host.on(H.SASL2_FEATURES, self.sasl2_features)
        self.host.on(H.BIND2_REQUEST, self.bind2)

    def sasl2_features(self, ev: H.Sasl2FeaturesEvent) -> None:
        st.add(ev.bind_inline, "feature", ev.bind_inline.uri, attrs={"var": NS})

    def bind2(self, ev: H.InlineEvent) -> bool:
        """XEP-0386 §3.2: a Bind 2 request with <inactive/> starts the session inactive."""
        if st.child(ev.request, "inactive", NS) is not None:
            ev.session.data["csi_inactive"] = True
        return False

    def features_(self, ev: H.FeaturesEvent) -> None:
        if ev.stage == "post-auth":
            st.add(ev.features, "csi", NS)

    def nonza(self, ev: H.NonzaEvent) -> bool:
        el, session = ev.element, ev.session
        if el.uri != NS or el.name not in ("active", "inactive"):
            return False
        if el.name == "inactive":
            session.data["csi_inactive"] = True
        else:
            session.data.pop("csi_inactive", None)
            self.flush(session)
        return True

    @staticmethod
    def unimportant(stanza: Element) -> bool:
        """Presence updates and bare chat-state notifications may wait; nothing else."""
        if stanza.name == "presence":
            return stanza.getAttribute("type") in (None, "unavailable")
        return stanza.name == "message" and chat_state_only(stanza)

    def deliver(self, ev: H.DeliverEvent) -> bool:
        session = ev.session
        if not session.data.get("csi_inactive") or session.data.get("csi_flushing"):
            return False
        held: dict[object, Element] = session.data.setdefault("csi_held", {})
        if self.unimportant(ev.stanza):
            frm = ev.stanza.getAttribute("from")
            key = ("p", frm) if ev.stanza.name == "presence" else ("m", len(held))
            held.pop(key, None)  # a newer presence from the same JID replaces the older
            held[key] = ev.stanza
            if len(held) >= self.options.max_held:
                self.flush(session)
            return True
        self.flush(session)  # keep the order: what was held goes out first
        return False

    def flush(self, session: Session) -> None:
        held: dict[object, Element] = session.data.pop("csi_held", {})
        if not held:
            return
        session.data["csi_flushing"] = True
        try:
            for stanza in held.values():
                session.send(stanza)
        finally:
            session.data.pop("csi_flushing", None)
