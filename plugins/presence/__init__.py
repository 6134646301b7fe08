"""RFC 6121 §4 presence: broadcast to subscribers and own resources, probes, directed presence,
unavailable on every kind of session end; and §3 subscriptions (see subscriptions.py).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from twisted.words.xish.domish import Element

from plugins.presence.subscriptions import SUBSCRIPTION_TYPES, Subscriptions
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.ratelimit import TokenBucket
from xmppd.sessions import Session
from xmppd.xmlparser import parse_fragment

NS_PREAPPROVAL = "urn:xmpp:features:pre-approval"
LAST_STORE = "presence"


@dataclass(frozen=True)
class Options:
    subscribe_burst: int = 100  # outbound subscription requests a user may send at once
    subscribe_per_minute: float = 30.0  # and the sustained rate after the burst


class Presence(Plugin):
    name = "presence"
    specs = ("RFC 6121 (§3 subscriptions, §3.4 pre-approval, §4 presence)",)
    depends = ("roster",)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.host.share_session_flag("announced")
        from plugins.roster import Roster  # it imports plugins.presence.states

        self.roster = self.host.require(Roster)
        self.subs = Subscriptions(self, self.roster)
        self._buckets: dict[str, TokenBucket] = {}
        self.host.on(H.PRESENCE_BROADCAST, self.broadcast)
        self.host.on(H.PRESENCE_INBOUND, self.inbound)
        self.host.on(H.STANZA_OUTBOUND, self.outbound, priority=50)
        self.host.on(H.SESSION_CLOSED, self.session_closed)
        self.host.on(H.STREAM_FEATURES, self.features_)
        self.host.on(H.ACCOUNT_DELETED, self.account_deleted)
        self._deleted: set[str] = set()  # accounts deleted while sessions were winding down

    def features_(self, ev: H.FeaturesEvent) -> None:
        if ev.stage == "post-auth":
            st.add(ev.features, "sub", NS_PREAPPROVAL)  # RFC 6121 §3.4.1

    def allow_subscribe(self, user: str) -> bool:
        """Token bucket per user for outbound subscription requests."""
        now = self.host.clock.seconds()
        bucket = self._buckets.get(user)
        if bucket is None:
            bucket = self._buckets[user] = TokenBucket(
                self.options.subscribe_per_minute, self.options.subscribe_burst, now, per=60.0)
        return bucket.take(now)

    # -- outbound --------------------------------------------------------------------------------
    async def outbound(self, ev: H.StanzaEvent) -> bool:
        s = ev.stanza
        if s.name != "presence" or ev.extra.get("implicit_to"):
            return False
        ptype = s.getAttribute("type")
        if ptype in SUBSCRIPTION_TYPES:
            await self.subs.outbound(ev)
            return True
        if ptype in (None, "unavailable") and ev.origin is not None:
            self.track_directed(ev.origin, ev.to, available=ptype is None)
        return False

    def track_directed(self, session: Session, to: JID, available: bool) -> None:
        """RFC 6121 §4.6: remember who got directed presence, to tell them when we leave."""
        directed: set[str] = session.data.setdefault("directed", set())
        if available:
            directed.add(str(to))
        else:
            directed.discard(str(to))

    # -- broadcast (§4.2, §4.4, §4.5) -----------------------------------------------------------
    async def broadcast(self, ev: H.StanzaEvent) -> None:
        session = ev.origin
        if session is None or session.jid is None:
            return
        if ev.stanza.getAttribute("type") == "unavailable":
            await self.go_unavailable(session, ev.stanza)
            return
        user = session.jid.bare
        initial = not session.data.get("announced")
        session.data["announced"] = True
        roster = await self.roster.load(user)
        for contact, item in roster.items.items():
            if item.subscription in ("from", "both"):
                await self._send_copy(ev.stanza, session.jid, contact)
        for other in self.host.available_sessions(user):
            other.send(_addressed(ev.stanza, str(session.jid), str(other.jid)))
        if not initial:
            return
        for contact, item in roster.items.items():
            if item.subscription in ("to", "both"):  # §4.3.1 probes from the bare JID
                await self.send_for_user(st.make("presence", attrs={
                    "type": "probe", "from": user.bare_str, "to": contact}))
        for other in self.host.available_sessions(user):
            if other is not session and other.presence is not None:
                session.send(_addressed(other.presence, str(other.jid), str(session.jid)))
        await self.subs.redeliver_pending(user, session)

    async def go_unavailable(self, session: Session, stanza: Element) -> None:
        """§4.5.2: unavailable to subscribers, own resources and directed-presence targets."""
        jid = session.jid
        if jid is None or not session.data.pop("announced", False):
            return
        user = jid.bare
        roster = await self.roster.load(user)
        sent: set[str] = set()
        for contact, item in roster.items.items():
            if item.subscription in ("from", "both"):
                await self._send_copy(stanza, jid, contact)
                sent.add(contact)
        for target in session.data.pop("directed", set()):
            if target not in sent:
                await self._send_copy(stanza, jid, target)
        for other in self.host.available_sessions(user):
            if other is not session:
                other.send(_addressed(stanza, str(jid), str(other.jid)))
        if not any(s is not session for s in self.host.available_sessions(user)):
            await self._remember_last(user, stanza)

    async def session_closed(self, ev: H.SessionEvent) -> None:
        """A session ended for any reason (close, drop, kick, shutdown): say so."""
        session = ev.session
        if session.data.get("announced"):
            p = st.make("presence", attrs={"type": "unavailable"})
            if ev.reason and ev.reason != "closed":
                st.add(p, "status", text_=ev.reason)
            await self.go_unavailable(session, p)

    async def _send_copy(self, stanza: Element, frm: JID, to: str) -> None:
        await self.send_for_user(_addressed(stanza, str(frm), to))

    async def send_for_user(self, stanza: Element) -> None:
        """Send presence on a local user's behalf unless a PRESENCE_ROUTE handler vetoes it."""
        if self.host.has_handlers(H.PRESENCE_ROUTE):
            ev = H.StanzaEvent(stanza, JID.parse(stanza.attributes["from"]),
                               JID.parse(stanza.attributes["to"]), None)
            if self.host.fire_sync(H.PRESENCE_ROUTE, ev):
                return
        await self.host.send(stanza)

    def account_deleted(self, ev: H.AccountEvent) -> None:
        self._deleted.add(ev.jid.bare_str)
        if len(self._deleted) > 10000:
            self._deleted.clear()

    async def _remember_last(self, user: JID, stanza: Element) -> None:
        """The last unavailable presence, stamped (answers probes; XEP-0012 last activity)."""
        if user.bare_str in self._deleted:
            return  # the account is gone; its sessions' ending must not recreate data
        last = _addressed(stanza, user.bare_str, None)
        now = datetime.datetime.fromtimestamp(self.host.clock.seconds(), datetime.UTC)
        last.children = [c for c in last.children if not (
            isinstance(c, Element) and c.name == "delay")]
        st.stamp_delay(last, self.host.domain, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        await self.host.storage.kv.set(user.domain, user.local, LAST_STORE, "last",
                                       st.serialize(last))

    async def last_unavailable(self, user: JID) -> Element | None:
        xml = await self.host.storage.kv.get(user.domain, user.local, LAST_STORE, "last")
        return None if xml is None else parse_fragment(xml)

    # -- inbound ----------------------------------------------------------------------------------
    async def inbound(self, ev: H.StanzaEvent) -> bool:
        ptype = ev.stanza.getAttribute("type")
        if ptype in SUBSCRIPTION_TYPES:
            await self.subs.inbound(ev)
            return True
        if ptype == "probe":
            await self.probe(ev)
            return True
        return False  # available / unavailable / error: delivered per RFC 6121 §8.5

    async def probe(self, ev: H.StanzaEvent) -> None:
        """§4.3.2: answer with current presence, or the last unavailable one, if authorized."""
        user, prober = ev.to.bare, ev.from_
        if not await self.host.account_exists(user):
            await self.host.send(st.make("presence", attrs={
                "type": "unsubscribed", "from": user.bare_str, "to": prober.bare_str}))
            return
        if prober.bare != user:
            roster = await self.roster.load(user)
            authorized = roster.state(prober.bare_str).subscription in ("from", "both")
            if not authorized and not self._directed_to(user, prober):
                await self.host.send(st.make("presence", attrs={
                    "type": "unsubscribed", "from": user.bare_str, "to": prober.bare_str}))
                return
        sessions = [s for s in self.host.available_sessions(user)
                    if not ev.to.resource or s.jid == ev.to]
        if sessions:
            for s in sessions:
                if s.presence is not None:
                    await self.send_for_user(_addressed(s.presence, str(s.jid), str(prober)))
            return
        last = await self.last_unavailable(user)
        reply = last if last is not None else st.make("presence", attrs={"type": "unavailable"})
        reply.attributes.update({"type": "unavailable", "from": user.bare_str,
                                 "to": str(prober)})
        await self.send_for_user(reply)

    def _directed_to(self, user: JID, other: JID) -> bool:
        targets = {str(other), other.bare_str}
        return any(targets & s.data.get("directed", set()) for s in self.host.sessions_of(user))

    # -- used by subscriptions ------------------------------------------------------------------
    def deliver_to_available(self, user: JID, stanza: Element) -> None:
        for s in self.host.available_sessions(user):
            s.send(stanza)

    async def send_current_presence(self, user: JID, contact: JID) -> None:
        """§3.1.5: after approving, the new subscriber gets our current presence."""
        for s in self.host.available_sessions(user):
            if s.presence is not None:
                await self.send_for_user(_addressed(s.presence, str(s.jid), str(contact)))

    async def send_unavailable_from_all(self, user: JID, contact: JID) -> None:
        """§3.2.2/§3.3.3: a contact that may no longer see us gets unavailable from each."""
        for s in self.host.available_sessions(user):
            await self.send_for_user(st.make("presence", attrs={
                "type": "unavailable", "from": str(s.jid), "to": str(contact)}))


def _addressed(stanza: Element, frm: str, to: str | None) -> Element:
    out = st.shallow_copy(stanza)
    out.attributes["from"] = frm
    if to is None:
        out.attributes.pop("to", None)
    else:
        out.attributes["to"] = to
    return out
