"""RFC 6121 §2 roster management: get, set, remove, pushes, versioning (§2.6), limits.

Rosters of users with sessions are cached in memory (presence consults them for every
broadcast); every change is committed first, then the cache is updated and pushed to the
user's interested resources (§2.1.6).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.presence.states import State, normalise
from storage.roster import CONTACT, RosterItem
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID, JIDError
from xmppd.plugin import Plugin
from xmppd.usercache import UserCache

if TYPE_CHECKING:
    pass

NS = "jabber:iq:roster"
NS_VER = "urn:xmpp:features:rosterver"


@dataclass(frozen=True)
class Options:
    max_items: int = 1000  # roster size limit (RFC 6121 §2.3.3: not-allowed beyond it)
    max_name_length: int = 1023  # item name, characters
    max_group_length: int = 1023  # group name, characters
    max_groups: int = 64  # groups per item


@dataclass
class CachedRoster:
    version: int
    items: dict[str, RosterItem]
    pending: dict[str, str] = field(default_factory=dict)  # contact -> request stanza XML

    def state(self, contact: str) -> State:
        item = self.items.get(contact)
        pin = contact in self.pending
        if item is None:
            return normalise("none", False, pin)
        return normalise(item.subscription, item.ask, pin)


class Roster(Plugin):
    name = "roster"
    specs = ("RFC 6121 (§2 roster, §2.6 versioning)",)
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        self.cache: UserCache[CachedRoster] = self.host.user_cache("roster")
        self.host.share_session_flag("roster_requested")
        self._ids = itertools.count(1)
        self.host.iq("get", NS, "query", self.get, scope="account")
        self.host.iq("set", NS, "query", self.set, scope="account")
        self.host.on(H.STREAM_FEATURES, self.features_)
        self.host.on(H.SESSION_CLOSED, self.evict)
        self.host.on(H.ACCOUNT_DELETED, self.forget)
        self.host.on(H.STANZA_INBOUND, self.foreign_push, priority=100)

    def features_(self, ev: H.FeaturesEvent) -> None:
        if ev.stage == "post-auth":
            st.add(ev.features, "ver", NS_VER)  # RFC 6121 §2.6.1

    def evict(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None and not self.host.sessions_of(jid.bare):
            self.cache.pop(jid.bare_str, None)

    def forget(self, ev: H.AccountEvent) -> None:
        self.cache.pop(ev.jid.bare_str, None)

    def foreign_push(self, ev: H.StanzaEvent) -> None:
        """RFC 6121 §2.1.6: a roster push comes only from the user's own account; a push
        addressed to a resource by anyone else is refused, never delivered."""
        s = ev.stanza
        if (s.name == "iq" and ev.to.resource and s.getAttribute("type") == "set"
                and st.child(s, "query", NS) is not None and ev.from_ != ev.to.bare
                and ev.from_ != JID("", ev.to.domain)):
            raise StanzaError("service-unavailable")

    # -- cache -----------------------------------------------------------------------------------
    async def load(self, bare: JID) -> CachedRoster:
        key = bare.bare_str
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        version, items = await self.host.storage.roster.get(bare.domain, bare.local)
        pending = await self.host.storage.roster.pending(bare.domain, bare.local)
        cached = self.cache.get(key)  # another load may have finished meanwhile
        if cached is None:
            cached = CachedRoster(version, {i.contact: i for i in items}, pending)
            if self.host.sessions_of(bare):
                self.cache[key] = cached
        return cached

    async def put(self, bare: JID, item: RosterItem, push: bool = True) -> None:
        """Store an item (commit first), update the cache, push it (RFC 6121 §2.1.6)."""
        version = await self.host.storage.roster.put(bare.domain, bare.local, item)
        roster = await self.load(bare)
        roster.items[item.contact] = item
        roster.version = version
        self.cache.changed(bare.bare_str)
        if push:
            self.push(bare, item, version)

    async def delete(self, bare: JID, contact: str) -> None:
        version = await self.host.storage.roster.remove(bare.domain, bare.local, contact)
        roster = await self.load(bare)
        old = roster.items.pop(contact, None)
        roster.version = version
        self.cache.changed(bare.bare_str)
        if old is not None:
            self.push(bare, RosterItem(contact, "remove"), version)

    async def set_pending(self, bare: JID, contact: str, stanza: Element | None) -> bool:
        """Record (or clear, with None) a pending inbound request; True if newly added."""
        roster = await self.load(bare)
        if stanza is None:
            if contact in roster.pending:
                await self.host.storage.roster.remove_pending(bare.domain, bare.local, contact)
                roster.pending.pop(contact, None)
                self.cache.changed(bare.bare_str)
            return False
        xml = st.serialize(stanza)
        added = await self.host.storage.roster.add_pending(bare.domain, bare.local, contact, xml)
        roster.pending[contact] = xml
        self.cache.changed(bare.bare_str)
        return added

    def push(self, bare: JID, item: RosterItem, version: int) -> None:
        for session in self.host.sessions_of(bare):
            if session.data.get("roster_requested"):
                iq = st.iq("set", f"push{next(self._ids)}", to=str(session.jid))
                q = st.add(iq, "query", NS, attrs={"ver": str(version)})
                st.append(q, item_element(item))
                session.send(iq)

    # -- IQ handlers -----------------------------------------------------------------------------
    async def get(self, req: IqRequest) -> Element | None:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        if req.origin is not None:
            req.origin.data["roster_requested"] = True  # an "interested resource"
        roster = await self.load(req.account)
        ver = req.payload.getAttribute("ver")
        if ver is not None and ver == str(roster.version):
            return None  # RFC 6121 §2.6.3: unchanged; an empty result
        q = st.make("query", NS)
        if ver is not None:
            q.attributes["ver"] = str(roster.version)
        for item in roster.items.values():
            st.append(q, item_element(item))
        return q

    async def set(self, req: IqRequest) -> None:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        items = list(st.children(req.payload, "item", NS))
        if len(items) != 1:
            raise StanzaError("bad-request", text="a roster set carries exactly one item")
        el = items[0]
        try:
            contact = JID.parse(el.getAttribute("jid", ""))
        except JIDError:
            raise StanzaError("jid-malformed") from None
        if contact.resource:
            raise StanzaError("bad-request", text="roster items are bare JIDs")
        cid = str(contact)
        if len(cid) > CONTACT:
            raise StanzaError("not-acceptable", text=f"JID longer than {CONTACT} characters")
        sub = el.getAttribute("subscription")
        if sub == "remove":
            await self.remove_item(req.account, cid)
            return None
        if sub is not None and sub not in ("none", "to", "from", "both"):
            # RFC 6121 §2.1.2.5 says to ignore the defined values other than "remove" (a
            # client cannot set a state); a value outside the schema is a bad request.
            raise StanzaError("bad-request", text="invalid subscription value")
        name = el.getAttribute("name")
        if name is not None and len(name) > self.options.max_name_length:
            raise StanzaError("not-acceptable", text="item name too long")
        groups = [st.text(g) for g in st.children(el, "group", NS)]
        if len(groups) != len(set(groups)):
            raise StanzaError("bad-request", text="duplicate group")  # RFC 6121 §2.3.3
        if any(not g for g in groups) or any(len(g) > self.options.max_group_length
                                             for g in groups):
            raise StanzaError("not-acceptable", text="empty or over-long group name")
        if len(groups) > self.options.max_groups:
            raise StanzaError("not-acceptable", text="too many groups")
        roster = await self.load(req.account)
        old = roster.items.get(cid)
        if old is None and len(roster.items) >= self.options.max_items:
            raise StanzaError("not-allowed", text="roster is full")
        base = old or RosterItem(cid)
        await self.put(req.account, base.with_(name=name or None, groups=tuple(groups)))
        return None

    async def remove_item(self, user: JID, contact: str) -> None:
        """RFC 6121 §2.5.2: cancel both directions of the subscription, then delete; a contact
        that loses its subscription also gets unavailable from each of our resources (§3.2.2)."""
        roster = await self.load(user)
        item = roster.items.get(contact)
        if item is None:
            raise StanzaError("item-not-found")
        state = roster.state(contact)
        frm = user.bare_str
        if state.subscription in ("to", "both") or state.pending_out:
            await self.host.send(st.make("presence", attrs={
                "type": "unsubscribe", "from": frm, "to": contact}))
        if state.subscription in ("from", "both") or state.pending_in:
            await self.host.send(st.make("presence", attrs={
                "type": "unsubscribed", "from": frm, "to": contact}))
            from plugins.presence import Presence  # it imports this module

            presence = self.host.optional(Presence)
            if state.subscription in ("from", "both") and presence is not None:
                await presence.send_unavailable_from_all(user.bare, JID.parse(contact))
        await self.set_pending(user, contact, None)
        await self.delete(user, contact)


def item_element(item: RosterItem) -> Element:
    el = st.make("item", NS, {"jid": item.contact, "subscription": item.subscription})
    if item.name:
        el.attributes["name"] = item.name
    if item.ask and item.subscription != "remove":
        el.attributes["ask"] = "subscribe"
    if item.approved and item.subscription != "remove":
        el.attributes["approved"] = "true"
    for g in item.groups:
        st.add(el, "group", NS, g)
    return el
