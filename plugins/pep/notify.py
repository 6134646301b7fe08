"""Who gets event notifications, and the last item for resources that come online.

XEP-0163 §4: a PEP service notifies (1) the owner's own available resources and (2) the
resources of entities that share presence with the owner, are allowed by the node's access
model and advertise ``<node>+notify`` in their entity capabilities (§4.2, XEP-0060 §9.2).
Both are learnt from presence: the owner's own broadcasts (PRESENCE_BROADCAST) and presence
addressed to the owner's bare JID (PRESENCE_INBOUND): contacts' broadcasts and probe answers.
Presence to a full JID (MUC occupants, directed presence to one resource) is not presence
shared with the account and is not tracked.

Addressing (§4.3.1, §4.3.2): notifications come from the owner's bare JID and go to full JIDs
of resources with non-negative priority (the owner's own resources: all available ones). A
subscriber whose resources are unknown gets nothing: the "MAY choose not to send" of rule 2,
since without capabilities there is no expressed interest to honour. Entities the owner
blocked (XEP-0191, when the blocking plugin runs) get nothing (§4.3.3 rule 3). Contacts with
a presence subscription also get the publishing resource as an XEP-0033 replyto (rule 3).

Last published item (§4.3.3 rule 2, §4.3.4): when a tracked resource becomes available (or
newly advertises +notify for a node, or its priority turns non-negative) it gets the last
item of each such node whose send_last_published_item is on_sub_and_presence, with a
XEP-0203 delay stamp of its publication time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.blocking import Blocking, matches
from plugins.pep import ns
from plugins.pep.caps import Caps
from plugins.pep.service import Item, NodeRecord, stamp
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.jid import JID

if TYPE_CHECKING:
    from plugins.pep import Pep


@dataclass(slots=True)
class Seen:
    """One available resource the owner's service knows about."""

    jid: JID
    priority: int
    caps: Caps | None
    own: bool
    notify: frozenset[str] = field(default_factory=frozenset)  # NodeIDs with +notify

    @property
    def eligible(self) -> bool:
        return self.own or self.priority >= 0


def _priority(presence: Element) -> int:
    text = st.child_text(presence, "priority", st.NS_CLIENT)
    try:
        return int((text or "0").strip())
    except ValueError:
        return 0


