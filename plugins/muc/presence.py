"""Presence to a room: entering (§7.2), changing nickname (§7.6) or availability (§7.7),
exiting (§7.14), and error replies that reveal an occupant is gone (§18.1.2 ghosts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.muc import affiliations as A
from plugins.muc import mam, nicks, ns
from plugins.muc import roles as R
from plugins.muc.history import HistoryRequest, parse_request
from plugins.muc.occupant import ItemInfo, Occupant, room_presence, unavailable
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError, parse_error
from xmppd.jid import JID
from xmppd.timeutil import format_datetime

if TYPE_CHECKING:
    from plugins.muc.room import Room
    from plugins.muc.service import MucService


async def handle(service: MucService, room: Room | None, ev: H.StanzaEvent) -> None:
    s, frm, to = ev.stanza, ev.from_, ev.to
    ptype = s.getAttribute("type")
    if ptype == "error":
        if room is not None:
            occupant_error(service, room, frm, s)
        return
    if ptype not in (None, "unavailable") or not to.local:
        return  # §17.2.2/§17.2.4: probes, subscriptions and presence to the service: ignored
    if not to.resource:
        if ptype is None:  # §7.2.1 "No Nickname Specified"
            raise StanzaError("jid-malformed", by=to.bare_str, text="a roomnick is required")
        return
    if ptype == "unavailable":
        occ = room.sessions.get(frm) if room is not None else None
        if room is not None and occ is not None:  # §17.2.4: else silently ignored
            leave(service, room, occ, frm, s)
        return
    await available(service, room, ev)


def occupant_error(service: MucService, room: Room, frm: JID, stanza: Element) -> None:
    """§18.1.2: a delivery error from an occupant's real JID removes that session, with
    status code 333 (§14.1). A local user whose session is still bound is alive (the error
    came from a privacy rule such as XEP-0191 blocking), so it stays."""
    occ = room.sessions.get(frm)
    parsed = parse_error(stanza)
    if occ is None or parsed is None or parsed[1] not in ns.KICKABLE_ERRORS:
        return
    if service.host.is_local(frm.domain) and service.host.session(frm) is not None:
        return
    room.remove_session(occ, frm, unavailable(), codes=(ns.ERROR_REMOVED,))


def leave(service: MucService, room: Room, occ: Occupant, full: JID, stanza: Element) -> None:
    """§7.14: exit, with the occupant's own exit message (§17.2.10)."""
    if room.locked and len(room.occupants) == 1 and len(occ.sessions) == 1:
        # §10.1.3: the owner left before configuring the room: it is destroyed, and the
        # owner is told so with a <destroy/> (§10.9).
        info = room.info(occ, role=R.ROLE_NONE, destroy=st.make("destroy", ns.USER))
        room.broadcast_presence(occ, info, unavailable(stanza))
        room.forget(occ)
        return
    room.remove_session(occ, full, unavailable(stanza))


def check_nick(service: MucService, nick: str) -> tuple[str, str]:
    """(shown nick, comparison key) of a requested roomnick under the RFC 8266 Nickname
    profile (nicks.py), on top of the RFC 7622 resourcepart profile the router applied.

    A nick the profile refuses, or that maps to nothing (only spaces: XEP-0045 business
    rules #bizrules-jids "MUST NOT allow empty or invisible Room Nicknames", RFC 8266 §2.3
    "not zero bytes in length"), is ``jid-malformed`` (modify): the nick is the resourcepart
    of the occupant JID the stanza was addressed to, RFC 6120 §8.3.3.8 names that condition
    for an address that violates the rules for it, and XEP-0045 §7.2.1 uses it for a join
    without a nick (which is what an all-space nick becomes). ``not-acceptable`` is what
    XEP-0045 keeps for nicks refused by policy (locked-down nicks, §7.6, §7.12), not for
    malformed ones. A length limit guards against long-nick abuse (#security-dos)."""
    try:
        shown, key = nicks.prepare(nick)
    except nicks.NickError:
        raise StanzaError("jid-malformed", text="not a valid roomnick (RFC 8266)") from None
    if len(shown) > service.options.max_nick_length:
        raise StanzaError("jid-malformed", text="roomnick is too long")
    return shown, key


def nick_modified(stanza: Element, nick: str) -> bool:
    """Status 210: the nick differs from what the client asked for (RFC 7622 preparation
    changed it)."""
    raw = stanza.getAttribute("to", "")
    return "/" in raw and raw.split("/", 1)[1] != nick


