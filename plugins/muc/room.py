"""One room: its state (configuration, affiliations, occupants, subject, history) and how it
sends (XEP-0045 §7.2.3 presence broadcast, §7.4 message reflection, §7.14 exit).

Every change of room state happens synchronously, and everything the room sends goes through
one outbox per room that a single pump routes in order. So the stanzas a room sends an
occupant keep the order of the events that caused them (RFC 6120 §10.1 for the room as the
sender), whatever other stanzas are waiting on storage meanwhile.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, DeferredLock
from twisted.words.xish.domish import Element

from plugins.muc import affiliations as A
from plugins.muc import nicks, ns
from plugins.muc import roles as R
from plugins.muc.config import RoomConfig
from plugins.muc.fanout import Template
from plugins.muc.history import History
from plugins.muc.limits import TokenBucket
from plugins.muc.occupant import ItemInfo, Occupant, room_presence
from storage.rooms import StoredAffiliation, StoredRoom
from xmppd import stanza as st
from xmppd.jid import JID

if TYPE_CHECKING:
    from plugins.muc.service import MucService


@dataclass
class Subject:
    text: str = ""
    nick: str = ""  # who set it; "" = the room itself
    stamp: int = 0  # unix microseconds; 0 = never set


class Room:
    def __init__(self, service: MucService, jid: JID, config: RoomConfig, secret: bytes,
                 created: int, locked: bool = False) -> None:
        self.service = service
        self.jid = jid
        self.name = jid.local
        self.config = config
        self.secret = secret
        self.created = created
        self.locked = locked  # §10.1.1: created, not yet configured
        self.destroyed = False
        self.affiliations: dict[str, StoredAffiliation] = {}
        self.occupants: dict[str, Occupant] = {}  # nick -> occupant (occupant JIDs: exact)
        self.nick_keys: dict[str, Occupant] = {}  # nick comparison key -> occupant (conflicts)
        self._reserved: dict[str, str] | None = None  # reserved nick key -> bare JID (lazy)
        self.sessions: dict[JID, Occupant] = {}  # real full JID -> occupant
        self.subject = Subject()
        self.history = History(config.history_length)
        self.history_loaded = True  # False for a stored room until its archive was read
        self.buckets: dict[str, TokenBucket] = {}  # bare JID -> flood control
        self.invited: dict[str, set[str]] = {}  # invitee bare JID -> inviters (§7.8.2)
        self.voice: dict[str, str] = {}  # bare JID -> role kept across visits (§5.1)
        self.lock = DeferredLock()  # one owner/admin change at a time
        self.history_lock = DeferredLock()
        self.outbox: deque[Element] = deque()
        self._pumping = False
        self._idle: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"Room({self.jid})"

    # -- affiliations (§5.2) ------------------------------------------------------------------
    def affiliation(self, bare: JID | str) -> str:
        a = self.affiliations.get(bare if isinstance(bare, str) else bare.bare_str)
        return a.affiliation if a is not None else A.NONE

    def with_affiliation(self, affiliation: str) -> list[StoredAffiliation]:
        return sorted((a for a in self.affiliations.values() if a.affiliation == affiliation),
                      key=lambda a: a.jid)

    def set_affiliation(self, bare: str, affiliation: str, nick: str | None = None,
                        reason: str | None = None) -> StoredAffiliation:
        entry = StoredAffiliation(bare, affiliation, nick, reason)
        if affiliation == A.NONE:
            self.drop_affiliation(bare)
        else:
            self.put_affiliation(entry)
        return entry

    def put_affiliation(self, entry: StoredAffiliation) -> None:
        self.affiliations[entry.jid] = entry
        self._reserved = None

    def drop_affiliation(self, bare: str) -> None:
        if self.affiliations.pop(bare, None) is not None:
            self._reserved = None

    def nick_reserved_by(self, key: str) -> str | None:
        """The bare JID that reserved a nick with this comparison key (member nicks, §9.3,
        §7.12: "If another user attempts to join the room with a nickname reserved by the
        first user, the service MUST deny entry"), if any. Outcasts reserve nothing
        ("outcasts SHOULD NOT have reserved nicknames", business rules #bizrules-iq). The
        index is built on the first entry after the affiliations changed, not every time."""
        if self._reserved is None:
            index: dict[str, str] = {}
            for a in self.affiliations.values():
                k = nicks.key(a.nick) if a.nick and a.affiliation != A.OUTCAST else None
                if k is not None:
                    index.setdefault(k, a.jid)
            self._reserved = index
        return self._reserved.get(key)

    # -- occupants ------------------------------------------------------------------------------
    def occupant_id(self, bare: JID) -> str:
        """XEP-0421 §5.1: HMAC of the real bare JID with the room's secret key."""
        return hmac.new(self.secret, bare.bare_str.encode(), hashlib.sha256).hexdigest()

    def affiliation_of(self, occ: Occupant) -> str:
        return self.affiliation(occ.bare)

    def sees_jids(self, viewer: Occupant | None) -> bool:
        """§7.2.4/§7.2.5: real JIDs go to everyone in a non-anonymous room, else to
        moderators only."""
        return self.config.non_anonymous or (viewer is not None and viewer.role == R.MODERATOR)

    def add_occupant(self, occ: Occupant) -> None:
        self.occupants[occ.nick] = occ
        self.nick_keys[occ.key] = occ

    def rename(self, occ: Occupant, nick: str, key: str) -> None:
        """§7.6: the occupant's nick (and its comparison key) change."""
        self._unlist(occ)
        occ.nick, occ.key = nick, key
        self.add_occupant(occ)

    def _unlist(self, occ: Occupant) -> None:
        if self.occupants.get(occ.nick) is occ:
            del self.occupants[occ.nick]
        if self.nick_keys.get(occ.key) is occ:
            del self.nick_keys[occ.key]

    def occupant_of(self, bare: JID) -> list[Occupant]:
        return [o for o in self.occupants.values() if o.bare == bare]

    def bucket(self, bare: JID) -> TokenBucket:
        opts = self.service.options
        b = self.buckets.get(bare.bare_str)
        if b is None:
            b = TokenBucket(opts.message_rate, opts.message_burst, self.service.now())
            self.buckets[bare.bare_str] = b
        return b

    def nick_jid(self, nick: str) -> str:
        return f"{self.jid.bare_str}/{nick}"

    # -- sending --------------------------------------------------------------------------------
    def send(self, stanza: Element) -> None:
        """Queue a stanza from the room. The service starts the pump when the operation that
        queued it is over (MucService.flush), so routing, which may come straight back with
        an error bounce that changes the room, never runs in the middle of a change."""
        self.outbox.append(stanza)
        if not self._pumping:
            self.service.dirty.add(self)

    def pump(self) -> None:
        if self.outbox and not self._pumping:
            self._pumping = True
            self.service.track(Deferred.fromCoroutine(self._pump()))

    async def _pump(self) -> None:
        try:
            while self.outbox:
                await self.service.host.send(self.outbox.popleft())
        finally:
            self._pumping = False
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def drained(self) -> Deferred[None]:
        """Fires when everything queued so far has been routed."""
        d: Deferred[None] = Deferred()
        self.pump()
        if self._pumping:
            self._idle.append(d)
        else:
            d.callback(None)
        return d

    def send_to_occupant(self, occ: Occupant, tpl: Template) -> None:
        for full in list(occ.sessions):
            self.send(tpl.to(str(full)))

    def broadcast(self, tpl: Template) -> None:
        """A message to every session of every occupant (§7.4)."""
        for occ in self.occupants.values():
            for full in occ.sessions:
                self.send(tpl.to(str(full)))

    def info(self, occ: Occupant, **overrides: object) -> ItemInfo:
        values: dict[str, object] = {"affiliation": self.affiliation_of(occ),
                                     "role": occ.role}
        values.update(overrides)
        return ItemInfo(**values)  # type: ignore[arg-type]

    def presence_templates(self, occ: Occupant, info: ItemInfo, base: Element | None
                           ) -> tuple[Template, Template]:
        """(with real JID, without) variants of one occupant presence."""
        frm = self.nick_jid(occ.nick)
        oid = occ.occupant_id
        with_jid = replace(info, jid=str(occ.jid))
        return (Template(room_presence(base, frm, with_jid, oid)),
                Template(room_presence(base, frm, info, oid)))

    def broadcast_presence(self, occ: Occupant, info: ItemInfo, base: Element | None,
                           self_codes: tuple[int, ...] = (), self_id: str | None = None,
                           others: bool = True, selves: bool = True,
                           only_session: JID | None = None,
                           later: list[Callable[[], None]] | None = None) -> None:
        """Presence of ``occ`` to its own sessions, with status code 110, then to every other
        occupant (§7.2.3, §7.7, §7.14), the real JID to those who may see it. With ``later``
        the part for the others is queued only when the caller runs what it collected there
        (after an IQ result, §8.2)."""
        if selves:
            mine = replace(info, jid=str(occ.jid), codes=(*info.codes, ns.SELF, *self_codes))
            p = room_presence(base, self.nick_jid(occ.nick), mine, occ.occupant_id)
            if self_id:
                p.attributes["id"] = self_id
            tpl = Template(p)
            for full in ([only_session] if only_session is not None else occ.sessions):
                self.send(tpl.to(str(full)))
        if not others or occ.role not in self.config.presence_broadcast:
            return  # muc#roomconfig_presencebroadcast: the room does not show this role
        shown, hidden = self.presence_templates(occ, info, base)
        targets = [(shown if self.sees_jids(other) else hidden, str(full))
                   for other in self.occupants.values() if other is not occ
                   for full in other.sessions]

        def notify() -> None:
            for tpl, to in targets:
                self.send(tpl.to(to))

        if later is not None:
            later.append(notify)
        else:
            notify()

    def send_roster(self, newcomer: Occupant, to: JID) -> None:
        """§7.2.3: presence of every other occupant to a new session, before its own."""
        see = self.sees_jids(newcomer)
        for other in self.occupants.values():
            if other is newcomer or other.role not in self.config.presence_broadcast:
                continue
            info = self.info(other)
            if see:
                info = replace(info, jid=str(other.jid))
            p = room_presence(other.sessions.get(other.jid), self.nick_jid(other.nick), info,
                              other.occupant_id)
            p.attributes["to"] = str(to)
            self.send(p)

    def status_message(self, codes: tuple[int, ...]) -> None:
        """§10.2.1: a groupchat message from the room carrying only status codes."""
        m = st.make("message", attrs={"from": self.jid.bare_str, "type": "groupchat",
                                      "id": self.service.new_id()})
        x = st.add(m, "x", ns.USER)
        for code in codes:
            st.add(x, "status", ns.USER, attrs={"code": str(code)})
        self.broadcast(Template(m))

    # -- leaving --------------------------------------------------------------------------------
    def remove(self, occ: Occupant, base: Element | None, codes: tuple[int, ...] = (),
               actor: str | None = None, reason: str | None = None,
               later: list[Callable[[], None]] | None = None) -> None:
        """The occupant is no longer in the room (§7.14, §8.2, §9.1): unavailable presence
        with role "none" to its own sessions (status code 110), then to everyone else."""
        info = self.info(occ, role=R.ROLE_NONE, codes=codes, actor=actor, reason=reason)
        self.broadcast_presence(occ, info, base, later=later)
        self.forget(occ)

    def forget(self, occ: Occupant) -> None:
        self._unlist(occ)
        bucket = self.buckets.get(occ.bare.bare_str)
        if bucket is not None and bucket.full(self.service.now()) and not self.occupant_of(
                occ.bare):
            del self.buckets[occ.bare.bare_str]  # a flooder who leaves keeps its debt
        for full in list(occ.sessions):
            self.sessions.pop(full, None)
            self.service.unindex(full, self)
        if not self.occupants:
            self.service.emptied(self)

    def remove_session(self, occ: Occupant, full: JID, base: Element | None,
                       codes: tuple[int, ...] = ()) -> None:
        """One session of an occupant leaves (§7.2.9 multi-session); the occupant stays while
        it has other sessions, and the room shows the presence of the one that remains."""
        if len(occ.sessions) <= 1:
            self.remove(occ, base, codes)
            return
        info = self.info(occ, role=R.ROLE_NONE, codes=codes)
        self.broadcast_presence(occ, info, base, others=False, only_session=full)
        was_primary = occ.primary == full
        occ.drop(full)
        self.sessions.pop(full, None)
        self.service.unindex(full, self)
        if was_primary:
            self.broadcast_presence(occ, self.info(occ), occ.sessions.get(occ.jid),
                                    selves=False)

    # -- persistence ----------------------------------------------------------------------------
    def to_stored(self) -> StoredRoom:
        return StoredRoom(self.name, self.config.to_json(), self.subject.text,
                          self.subject.nick, self.subject.stamp, self.secret.hex(),
                          self.created, sorted(self.affiliations.values(), key=lambda a: a.jid))
