"""Mediated invitations and declines (XEP-0045 §7.8.2). Direct invitations (XEP-0249) go
from user to user and need nothing from the room.

Who may invite follows §5.1.1 ("Invite Other Users": any occupant by default) and, in a
members-only room, §9.5: admins and owners, and members too when muc#roomconfig_allowinvites
is set; an invitation to a members-only room makes the invitee a member, since otherwise it
could not be accepted. The room remembers who invited whom, and forwards a decline only to
someone who did invite the decliner, so a decline cannot be used to make the room message
arbitrary addresses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.muc import affiliations as A
from plugins.muc import ns
from storage.rooms import StoredAffiliation
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError

if TYPE_CHECKING:
    from plugins.muc.room import Room
    from plugins.muc.service import MucService

MAX_PENDING = 1000  # remembered invitations per room


async def handle(service: MucService, room: Room, ev: H.StanzaEvent, x: Element) -> None:
    invites = list(st.children(x, "invite", ns.USER))
    if invites:
        await invite(service, room, ev, invites)
    for d in st.children(x, "decline", ns.USER):
        decline(service, room, ev, d)


def _jid(raw: str | None, what: str) -> JID:
    if not raw:
        raise StanzaError("bad-request", text=f"the {what} needs a 'to'")
    try:
        return JID.parse(raw)
    except JIDError:
        raise StanzaError("jid-malformed", text=f"{raw!r} is not a JID") from None


async def invite(service: MucService, room: Room, ev: H.StanzaEvent,
                 invites: list[Element]) -> None:
    by = room.jid.bare_str
    occ = room.sessions.get(ev.from_)
    if occ is None:
        raise StanzaError("not-acceptable", by=by, text="you are not an occupant of this room")
    aff = room.affiliation(ev.from_.bare)
    members_only = room.config.members_only
    if members_only and A.rank(aff) < A.rank(A.ADMIN) and not (
            aff == A.MEMBER and room.config.allow_invites):
        raise StanzaError("forbidden", by=by, text="only admins invite to this room")
    if not room.bucket(occ.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=by, text="too many invitations")
    targets = [_jid(i.getAttribute("to"), "invitation") for i in invites]
    for target in targets:
        if target.domain == service.host.domain and target.local and not (
                await service.host.account_exists(target.bare)):
            raise StanzaError("item-not-found", by=by, text=f"no user {target.bare_str}")
    added = [StoredAffiliation(t.bare_str, A.MEMBER) for t in targets
             if members_only and room.affiliation(t.bare) == A.NONE]
    if added and room.config.persistent and not room.locked:
        await service.host.storage.rooms.set_affiliations(service.domain, room.name, added)
    for a in added:
        room.set_affiliation(a.jid, A.MEMBER)
    for inv, target in zip(invites, targets, strict=True):
        send_invitation(service, room, ev.from_.bare_str, str(target), inv,
                        ev.stanza.getAttribute("id"))


def send_invitation(service: MucService, room: Room, inviter: str, to: str,
                    original: Element | None, msg_id: str | None = None) -> None:
    """The room's invitation: 'from' on <invite/> is the inviter's bare JID, the reason and
    <continue/> (§7.9) are kept, and the password of a password-protected room is added."""
    invitee = JID.parse(to).bare_str
    if invitee in room.invited or len(room.invited) < MAX_PENDING:
        room.invited.setdefault(invitee, set()).add(inviter)
    m = st.make("message", attrs={"from": room.jid.bare_str, "to": to,
                                  "id": msg_id or service.new_id()})
    x = st.add(m, "x", ns.USER)
    inv = st.add(x, "invite", ns.USER, attrs={"from": inviter})
    if original is not None:
        for c in st.children(original, ns=ns.USER):
            if c.name in ("reason", "continue"):
                st.append(inv, st.copy(c))
    if room.config.password_protected:
        st.add(x, "password", ns.USER, room.config.password)
    room.send(m)


def decline(service: MucService, room: Room, ev: H.StanzaEvent, d: Element) -> None:
    by = room.jid.bare_str
    target = _jid(d.getAttribute("to"), "decline")
    if target.bare == room.jid and target.resource:  # the inviter's occupant JID
        occ = room.occupants.get(target.resource)
        recipients = [str(s) for s in occ.sessions] if occ is not None else []
        inviter = occ.bare.bare_str if occ is not None else ""
    else:
        recipients = [str(target)]
        inviter = target.bare_str
    decliner = ev.from_.bare_str
    pending = room.invited.get(decliner, set())
    if inviter not in pending or not recipients:
        raise StanzaError("item-not-found", by=by, text="no invitation from them to decline")
    pending.discard(inviter)
    if not pending:
        room.invited.pop(decliner, None)
    m = st.make("message", attrs={"from": by, "id": ev.stanza.getAttribute("id")
                                  or service.new_id()})
    x = st.add(m, "x", ns.USER)
    out = st.add(x, "decline", ns.USER, attrs={"from": decliner})
    reason = st.child(d, "reason", ns.USER)
    if reason is not None:
        st.append(out, st.copy(reason))
    for to in recipients:
        m2 = st.shallow_copy(m)
        m2.attributes["to"] = to
        room.send(m2)