async def available(service: MucService, room: Room | None, ev: H.StanzaEvent) -> None:
    s, frm, to = ev.stanza, ev.from_, ev.to
    x = st.child(s, "x", ns.MUC)
    occ = room.sessions.get(frm) if room is not None else None
    if room is not None and occ is not None:
        # Presence to one's own occupant JID is the common case: no PRECIS for it.
        nick, key = (occ.nick, occ.key) if to.resource == occ.nick else check_nick(
            service, to.resource)
        if nick == occ.nick:
            if x is not None:
                await resync(service, room, occ, frm, s, x)
            else:
                status_change(service, room, occ, frm, s)
        else:
            change_nick(service, room, occ, frm, nick, key, s)
        return
    by = to.bare_str
    if x is None:
        # §7.2.22: presence without the MUC extension from a non-occupant is answered with
        # an explicit kick (110, 307, 333) so a desynchronised client notices.
        info = ItemInfo(A.NONE, R.ROLE_NONE, reason="You are not in the room.",
                        codes=(ns.SELF, ns.KICKED, ns.ERROR_REMOVED))
        p = room_presence(unavailable(), f"{by}/{to.resource}", info, None)
        p.attributes["to"] = str(frm)
        await service.host.send(p)
        return
    nick, key = check_nick(service, to.resource)
    history = parse_request(x)
    if room is not None and not room.history_loaded:
        await mam.load_history(service, room)
    room = service.rooms.get(to.local)  # the room may have gone or come meanwhile
    created = False
    if room is None:
        room = create(service, to, frm)
        created = True
    else:
        occ = admit(service, room, frm, key, x)
        if occ is not None:  # another session of the same user and nick (§7.2.9)
            join_session(service, room, occ, frm, s, history)
            return
    occ = enter(service, room, frm, nick, key, s)
    codes = entry_codes(room)  # with 110, added for every self-presence
    if created:
        codes.append(ns.CREATED)
    if nick_modified(s, nick):
        codes.append(ns.NICK_MODIFIED)
    room.send_roster(occ, frm)
    room.broadcast_presence(occ, room.info(occ), occ.sessions[frm], self_codes=tuple(codes),
                            self_id=s.getAttribute("id"))
    send_history_and_subject(service, room, frm, history)


def entry_codes(room: Room) -> list[int]:
    """What a newcomer is warned about: real JIDs are public (100, §7.2.4), discussions are
    kept where others can read them (170, §7.2.12)."""
    codes = []
    if room.config.non_anonymous:
        codes.append(ns.NON_ANONYMOUS)
    if room.config.logged:
        codes.append(ns.LOGGING_ON)
    return codes


def create(service: MucService, to: JID, frm: JID) -> Room:
    """§10.1.1: room creation, within the service's policy (not-allowed otherwise)."""
    opts = service.options
    by = to.bare_str
    if opts.room_creation == "local" and not service.host.is_local(frm.domain):
        raise StanzaError("not-allowed", by=by, text="only local users may create rooms")
    if len(to.local) > 255:
        raise StanzaError("not-allowed", by=by, text="room name too long")
    if service.owned_by(frm.bare) >= opts.max_rooms_per_user:
        raise StanzaError("not-allowed", by=by, text="you own too many rooms")
    return service.create(to.local, frm)


def admit(service: MucService, room: Room, frm: JID, key: str, x: Element
          ) -> Occupant | None:
    """The §7.2 entry checks, in the order of the §7.2.19 table; returns the occupant when
    the user is already in the room with this nick from another session.

    Nicks are compared by their RFC 8266 comparison key (nicks.py), so a look-alike of an
    occupant's nick or of a reserved one is a §7.2.9 conflict. The same user (bare JID)
    asking for a look-alike of its own nick joins its occupant as one more session (§7.2.9
    multi-session: "the same roomnick"), under the nick the room already shows, and its
    self-presence carries 210 (§7.2.3, the service changed the nick)."""
    by = room.jid.bare_str
    aff = room.affiliation(frm.bare)
    if room.locked and aff != A.OWNER:
        raise StanzaError("item-not-found", by=by, text="the room is not configured yet")
    if aff == A.OUTCAST:
        raise StanzaError("forbidden", by=by, text="you are banned from this room")
    if room.config.members_only and A.rank(aff) < A.rank(A.MEMBER):
        raise StanzaError("registration-required", by=by, text="members only")
    if room.config.password_protected and aff != A.OWNER and (
            st.child_text(x, "password", ns.MUC) != room.config.password):
        raise StanzaError("not-authorized", by=by, text="a password is required")
    present = room.nick_keys.get(key)
    if present is not None:
        if present.bare == frm.bare:
            return present
        raise StanzaError("conflict", by=by, text="that nickname is in use")
    holder = room.nick_reserved_by(key)
    if holder is not None and holder != frm.bare_str:
        raise StanzaError("conflict", by=by, text="that nickname is reserved")
    if not room.bucket(frm.bare).take(service.now()):  # §20.5: join/leave cycling
        raise StanzaError("resource-constraint", by=by, text="entering too often")
    count = len(room.occupants)
    limit = room.config.max_users
    if A.rank(aff) >= A.rank(A.ADMIN):
        limit = service.options.max_occupants  # §7.2.10: admins and owners get in
    if count >= limit:
        raise StanzaError("service-unavailable", type_="wait", by=by, text="the room is full")
    return None


