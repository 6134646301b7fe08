"""The muc#admin protocol: every list operation of XEP-0045 §8 (moderator) and §9-§10
(admin, owner): kick, voice, moderator, member, ban, admin and owner lists, get and set.

A set is all or nothing (§9.2: "SHOULD NOT apply any of the requested changes"): every item
is checked against the permission tables (roles.py, affiliations.py) before anything
changes. Affiliations of a persistent room are committed before they take effect. A kicked or
banned occupant learns it first, then the requester gets the IQ result, then the remaining
occupants are told (§8.2, §9.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.muc import affiliations as A
from plugins.muc import nicks, ns
from plugins.muc import roles as R
from plugins.muc.invites import send_invitation
from plugins.muc.occupant import Occupant, unavailable
from storage.rooms import StoredAffiliation
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError

if TYPE_CHECKING:
    from plugins.muc.iq import Request
    from plugins.muc.room import Room
    from plugins.muc.service import MucService

Later = list[Callable[[], None]]


def actor(room: Room, requester: JID) -> tuple[str, str, Occupant | None]:
    """(affiliation, role, occupant) of a requester: the role is the highest of the user's
    occupants ("the bare JID portion of one of the moderators", §8)."""
    present = room.occupant_of(requester.bare)
    best = max(present, key=lambda o: R.ROLE_RANK[o.role], default=None)
    return room.affiliation(requester.bare), best.role if best else R.ROLE_NONE, best


def _items(payload: Element) -> list[Element]:
    items = list(st.children(payload, "item", ns.ADMIN))
    if not items:
        raise StanzaError("bad-request", text="no <item/> in the request")
    for item in items:
        if (item.getAttribute("role") is None) == (item.getAttribute("affiliation") is None):
            # §17.3.4: an item sets either a role or an affiliation
            raise StanzaError("bad-request", text="each item needs a role or an affiliation")
    return items


async def get(service: MucService, room: Room, req: Request) -> Element:
    items = _items(req.payload)
    if len(items) != 1:
        raise StanzaError("bad-request", text="ask for one list at a time")
    aff, role, _ = actor(room, req.from_)
    out = st.make("query", ns.ADMIN)
    wanted_role, wanted_aff = items[0].getAttribute("role"), items[0].getAttribute("affiliation")
    if wanted_role is not None:
        if wanted_role not in (R.MODERATOR, R.PARTICIPANT, R.VISITOR):
            raise StanzaError("bad-request", text="unknown role")
        need_admin = wanted_role == R.MODERATOR  # §9.8 moderator list; §8.5 voice list
        if role != R.MODERATOR or (need_admin and A.rank(aff) < A.rank(A.ADMIN)):
            raise StanzaError("forbidden", text="not allowed to see this list")
        for occ in sorted(room.occupants.values(), key=lambda o: o.nick):
            if occ.role == wanted_role:  # §17.3.5: nick, role, affiliation and full JID
                st.add(out, "item", ns.ADMIN, attrs={
                    "affiliation": room.affiliation_of(occ), "jid": str(occ.jid),
                    "nick": occ.nick, "role": occ.role})
        return out
    if wanted_aff not in (A.OWNER, A.ADMIN, A.MEMBER, A.OUTCAST):
        raise StanzaError("bad-request", text="unknown affiliation list")
    if not A.may_get_list(wanted_aff, aff, role, room.config.non_anonymous,
                          room.config.member_list_roles):
        raise StanzaError("forbidden", text="not allowed to see this list")
    for a in room.with_affiliation(wanted_aff):  # §17.3.6: jid and affiliation, no role
        attrs = {"affiliation": a.affiliation, "jid": a.jid}
        nick = a.nick or next((o.nick for o in room.occupant_of(JID.parse(a.jid))), None)
        if nick and a.affiliation != A.OUTCAST:
            attrs["nick"] = nick
        item = st.add(out, "item", ns.ADMIN, attrs=attrs)
        if a.reason:
            st.add(item, "reason", ns.ADMIN, a.reason)
    return out


@dataclass
class Change:
    item: Element
    reason: str | None
    target: Occupant | None = None  # role changes
    bare: str = ""  # affiliation changes
    nick: str | None = None  # the reserved nick to set (enforced), "" to unset, None: keep
    nick_key: str | None = None  # its RFC 8266 comparison key


async def set_(service: MucService, room: Room, req: Request) -> None:
    items = _items(req.payload)
    await room.lock.acquire()
    try:
        aff, role, me = actor(room, req.from_)
        changes = [_check(room, req.from_, aff, role, item) for item in items]
        claimed: dict[str, str] = {}
        for c in changes:  # two users cannot reserve look-alikes in one request either
            if c.nick_key is not None and claimed.setdefault(c.nick_key, c.bare) != c.bare:
                raise StanzaError("conflict", text=f"the nick {c.nick} is reserved")
        owners = {a.jid for a in room.with_affiliation(A.OWNER)}
        for c in changes:
            new = c.item.getAttribute("affiliation")
            if new is not None:
                (owners.add if new == A.OWNER else owners.discard)(c.bare)
        if not owners:  # §10.6: the last owner cannot step down
            raise StanzaError("conflict", text="a room must keep an owner")
        stored = [_stored(room, c) for c in changes if c.bare]
        if stored and room.config.persistent and not room.locked:
            await service.host.storage.rooms.set_affiliations(service.domain, room.name, stored)
        later: Later = []
        actor_nick = me.nick if me is not None else None
        for c in changes:
            if c.target is not None:
                if room.occupants.get(c.target.nick) is c.target:  # still there
                    change_role(room, me, c.target, c.item.getAttribute("role") or "", c.reason,
                                later)
            else:
                apply_affiliation(service, room, actor_nick, c.bare,
                                  c.item.getAttribute("affiliation") or "", c.reason,
                                  c.nick, req.from_, later)
        req.reply.send(None)
        for fn in later:
            fn()
    finally:
        room.lock.release()


def _check(room: Room, requester: JID, aff: str, role: str, item: Element) -> Change:
    reason = st.child_text(item, "reason", ns.ADMIN)
    new_role = item.getAttribute("role")
    if new_role is not None:
        nick = item.getAttribute("nick")
        if not nick:
            raise StanzaError("bad-request", text="a role change names the occupant's nick")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", text=f"no occupant {nick}")
        err = R.change_error(aff, role, room.affiliation_of(target), target.role, new_role)
        if err:
            raise StanzaError(err, text=f"cannot change the role of {nick}")
        return Change(item, reason, target=target)
    raw = item.getAttribute("jid")
    if not raw:
        raise StanzaError("bad-request", text="an affiliation change names a jid")
    try:
        bare = JID.parse(raw).bare_str  # §10.3: a full JID stands for its bare JID
    except JIDError:
        raise StanzaError("jid-malformed", text=f"{raw!r} is not a JID") from None
    new = item.getAttribute("affiliation") or ""
    err = A.change_error(aff, room.affiliation(bare), new, bare == requester.bare_str)
    if err:
        raise StanzaError(err, text=f"cannot change the affiliation of {bare}")
    nick, key = _reserved_nick(room, item.getAttribute("nick"))
    if key is not None:
        holder = room.nick_reserved_by(key)
        if holder is not None and holder != bare:  # §7.10: "already reserved": conflict
            raise StanzaError("conflict", text=f"the nick {nick} is reserved")
    return Change(item, reason, bare=bare, nick=nick, nick_key=key)


def _reserved_nick(room: Room, raw: str | None) -> tuple[str | None, str | None]:
    """(nick to store, comparison key) of a member's nick attribute (§9.3). It is kept in
    the enforced form the room would show (RFC 8266 §2.3) and compared like the nicks of
    occupants, so a look-alike of another member's nick is refused. A value the profile
    refuses is ``bad-request``: the attribute's value is malformed (RFC 6120 §8.3.3.1);
    it is no address here, so not ``jid-malformed`` as on entry."""
    if not raw:
        return raw, None  # None: unchanged; "": unset (§9.5)
    try:
        shown, key = nicks.prepare(raw)
    except nicks.NickError:
        raise StanzaError("bad-request", text="not a valid roomnick (RFC 8266)") from None
    if len(shown) > room.service.options.max_nick_length:
        raise StanzaError("bad-request", text="roomnick is too long")
    return shown, key


def _stored(room: Room, c: Change) -> StoredAffiliation:
    new = c.item.getAttribute("affiliation") or A.NONE
    return StoredAffiliation(c.bare, new, _nick(room, c.bare, new, c.nick),
                             c.reason if new == A.OUTCAST else None)


def _nick(room: Room, bare: str, new: str, nick: str | None) -> str | None:
    """The reserved nick after a change: outcasts lose theirs (§9.1), "" unsets it."""
    if new in (A.OUTCAST, A.NONE):
        return None
    if nick is None:
        old = room.affiliations.get(bare)
        return old.nick if old is not None else None
    return nick or None


def change_role(room: Room, actor: Occupant | None, target: Occupant, new_role: str,
                reason: str | None, later: Later | None = None) -> None:
    """Apply a checked role change: a kick (§8.2, status 307) or a new role announced to
    everyone (§8.3, §8.4, §9.6, §9.7). A role given in a moderated room is remembered for
    the user's next visit (§5.1)."""
    actor_nick = actor.nick if actor is not None else None
    if new_role == R.ROLE_NONE:
        room.remove(target, unavailable(), codes=(ns.KICKED,), actor=actor_nick, reason=reason,
                    later=later)
        return
    target.role = new_role
    if room.config.moderated and room.affiliation_of(target) == A.NONE:
        room.voice[target.bare.bare_str] = new_role
    room.broadcast_presence(target, room.info(target, nick=target.nick, reason=reason),
                            target.sessions.get(target.jid))


