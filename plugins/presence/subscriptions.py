"""RFC 6121 §3: presence subscription handling on both sides, driven by the Appendix A tables.

Outbound stanzas are stamped with the user's bare JID (§3.1.2) and routed; inbound ones
update the recipient's roster and are delivered, stored until answered (§3.1.3), or answered
automatically (existing subscription, pre-approval §3.4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.presence import states
from plugins.presence.states import State
from storage.roster import CONTACT, RosterItem
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from plugins.presence import Presence
    from plugins.roster import Roster
    from xmppd.sessions import Session

SUBSCRIPTION_TYPES = frozenset(("subscribe", "subscribed", "unsubscribe", "unsubscribed"))


def _copy_for(stanza: Element, kind: str, frm: str, to: str) -> Element:
    """The subscription stanza as routed: type, bare 'from', bare 'to', same payload."""
    out = st.shallow_copy(stanza)
    out.attributes.update({"type": kind, "from": frm, "to": to})
    return out


class Subscriptions:
    def __init__(self, plugin: Presence, roster: Roster) -> None:
        self.p = plugin
        self.host = plugin.host
        self.roster = roster

    async def apply(self, user: JID, contact: str, old: State, new: State,
                    approved: bool | None = None, create: bool = True) -> None:
        """Persist a state change: roster item (pushed) and the pending-in record."""
        roster = await self.roster.load(user)
        item = roster.items.get(contact)
        item_changed = (old.subscription, old.pending_out) != (new.subscription, new.pending_out)
        if item is None and not create and not new.pending_out and new.subscription == "none":
            item_changed = False
        if item_changed or (approved is not None and item is not None
                            and item.approved != approved):
            if item is None and len(roster.items) >= self.roster.options.max_items:
                raise StanzaError("not-allowed", text="roster is full")
            base = item or RosterItem(contact)
            await self.roster.put(user, base.with_(
                subscription=new.subscription, ask=new.pending_out,
                approved=base.approved if approved is None else approved))
        if old.pending_in and not new.pending_in:
            await self.roster.set_pending(user, contact, None)

    # -- stanzas the local user sends (§A.2) ------------------------------------------------------
    async def outbound(self, ev: H.StanzaEvent) -> None:
        kind = ev.stanza.getAttribute("type", "")
        user, contact = ev.from_.bare, ev.to.bare
        cid = str(contact)
        if contact == user:
            raise StanzaError("bad-request", text="a subscription to yourself is meaningless")
        if len(cid) > CONTACT:
            raise StanzaError("not-acceptable", text=f"JID longer than {CONTACT} characters")
        if kind == "subscribe" and not self.p.allow_subscribe(user.bare_str):
            raise StanzaError("policy-violation", "wait", text="too many subscription requests")
        roster = await self.roster.load(user)
        old = roster.state(cid)
        new = states.outbound(kind, old)
        item = roster.items.get(cid)
        routed = _copy_for(ev.stanza, kind, user.bare_str, cid)
        if kind == "subscribe":
            if new is not None:
                await self.apply(user, cid, old, new)
            await self.host.send(routed)  # §3.1.2: always routed
        elif kind == "unsubscribe":
            if new is not None:
                await self.apply(user, cid, old, new)
            await self.host.send(routed)  # §3.3.2
        elif kind == "subscribed":
            if new is not None:
                await self.apply(user, cid, old, new, approved=False)
                await self.host.send(routed)  # §3.1.5
                await self.p.send_current_presence(user, contact)
            elif old.subscription in ("none", "to") and not (item and item.approved):
                # §3.4: approval before any request = pre-approval; nothing is routed.
                await self.apply(user, cid, old, old, approved=True)
                if item is None:
                    await self.roster.put(user, RosterItem(cid, approved=True))
        elif kind == "unsubscribed":
            if new is not None:
                await self.apply(user, cid, old, new, approved=False)
                await self.host.send(routed)  # §3.2.2
                await self.p.send_unavailable_from_all(user, contact)
            elif item is not None and item.approved:
                await self.apply(user, cid, old, old, approved=False)  # cancel pre-approval

    # -- stanzas a local user receives (§A.3) -------------------------------------------------
    async def inbound(self, ev: H.StanzaEvent) -> None:
        kind = ev.stanza.getAttribute("type", "")
        user, contact = ev.to.bare, ev.from_.bare
        cid = str(contact)
        if not await self.host.account_exists(user):
            if kind == "subscribe":  # RFC 6121 §8.5.1: no such user
                await self.host.send(st.make("presence", attrs={
                    "type": "unsubscribed", "from": user.bare_str, "to": cid}))
            return
        if len(cid) > CONTACT or contact == user:
            return
        roster = await self.roster.load(user)
        old = roster.state(cid)
        new = states.inbound(kind, old)
        item = roster.items.get(cid)
        stanza = _copy_for(ev.stanza, kind, cid, user.bare_str)
        if kind == "subscribe":
            if old.subscription in ("from", "both"):
                # §3.1.3: already subscribed -> answer on the user's behalf.
                await self.host.send(st.make("presence", attrs={
                    "type": "subscribed", "from": user.bare_str, "to": cid}))
                return
            if item is not None and item.approved:
                approved = states.outbound("subscribed", states.inbound("subscribe", old) or old)
                await self.apply(user, cid, old, approved or old, approved=False)
                await self.host.send(st.make("presence", attrs={
                    "type": "subscribed", "from": user.bare_str, "to": cid}))
                await self.p.send_current_presence(user, contact)
                return
            if new is None:
                return  # a duplicate of a request already pending
            await self.roster.set_pending(user, cid, stanza)  # stored until answered
            await self.apply(user, cid, old, new, create=False)
            self.p.deliver_to_available(user, stanza)
        elif new is not None:
            await self.apply(user, cid, old, new, create=False)
            self.p.deliver_to_available(user, stanza)
            if kind == "unsubscribe":
                await self.p.send_unavailable_from_all(user, contact)  # §3.3.3

    async def redeliver_pending(self, user: JID, session: Session) -> None:
        """§3.1.3: pending requests go to each newly available resource until answered."""
        roster = await self.roster.load(user)
        for xml in list(roster.pending.values()):
            session.send(parse_fragment(xml))
