"""XEP-0191 Blocking Command: the blocklist (get, block, unblock, unblock all, pushes) and
its enforcement on every stanza path, so that blocked entities see the user offline.

* Inbound (STANZA_INBOUND, ahead of everything else): from a blocked JID, presence of any
  kind is dropped without an answer; messages and IQ get/set are answered
  ``service-unavailable`` (what an offline user's server says); errors and IQ results are
  dropped (§3.3 "Blocked JID attempts to communicate").
* Outbound (STANZA_OUTBOUND): the user's stanzas to a blocked JID are not routed but bounced
  with ``not-acceptable`` + ``<blocked xmlns='urn:xmpp:blocking:errors'/>`` (§3.3).
* Presence the server sends for the user (broadcasts, probe answers; PRESENCE_ROUTE) is
  suppressed towards blocked JIDs.
* On block, subscribers matching the blocked JID get unavailable presence from each of the
  user's available resources, and the user's resources get unavailable presence from blocked
  contacts they had presence from (§3.3). On unblock, subscribers get the current presence
  back and contacts the user is subscribed to are probed, so both sides see each other again.

Matching (§6, "consistent with XEP-0016", whose rule 4 includes subdomains): a blocked
user@domain/resource matches only that resource, user@domain any of its resources,
domain/resource only that resource of the bare domain, and domain the domain itself, any
JID at it and any JID at a subdomain of it. The user's own JIDs and the user's own server are
never blocked (§5 note: one's resources must be able to talk to each other).

Blocklists of users with sessions are cached (a dict lookup on the stanza path); others are
read from storage when a stanza for them arrives.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from twisted.words.xish.domish import Element

from plugins.presence import Presence
from plugins.roster import Roster
from storage.blocking import BLOCKED
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID, JIDError
from xmppd.plugin import Plugin
from xmppd.usercache import UserCache

NS = "urn:xmpp:blocking"
NS_ERRORS = "urn:xmpp:blocking:errors"
REQUESTED = "blocklist_requested"  # session.data: an "interested resource" (§3.2)


@dataclass(frozen=True)
class Options:
    max_items: int = 1000  # blocked JIDs per user (more: <not-allowed/>)


def matches(blocked: Collection[str], jid: JID) -> bool:
    """Whether ``jid`` is covered by a blocklist of prepared JID strings (§6)."""
    if not blocked:
        return False
    if jid.local:
        if jid.resource and str(jid) in blocked:
            return True
        if jid.bare_str in blocked:
            return True
    elif jid.resource and str(jid) in blocked:
        return True
    domain = jid.domain
    if domain.startswith("[") or domain.replace(".", "").isdigit():
        return domain in blocked  # an IP literal has no subdomains
    while True:
        if domain in blocked:
            return True
        dot = domain.find(".")
        if dot < 0:
            return False
        domain = domain[dot + 1:]


class Blocking(Plugin):
    name = "blocking"
    specs = ("XEP-0191 1.3",)
    features = (NS,)
    depends = ("roster", "presence")
    Options = Options
    live_options = True  # read when used: a reload may change them

    def setup(self) -> None:
        # bare JID -> blocklist (users online); another node's change reloads it in place,
        # the old list staying in force until then (PRESENCE_ROUTE cannot wait for storage)
        self.cache: UserCache[frozenset[str]] = self.host.user_cache("blocklist")
        self.cache.reload = self._reload
        self.host.share_session_flag(REQUESTED)
        self.passing: set[tuple[str, str]] = set()  # (user, target) presence let through
        self._ids = itertools.count(1)
        self.roster = self.host.require(Roster)
        self.presence = self.host.require(Presence)
        self.host.iq("get", NS, "blocklist", self.get, scope="account")
        self.host.iq("set", NS, "block", self.block, scope="account")
        self.host.iq("set", NS, "unblock", self.unblock, scope="account")
        self.host.on(H.STANZA_INBOUND, self.inbound, priority=1000)
        self.host.on(H.STANZA_OUTBOUND, self.outbound, priority=1000)
        self.host.on(H.PRESENCE_ROUTE, self.presence_route, priority=1000)
        self.host.on(H.PRESENCE_BROADCAST, self.before_broadcast, priority=1000)
        self.host.on(H.SESSION_BOUND, self.session_bound)
        self.host.on(H.SESSION_CLOSED, self.evict)
        self.host.on(H.ACCOUNT_DELETED, self.forget)

    # -- the blocklist -------------------------------------------------------------------------
    async def blocklist(self, user: JID) -> frozenset[str]:
        key = user.bare_str
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        jids = frozenset(await self.host.storage.blocking.get(user.domain, user.local))
        cached = self.cache.get(key)  # another load may have finished meanwhile
        if cached is not None:
            return cached
        if self.host.sessions_of(user):
            self.cache[key] = jids
        return jids

    def _apply(self, user: JID, loaded: frozenset[str], added: Iterable[str] = (),
               removed: Iterable[str] = ()) -> None:
        """Update the cached list after a committed change (starting from the cache, not
        from ``loaded``, so that concurrent changes from two resources both stay)."""
        key = user.bare_str
        base = self.cache.get(key, loaded)
        if key in self.cache or self.host.sessions_of(user):
            self.cache[key] = (base | frozenset(added)) - frozenset(removed)
        self.cache.changed(key)

    async def _reload(self, key: str) -> None:
        user = JID.parse(key)
        jids = frozenset(await self.host.storage.blocking.get(user.domain, user.local))
        if key in self.cache:
            self.cache[key] = jids

    async def session_bound(self, ev: H.SessionEvent) -> None:
        if ev.session.jid is not None:
            await self.blocklist(ev.session.jid.bare)

    async def before_broadcast(self, ev: H.StanzaEvent) -> bool:
        await self.blocklist(ev.from_.bare)  # PRESENCE_ROUTE (sync) needs it cached
        return False

    def evict(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None and not self.host.sessions_of(jid.bare):
            self.cache.pop(jid.bare_str, None)

    def forget(self, ev: H.AccountEvent) -> None:
        self.cache.pop(ev.jid.bare_str, None)

    # -- enforcement -----------------------------------------------------------------------------
    def _exempt(self, user: JID, other: JID) -> bool:
        return other.bare_str == user.bare_str or (other.domain == user.domain
                                                   and not other.local and not other.resource)

    async def inbound(self, ev: H.StanzaEvent) -> bool:
        user, sender = ev.to, ev.from_
        if self._exempt(user, sender):
            return False
        blocked = self.cache.get(user.bare_str)
        if blocked is None:
            blocked = await self.blocklist(user.bare)
        if not matches(blocked, sender):
            return False
        kind, type_ = ev.stanza.name, ev.stanza.getAttribute("type")
        if kind == "presence":
            return True  # §3.3: no answer, no error
        if type_ == "error":
            # Errors this server generated (origin None) answer the user's own stanzas, such
            # as the §3.3 not-acceptable for writing to a blocked JID: they go through. The
            # blocked entity's own errors (which clients may display) do not.
            return ev.origin is not None
        if kind == "iq" and type_ == "result":
            return True  # §3.3: "IQ stanzas of other types MUST be silently dropped"
        # Messages, IQ get/set: what an offline user's server answers.
        raise StanzaError("service-unavailable")

    async def outbound(self, ev: H.StanzaEvent) -> bool:
        if ev.extra.get("implicit_to"):
            return False
        user, target = ev.from_, ev.to
        if self._exempt(user, target):
            return False
        blocked = self.cache.get(user.bare_str)
        if blocked is None:
            blocked = await self.blocklist(user.bare)
        if matches(blocked, target):
            raise StanzaError("not-acceptable", type_="cancel",
                              app_condition=st.make("blocked", NS_ERRORS))
        return False

    def presence_route(self, ev: H.StanzaEvent) -> bool:
        user = ev.from_.bare_str
        blocked = self.cache.get(user)
        if not blocked or (user, str(ev.to)) in self.passing:
            return False
        return matches(blocked, ev.to)

    # -- IQ handlers (§3.2 - §3.5) ------------------------------------------------------------
    async def get(self, req: IqRequest) -> Element:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        if req.origin is not None:
            req.origin.data[REQUESTED] = True
        q = st.make("blocklist", NS)
        for jid in sorted(await self.blocklist(req.account)):
            st.add(q, "item", NS, attrs={"jid": jid})
        return q

    async def block(self, req: IqRequest) -> None:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        jids = _items(req.payload)
        if not jids:
            raise StanzaError("bad-request", text="<block/> needs at least one <item/>")
        user = req.account
        current = await self.blocklist(user)
        if len(current | set(jids)) > self.options.max_items:
            raise StanzaError("not-allowed", text="the blocklist is full")
        added = await self.host.storage.blocking.add(user.domain, user.local, jids)
        if not added:
            return None
        self._apply(user, current, added=added)
        self.push(user, "block", added)
        await self.hide(user, added)
        return None

    async def unblock(self, req: IqRequest) -> None:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        jids = _items(req.payload)
        user = req.account
        current = await self.blocklist(user)
        if jids:
            removed = await self.host.storage.blocking.remove(user.domain, user.local, jids)
        else:  # §3.5: unblock all
            removed = await self.host.storage.blocking.clear(user.domain, user.local)
        if not removed:
            return None
        self._apply(user, current, removed=removed)
        self.push(user, "unblock", removed if jids else [])
        await self.reveal(user, removed)
        return None

    def push(self, user: JID, kind: str, jids: list[str]) -> None:
        """§3.3/§3.4/§3.5: tell every resource that asked for the blocklist."""
        for session in self.host.sessions_of(user):
            if session.data.get(REQUESTED) and session.jid is not None:
                iq = st.iq("set", f"block-push{next(self._ids)}", to=str(session.jid))
                el = st.add(iq, kind, NS)
                for jid in jids:
                    st.add(el, "item", NS, attrs={"jid": jid})
                session.send(iq)

    # -- presence on block / unblock -------------------------------------------------------------
    async def _affected(self, user: JID, jids: Iterable[str], subscriptions: tuple[str, ...]
                        ) -> list[str]:
        """The addresses that presence must go to for these blocklist entries: the roster
        contacts they cover with one of ``subscriptions``; for a single-resource entry, that
        resource if its bare JID is such a contact."""
        roster = await self.roster.load(user)
        out: list[str] = []
        for item in jids:
            entry = JID.parse(item)
            if entry.resource:
                if roster.state(entry.bare_str).subscription in subscriptions:
                    out.append(item)
                continue
            for contact in roster.items:
                if (roster.state(contact).subscription in subscriptions
                        and matches((item,), JID.parse(contact))):
                    out.append(contact)
        return list(dict.fromkeys(out))

    async def hide(self, user: JID, jids: list[str]) -> None:
        """§3.3: unavailable to blocked subscribers (let through PRESENCE_ROUTE once), and
        unavailable from blocked contacts to the user's resources."""
        for target in await self._affected(user, jids, ("from", "both")):
            key = (user.bare_str, target)
            self.passing.add(key)
            try:
                await self.presence.send_unavailable_from_all(user, JID.parse(target))
            finally:
                self.passing.discard(key)
        for contact in await self._affected(user, jids, ("to", "both")):
            for session in self.host.available_sessions(user):
                session.send(st.make("presence", attrs={
                    "type": "unavailable", "from": contact, "to": str(session.jid)}))

    async def reveal(self, user: JID, jids: list[str]) -> None:
        """§3.4: current presence to subscribers no longer blocked (PRESENCE_ROUTE still
        stops it for those another entry blocks), and a probe to contacts we subscribe to."""
        for target in await self._affected(user, jids, ("from", "both")):
            await self.presence.send_current_presence(user, JID.parse(target))
        if self.host.available_sessions(user):
            for contact in await self._affected(user, jids, ("to", "both")):
                await self.presence.send_for_user(st.make("presence", attrs={
                    "type": "probe", "from": user.bare_str, "to": JID.parse(contact).bare_str}))


def _items(payload: Element) -> list[str]:
    """The prepared JIDs of <item jid='...'/> children (jid-malformed if one is not a JID)."""
    out: list[str] = []
    for item in st.children(payload, "item", NS):
        raw = item.getAttribute("jid")
        if not raw:
            raise StanzaError("bad-request", text="<item/> without 'jid'")
        try:
            jid = str(JID.parse(raw))
        except JIDError:
            raise StanzaError("jid-malformed", text=f"not a JID: {raw}") from None
        if len(jid) > BLOCKED:
            raise StanzaError("not-acceptable", text=f"JID longer than {BLOCKED} characters")
        out.append(jid)
    return list(dict.fromkeys(out))