class Notifier:
    def __init__(self, pep: Pep) -> None:
        self.pep = pep
        self.host = pep.host
        self.seen: dict[str, dict[str, Seen]] = {}  # owner -> full JID -> resource

    # -- presence tracking -------------------------------------------------------------------
    def own_presence(self, ev: H.StanzaEvent) -> None:
        """PRESENCE_BROADCAST: one of the owner's sessions announced itself (or left)."""
        session = ev.origin
        if session is None or session.jid is None:
            return
        if ev.stanza.getAttribute("type") == "unavailable":
            self.gone(session.jid.bare, session.jid)
        else:
            self.available(session.jid.bare, session.jid, ev.stanza, own=True)

    def contact_presence(self, ev: H.StanzaEvent) -> None:
        """PRESENCE_INBOUND: presence addressed to the owner's bare JID."""
        ptype = ev.stanza.getAttribute("type")
        if ptype not in (None, "unavailable") or ev.to.resource or not ev.from_.resource:
            return
        if ev.from_.bare == ev.to.bare:
            return
        if ptype == "unavailable":
            self.gone(ev.to.bare, ev.from_)
        else:
            self.available(ev.to.bare, ev.from_, ev.stanza, own=False)

    def session_closed(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None:
            self.gone(jid.bare, jid)

    def gone(self, owner: JID, jid: JID) -> None:
        entries = self.seen.get(owner.bare_str)
        if entries is not None:
            entries.pop(str(jid), None)
            if not entries:
                del self.seen[owner.bare_str]

    def forget(self, owner: JID) -> None:
        self.seen.pop(owner.bare_str, None)

    def available(self, owner: JID, jid: JID, presence: Element, own: bool) -> None:
        caps = Caps.parse(presence)
        entries = self.seen.setdefault(owner.bare_str, {})
        prev = entries.get(str(jid))
        if prev is not None and prev.caps == caps:  # a status change: only priority matters
            was = prev.eligible
            prev.priority = _priority(presence)
            if prev.eligible and not was and prev.notify:
                self.pep.spawn(self.send_last(owner, prev, prev.notify))
            return
        seen = Seen(jid, _priority(presence), caps, own,
                    prev.notify if prev is not None else frozenset())
        entries[str(jid)] = seen
        if caps is None:  # no capabilities (XEP-0115: assume none), so no expressed interests
            seen.notify = frozenset()
            return
        known = self.pep.resolver.known(jid, caps)
        if known is not None:
            self._interests(owner, seen, known)
        else:
            self.pep.spawn(self._resolve(owner, seen))

    async def _resolve(self, owner: JID, seen: Seen) -> None:
        assert seen.caps is not None
        interests = await self.pep.resolver.resolve(owner, seen.jid, seen.caps)
        if interests is not None and self.seen.get(owner.bare_str, {}).get(
                str(seen.jid)) is seen:  # still that resource with those caps
            self._interests(owner, seen, interests)

    def _interests(self, owner: JID, seen: Seen, interests: frozenset[str]) -> None:
        gained = interests - seen.notify
        seen.notify = interests
        if gained and seen.eligible:
            self.pep.spawn(self.send_last(owner, seen, gained))

    # -- recipients --------------------------------------------------------------------------
    async def _blocked(self, owner: JID) -> frozenset[str]:
        blocking = self.host.optional(Blocking)
        return await blocking.blocklist(owner) if blocking is not None else frozenset()

    async def recipients(self, owner: JID, record: NodeRecord) -> list[tuple[JID, bool]]:
        """(full JID, may see the publishing resource) of everyone to notify about ``record``."""
        entries = self.seen.get(owner.bare_str)
        if not entries:
            return []
        wanted = [s for s in list(entries.values())
                  if record.name in s.notify and s.eligible]
        if not wanted:
            return []
        blocked = await self._blocked(owner)
        roster = await self.pep.roster.load(owner)
        out: list[tuple[JID, bool]] = []
        for s in wanted:
            if s.own:
                out.append((s.jid, False))
            elif not matches(blocked, s.jid) and await self.pep.service.allowed(
                    owner, record.config, s.jid):
                shares = roster.state(s.jid.bare_str).subscription in ("from", "both")
                out.append((s.jid, shares))
        return out

    async def broadcast(self, owner: JID, record: NodeRecord, event: Element,
                        publisher: JID | None = None) -> None:
        await self.send(owner, record, event, await self.recipients(owner, record), publisher)

    async def send(self, owner: JID, record: NodeRecord, event: Element,
                   recipients: list[tuple[JID, bool]], publisher: JID | None = None,
                   delay: int | None = None) -> None:
        """One <message/> per recipient, from the owner's bare JID (§4.3.1 rule 1)."""
        for to, shares in recipients:
            msg = st.make("message", attrs={
                "from": owner.bare_str, "to": str(to), "id": uuid.uuid4().hex,
                "type": record.config.notification_type})
            msg.children.append(event)  # shared, never modified: no copy per recipient
            if shares and publisher is not None and publisher.resource:
                addresses = st.add(msg, "addresses", ns.ADDRESS)
                st.add(addresses, "address", ns.ADDRESS,
                       attrs={"type": "replyto", "jid": str(publisher)})
            if delay is not None:
                st.stamp_delay(msg, owner.bare_str, stamp(delay))
            await self.host.send(msg)

    # -- last published item -----------------------------------------------------------------
    async def send_last(self, owner: JID, seen: Seen, nodes: frozenset[str]) -> None:
        records = [r for r in (await self.pep.service.nodes(owner)).values()
                   if r.name in nodes and r.config.deliver_notifications
                   and r.config.send_last_published_item == "on_sub_and_presence"]
        if not seen.own:
            if matches(await self._blocked(owner), seen.jid):
                return
            records = [r for r in records
                       if await self.pep.service.allowed(owner, r.config, seen.jid)]
        if not records:
            return
        last = await self.pep.service.last_items(owner, records)
        for record in records:
            item: Item | None = last.get(record.name)
            if item is None:
                continue
            event = st.make("event", ns.EVENT)
            items = st.add(event, "items", ns.EVENT, attrs={"node": record.name})
            st.append(items, item.element(ns.EVENT, record.config.deliver_payloads))
            await self.send(owner, record, event, [(seen.jid, False)], delay=item.published)
