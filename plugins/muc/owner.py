"""The muc#owner protocol: room creation (§10.1: instant and reserved rooms), subsequent
configuration (§10.2, with the §10.2.1 notifications) and destruction (§10.9).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.muc import affiliations as A
from plugins.muc import ns
from plugins.muc import roles as R
from plugins.muc.admin import apply_affiliation
from plugins.muc.config import RoomConfig, Submitted, config_form, parse_form
from plugins.muc.occupant import ItemInfo, room_presence, unavailable
from storage.rooms import StoredAffiliation
from xmppd import forms
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError

if TYPE_CHECKING:
    from plugins.muc.iq import Request
    from plugins.muc.room import Room
    from plugins.muc.service import MucService


def _owner(room: Room, req: Request) -> None:
    if room.affiliation(req.from_.bare) != A.OWNER:  # §10.2, §10.9
        raise StanzaError("forbidden", text="only owners configure or destroy the room")


async def get(service: MucService, room: Room, req: Request) -> Element:
    _owner(room, req)
    if st.element_children(req.payload):
        raise StanzaError("bad-request", text="ask for the form with an empty query")
    q = st.make("query", ns.OWNER)
    st.append(q, config_form(room.config, room.jid.bare_str,
                             [a.jid for a in room.with_affiliation(A.ADMIN)],
                             [a.jid for a in room.with_affiliation(A.OWNER)], service.bounds))
    return q


async def set_(service: MucService, room: Room, req: Request) -> None:
    _owner(room, req)
    await room.lock.acquire()  # one configuration change at a time, on the current state
    try:
        if not room.destroyed:
            await _set(service, room, req)
    finally:
        room.lock.release()


async def _set(service: MucService, room: Room, req: Request) -> None:
    d = st.child(req.payload, "destroy", ns.OWNER)
    if d is not None:
        alt = d.getAttribute("jid")
        if alt:
            try:
                alt = str(JID.parse(alt))
            except JIDError:
                raise StanzaError("jid-malformed", text="the alternate venue is not a JID")
        await destroy(service, room, alt, st.child_text(d, "reason", ns.OWNER),
                      st.child_text(d, "password", ns.OWNER))
        return
    x = st.child(req.payload, "x", forms.NS)
    if x is None:
        raise StanzaError("bad-request", text="expected a data form or <destroy/>")
    form = forms.Form.parse(x)
    if form.type == "cancel":
        if room.locked:  # §10.1.3: cancelling the initial configuration destroys the room
            await destroy(service, room, None, None, None)
        return  # §10.2: a cancelled reconfiguration changes nothing
    if form.type == "submit" and not form.fields and room.locked:
        await configure(service, room, Submitted(room.config), req.from_)  # §10.1.2 instant
        return
    await configure(service, room, parse_form(form, room.config, service.bounds), req.from_)


async def configure(service: MucService, room: Room, sub: Submitted, requester: JID) -> None:
    """Apply a validated configuration: commit it (a persistent room is stored whole, a room
    that stops being persistent is removed from storage), then change the room."""
    old, new = room.config, sub.config
    changes = _list_changes(room, sub)
    was_locked = room.locked
    if new.persistent:
        stored = room.to_stored()
        stored.config = new.to_json()
        affs = {a.jid: a for a in stored.affiliations}
        for bare, aff in changes:
            if aff == A.NONE:
                affs.pop(bare, None)
            else:
                prev = affs.get(bare)
                affs[bare] = StoredAffiliation(bare, aff, prev.nick if prev else None)
        stored.affiliations = sorted(affs.values(), key=lambda a: a.jid)
        await service.host.storage.rooms.save(service.domain, stored)
        if room.destroyed:  # its owner left the locked room meanwhile (§10.1.3)
            await service.host.storage.rooms.delete(service.domain, room.name)
            return
    elif old.persistent and not was_locked:
        await service.host.storage.rooms.delete(service.domain, room.name)
    room.config = new
    room.history.resize(new.history_length)
    if was_locked:
        service.unlocked(room)
    if not room.history_loaded and not new.archiving:
        room.history_loaded = True
    me = next((o.nick for o in room.occupant_of(requester.bare)), None)
    for bare, aff in changes:
        apply_affiliation(service, room, me, bare, aff, None, None, requester)
    _apply_room_type(room)
    if not was_locked:
        codes = _notifications(old, new)
        if codes and room.occupants:
            room.status_message(codes)
    if not room.occupants and not room.destroyed:
        service.emptied(room)


def _list_changes(room: Room, sub: Submitted) -> list[tuple[str, str]]:
    """Affiliation changes implied by the full owner and admin lists of the form."""
    owners = {a.jid for a in room.with_affiliation(A.OWNER)}
    admins = {a.jid for a in room.with_affiliation(A.ADMIN)}
    new_owners = set(sub.owners) if sub.owners is not None else owners
    new_admins = (set(sub.admins) if sub.admins is not None else admins) - new_owners
    out: dict[str, str] = {}
    for bare in (owners | admins) - new_owners - new_admins:
        out[bare] = A.NONE
    for bare in new_admins - admins:
        out[bare] = A.ADMIN
    for bare in new_owners - owners:
        out[bare] = A.OWNER
    return sorted(out.items())


def _apply_room_type(room: Room) -> None:
    """§10.2: a room that became members-only loses its non-members (status 322); a room
    that is no longer moderated gives its visitors voice."""
    cfg = room.config
    for occ in list(room.occupants.values()):
        aff = room.affiliation_of(occ)
        if cfg.members_only and A.rank(aff) < A.rank(A.MEMBER):
            room.remove(occ, unavailable(), codes=(ns.MEMBERS_ONLY_REMOVED,))
        elif not cfg.moderated and occ.role == R.VISITOR:
            occ.role = R.PARTICIPANT
            room.broadcast_presence(occ, room.info(occ), occ.sessions.get(occ.jid))


def _notifications(old: RoomConfig, new: RoomConfig) -> tuple[int, ...]:
    """§10.2.1: 170/171 logging, 172/173 anonymity, 104 for any other change."""
    codes: list[int] = []
    if old.logged != new.logged:
        codes.append(ns.LOGGING_ON if new.logged else ns.LOGGING_OFF)
    if old.non_anonymous != new.non_anonymous:
        codes.append(ns.NOW_NON_ANONYMOUS if new.non_anonymous else ns.NOW_SEMI_ANONYMOUS)
    announced = {"whois"} | ({"logging", "archiving"} if old.logged != new.logged else set())
    before, after = old.to_json(), new.to_json()
    if any(before[k] != after[k] for k in before if k not in announced):
        codes.append(ns.CONFIG_CHANGED)
    return tuple(codes)


async def destroy(service: MucService, room: Room, alt: str | None, reason: str | None,
                  password: str | None) -> None:
    """§10.9: every occupant gets one unavailable presence with <destroy/> (the alternate
    venue and reason if given); the room, its affiliations and its archive are removed."""
    if room.destroyed:
        return
    if room.config.persistent and not room.locked:
        await service.host.storage.rooms.delete(service.domain, room.name)
    d = st.make("destroy", ns.USER, {"jid": alt} if alt else None)
    if reason:
        st.add(d, "reason", ns.USER, reason)
    if password:
        st.add(d, "password", ns.USER, password)
    info = ItemInfo(A.NONE, R.ROLE_NONE, destroy=d)
    for occ in list(room.occupants.values()):
        p = room_presence(unavailable(), room.nick_jid(occ.nick), info, occ.occupant_id)
        for full in list(occ.sessions):
            out = st.shallow_copy(p)
            out.attributes["to"] = str(full)
            room.send(out)
            service.unindex(full, room)
    room.occupants.clear()
    room.sessions.clear()
    service.vanish(room)
