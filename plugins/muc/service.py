"""The MUC service: the route target for conference.<domain> and every room on it.

The router hands every stanza addressed to the service domain, a room JID or an occupant
JID to ``receive``; it is dispatched by kind to presence.py, messages.py and iq.py. Errors
are raised as StanzaError and answered by the router (RFC 6120 §8.3), with 'by' set to the
room that generated them (XEP-0045 examples). The service owns the rooms: loading stored
ones, creating new ones, forgetting temporary ones when the last occupant leaves (§3.2
"Temporary Room"), and removing the occupants when the server shuts down (§14.2, status 332).
"""

from __future__ import annotations

import itertools
import secrets
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.words.xish.domish import Element

from plugins.muc import affiliations as A
from plugins.muc import iq, messages, ns, presence
from plugins.muc import roles as R
from plugins.muc.config import Bounds, RoomConfig
from plugins.muc.occupant import unavailable
from plugins.muc.owner import destroy
from plugins.muc.room import Room, Subject
from storage.rooms import StoredRoom
from xmppd import hooks as H
from xmppd.jid import JID
from xmppd.logs import Logger
from xmppd.timeutil import now_micros

if TYPE_CHECKING:
    from plugins.muc import Muc

log = Logger(namespace="xmppd.plugins.muc")


class MucService:
    def __init__(self, plugin: Muc, domain: str) -> None:
        self.plugin = plugin
        self.host = plugin.host
        self.options = plugin.options
        self.domain = domain
        self.jid = JID("", domain)
        self.rooms: dict[str, Room] = {}
        self.index: dict[JID, set[Room]] = {}  # real full JID -> rooms it is in
        self.dirty: set[Room] = set()  # rooms with queued stanzas and no pump running
        self.bounds = Bounds(self.options.max_occupants, self.options.max_history)
        o = self.options
        self.defaults = RoomConfig(
            persistent=o.default_persistent, public=o.default_public,
            archiving=o.default_archiving, whois=o.default_whois,
            max_users=min(o.default_max_users, o.max_occupants),
            history_length=min(o.default_history, o.max_history))
        self.inflight: set[Deferred[Any]] = set()
        self.timers: dict[str, Any] = {}  # room -> lock timeout (§10.1.1)
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self.proxy = iq.IqProxy(self)

    # -- helpers --------------------------------------------------------------------------------
    def now(self) -> float:
        return float(self.host.clock.seconds())

    def now_micros(self) -> int:
        return now_micros(self.host.clock.seconds())

    def new_id(self) -> str:
        return f"muc-{self._id_prefix}-{next(self._ids)}"

    def track(self, d: Deferred[Any]) -> None:
        """Remember unfinished work (the shutdown waits for it; failures are logged)."""
        if d.called:
            d.addErrback(lambda f: log.failure("MUC background work failed", f))
            return
        self.inflight.add(d)

        def done(result: object) -> None:
            self.inflight.discard(d)
            if hasattr(result, "raiseException"):
                log.failure("MUC background work failed", result)  # type: ignore[arg-type]

        d.addBoth(done)

    def track_send(self, stanza: Element) -> None:
        """Send a stanza that no room orders (answers from the service itself)."""
        self.track(Deferred.fromCoroutine(self.host.send(stanza)))

    def reindex(self, full: JID, room: Room) -> None:
        self.index.setdefault(full, set()).add(room)

    def unindex(self, full: JID, room: Room) -> None:
        rooms = self.index.get(full)
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.index[full]

    # -- routing ----------------------------------------------------------------------------
    async def receive(self, ev: H.StanzaEvent) -> None:
        room = self.rooms.get(ev.to.local) if ev.to.local else None
        kind = ev.stanza.name
        try:
            if kind == "presence":
                await presence.handle(self, room, ev)
            elif kind == "message":
                await messages.handle(self, room, ev)
            elif kind == "iq":
                await iq.handle(self, room, ev)
        finally:
            self.flush()

    def flush(self) -> None:
        """Start routing what the rooms queued (called when an operation is complete)."""
        while self.dirty:
            rooms, self.dirty = self.dirty, set()
            for room in rooms:
                room.pump()

    # -- room lifecycle ---------------------------------------------------------------------------
    async def load(self) -> None:
        """Bring back the stored (persistent) rooms; their history comes from the archive on
        first use (mam.load_history)."""
        for stored in await self.host.storage.rooms.load(self.domain):
            try:
                room = self.restore(stored)
            except ValueError:
                log.warn("skipping stored room {name} with an invalid name", name=stored.name)
                continue
            self.rooms[room.name] = room
        if self.rooms:
            log.info("{n} stored rooms on {domain}", n=len(self.rooms), domain=self.domain)

    def restore(self, stored: StoredRoom) -> Room:
        jid = JID.parse(f"{stored.name}@{self.domain}")
        if jid.local != stored.name:
            raise ValueError(stored.name)
        cfg = RoomConfig.from_json(stored.config, self.defaults)
        secret = bytes.fromhex(stored.secret) if stored.secret else secrets.token_bytes(32)
        room = Room(self, jid, cfg, secret, stored.created)
        for a in stored.affiliations:
            room.put_affiliation(a)
        room.subject = Subject(stored.subject, stored.subject_nick, stored.subject_time)
        room.history_loaded = not cfg.archiving
        return room

    def create(self, name: str, owner: JID) -> Room:
        """A new room, owned by its creator and locked until configured (§10.1.1)."""
        room = Room(self, JID(name, self.domain), self.defaults, secrets.token_bytes(32),
                    self.now_micros(), locked=self.options.lock_rooms)
        room.set_affiliation(owner.bare_str, A.OWNER)
        self.rooms[name] = room
        if room.locked and self.options.lock_timeout > 0:
            self.timers[name] = self.host.clock.callLater(
                self.options.lock_timeout, self._lock_expired, room)
        return room

    def _lock_expired(self, room: Room) -> None:
        self.timers.pop(room.name, None)
        if room.locked and self.rooms.get(room.name) is room:
            self.track(Deferred.fromCoroutine(self._expire(room)))

    async def _expire(self, room: Room) -> None:
        await room.lock.acquire()  # not in the middle of its configuration
        try:
            if room.locked and not room.destroyed:
                await destroy(self, room, None, "The room was not configured in time", None)
        finally:
            room.lock.release()
            self.flush()

    def unlocked(self, room: Room) -> None:
        room.locked = False
        timer = self.timers.pop(room.name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def emptied(self, room: Room) -> None:
        """The last occupant left: a temporary (or never configured) room ceases to exist
        (§3.2, §7.14 note); its archive goes with it."""
        if room.config.persistent and not room.locked:
            return
        self.vanish(room)

    def vanish(self, room: Room) -> None:
        room.destroyed = True
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
        timer = self.timers.pop(room.name, None)
        if timer is not None and timer.active():
            timer.cancel()
        if room.config.archiving:
            self.track(self.host.storage.archive.purge(self.domain, room.name))

    async def reload_idle(self, _: None) -> None:
        """Cluster: rooms may have moved here from a node that changed them meanwhile, so
        every room without occupants is read again from storage (persistent ones) or
        forgotten (temporary ones: they ended with their last occupant elsewhere)."""
        stored = {s.name: s for s in await self.host.storage.rooms.load(self.domain)}
        for name, room in list(self.rooms.items()):
            if room.occupants or room.locked:
                continue
            fresh = stored.get(name)
            if fresh is None:
                del self.rooms[name]
                continue
            try:
                self.rooms[name] = self.restore(fresh)
            except ValueError:
                continue
        for name, fresh in stored.items():
            if name not in self.rooms:
                try:
                    self.rooms[name] = self.restore(fresh)
                except ValueError:
                    continue

    def owned_by(self, bare: JID) -> int:
        return sum(1 for r in self.rooms.values() if r.affiliation(bare) == A.OWNER)

    # -- hooks ------------------------------------------------------------------------------------
    async def session_closed(self, ev: H.SessionEvent) -> None:
        """A local session ended. The presence plugin has already sent unavailable presence to
        the rooms it joined (RFC 6121 §4.6.3); a session that never sent broadcast presence
        is removed here, so no ghost stays behind (XEP-0045 §18.1.2)."""
        full = ev.session.jid
        if full is None:
            return
        for room in list(self.index.get(full, ())):
            occ = room.sessions.get(full)
            if occ is not None:
                room.remove_session(occ, full, unavailable())
        self.flush()

    async def shutdown(self, _: None) -> None:
        """§14.2: tell every occupant the service is going away (status 332), while the
        streams are still open, and wait until it has been sent."""
        rooms = list(self.rooms.values())
        for room in rooms:
            for occ in list(room.occupants.values()):
                info = room.info(occ, role=R.ROLE_NONE, codes=(ns.SHUTDOWN,))
                room.broadcast_presence(occ, info, unavailable(), others=False)
                room.forget(occ)  # gone: the unavailable presence of its session comes later
        self.flush()
        await DeferredList([r.drained() for r in rooms])
        await DeferredList(list(self.inflight), consumeErrors=True)

    def stop(self) -> None:
        for timer in self.timers.values():
            if timer.active():
                timer.cancel()
        self.timers.clear()

    async def account_deleted(self, ev: H.AccountEvent) -> None:
        """XEP-0077 §3.2 (every bit of the user's data): the user's affiliations go."""
        bare = ev.jid.bare_str
        for room in self.rooms.values():
            room.drop_affiliation(bare)
        await self.host.storage.rooms.forget_user(self.domain, bare)