def enter(service: MucService, room: Room, frm: JID, nick: str, key: str,
          stanza: Element) -> Occupant:
    aff = room.affiliation(frm.bare)
    role = R.default_role(aff, room.config.moderated)
    if room.config.moderated and aff == A.NONE:
        role = room.voice.get(frm.bare_str, role)  # §5.1: roles persist in moderated rooms
    occ = Occupant(nick, frm.bare, role, room.occupant_id(frm.bare), key)
    occ.set_presence(frm, stanza)
    room.add_occupant(occ)
    room.sessions[frm] = occ
    service.reindex(frm, room)
    return occ


def join_session(service: MucService, room: Room, occ: Occupant, frm: JID, stanza: Element,
                 history: HistoryRequest) -> None:
    occ.set_presence(frm, stanza)
    room.sessions[frm] = occ
    service.reindex(frm, room)
    sync(service, room, occ, frm, stanza, history)


async def resync(service: MucService, room: Room, occ: Occupant, frm: JID, stanza: Element,
                 x: Element) -> None:
    """§7.2.1 / §17.2.3: a join from a session already in the room is a request for full
    synchronisation: it gets everything a new occupant gets."""
    occ.set_presence(frm, stanza)
    sync(service, room, occ, frm, stanza, parse_request(x))


def sync(service: MucService, room: Room, occ: Occupant, frm: JID, stanza: Element,
         history: HistoryRequest) -> None:
    codes = entry_codes(room)
    if nick_modified(stanza, occ.nick):  # joined the own occupant under a look-alike nick
        codes.append(ns.NICK_MODIFIED)
    room.send_roster(occ, frm)
    room.broadcast_presence(occ, room.info(occ), occ.sessions[frm], self_codes=tuple(codes),
                            self_id=stanza.getAttribute("id"), only_session=frm)
    send_history_and_subject(service, room, frm, history)


def send_history_and_subject(service: MucService, room: Room, to: JID,
                             history: HistoryRequest) -> None:
    """§7.2.13-§7.2.15: history, then the subject (always; empty if none)."""
    for el in room.history.select(history, service.now_micros(), str(to)):
        room.send(el)
    subject = room.subject
    frm = room.nick_jid(subject.nick) if subject.nick else room.jid.bare_str
    m = st.make("message", attrs={"from": frm, "to": str(to), "type": "groupchat",
                                  "id": service.new_id()})
    st.add(m, "subject", text_=subject.text)
    if subject.stamp:
        st.stamp_delay(m, room.jid.bare_str, format_datetime(subject.stamp))
    room.send(m)


def status_change(service: MucService, room: Room, occ: Occupant, frm: JID,
                  stanza: Element) -> None:
    """§7.7: new availability, reflected to everyone (rate limited, §20.5)."""
    if not room.bucket(occ.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=room.jid.bare_str, text="too many changes")
    occ.set_presence(frm, stanza)
    room.broadcast_presence(occ, room.info(occ), occ.sessions[frm])


def change_nick(service: MucService, room: Room, occ: Occupant, frm: JID, new: str,
                key: str, stanza: Element) -> None:
    """§7.6: unavailable from the old nick with the new one and 303, then available from
    the new nick; every session of the occupant follows.

    The new nick (already through check_nick) conflicts when another occupant's nick or a
    nick reserved by another user has the same RFC 8266 comparison key, as on entry. The
    occupant's own key is no conflict: "alice" may become "Alice" (§7.6 "if the bare JID of
    the present occupant matches ... the service MAY allow the nickname change"). Another
    occupant of the same user is a conflict all the same: merging two occupants is not a
    nick change."""
    by = room.jid.bare_str
    present = room.nick_keys.get(key)
    if present is not None and present is not occ:
        raise StanzaError("conflict", by=by, text="that nickname is in use")
    holder = room.nick_reserved_by(key)
    if holder is not None and holder != occ.bare.bare_str:
        raise StanzaError("conflict", by=by, text="that nickname is reserved")
    if not room.bucket(occ.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=by, text="too many changes")
    room.broadcast_presence(occ, room.info(occ, nick=new, codes=(ns.NEW_NICK,)), unavailable())
    room.rename(occ, new, key)
    occ.set_presence(frm, stanza)
    modified = (ns.NICK_MODIFIED,) if nick_modified(stanza, new) else ()
    room.broadcast_presence(occ, room.info(occ), occ.sessions[frm], self_codes=modified,
                            self_id=stanza.getAttribute("id"))