def apply_affiliation(service: MucService, room: Room, actor_nick: str | None, bare: str,
                      new: str, reason: str | None, nick: str | None, requester: JID,
                      later: Later | None = None) -> None:
    """Apply a checked affiliation change to the room and its occupants: banned users are
    removed (301, §9.1), so are non-members of a members-only room (321, §9.4); the others
    are shown with their new affiliation and role (§9.3, §10.3, ...). A new member of a
    members-only room is invited (§9.5)."""
    old = room.affiliation(bare)
    room.set_affiliation(bare, new, _nick(room, bare, new, nick),
                         reason if new == A.OUTCAST else None)
    if new != A.OUTCAST:
        room.voice.pop(bare, None)
    present = room.occupant_of(JID.parse(bare))
    for occ in present:
        if new == A.OUTCAST:
            room.remove(occ, unavailable(), codes=(ns.BANNED,), actor=actor_nick,
                        reason=reason, later=later)
        elif room.config.members_only and A.rank(new) < A.rank(A.MEMBER):
            room.remove(occ, unavailable(), codes=(ns.AFFILIATION_REMOVED,), actor=actor_nick,
                        reason=reason, later=later)
        else:
            occ.role = R.role_after_affiliation_change(occ.role, old, new,
                                                       room.config.moderated)
            room.broadcast_presence(occ, room.info(occ, reason=reason),
                                    occ.sessions.get(occ.jid))
    if room.config.members_only and new == A.MEMBER and old == A.NONE and not present:
        send_invitation(service, room, requester.bare_str, bare, None)
