"""Retracting room messages: by a moderator (XEP-0425 0.3.0 Moderated Message Retraction) or
by their author (XEP-0424 0.4.2 Message Retraction).

A message is named by the XEP-0359 stanza id the room gave it (XEP-0424 §5.1 "For messages
of type 'groupchat', the ID assigned to the stanza by the group chat itself must be used").
The room finds it in its archive (even one no longer kept: old entries stay) or, failing
that, in the discussion history. A retracted message is replaced in the archive by a
tombstone (XEP-0424 §4, XEP-0425 §4) and leaves the history, so it is not replayed to
newcomers (XEP-0424 §5); the retraction is archived and sent to every occupant.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.mam import retraction as rt
from plugins.muc import admin, mam, ns
from plugins.muc import affiliations as A
from plugins.muc import roles as R
from plugins.muc.fanout import Template
from plugins.muc.occupant import Occupant
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from plugins.muc.iq import Request
    from plugins.muc.room import Room
    from plugins.muc.service import MucService


@dataclass
class Target:
    stored: Element | None  # the archive entry, None if the message is only in the history
    author: str | None  # the sender's real bare JID; None for the room's own messages
    retracted: bool  # already a tombstone


def _author(stored: Element) -> str | None:
    """The real bare JID the room archived with the message (mam.stored_form); None for
    the room's own messages (moderation notices), which have none."""
    x = st.child(stored, "x", ns.USER)
    item = st.child(x, "item", ns.USER) if x is not None else None
    try:
        return JID.parse(item.getAttribute("jid", "")).bare_str if item is not None else None
    except JIDError:
        return None


async def find(service: MucService, room: Room, sid: str) -> Target | None:
    entry = await service.host.storage.archive.get(service.domain, room.name, sid)
    if entry is not None:
        el = parse_fragment(entry.stanza)
        return Target(el, _author(el), rt.is_tombstone(el))
    h = room.history.find(sid)
    return Target(None, h.author or None, False) if h is not None else None


async def erase(service: MucService, room: Room, sid: str, target: Target, retraction_id: str,
                stamp: int, inside: Iterable[Element] = ()) -> None:
    """The tombstone replaces the archived message (committed before anyone is told), and
    the message leaves the history."""
    if target.stored is not None:
        tomb = rt.tombstone(target.stored, retraction_id, stamp, inside)
        await service.host.storage.archive.replace(service.domain, room.name, sid,
                                                   st.serialize(tomb))
    room.history.drop(sid)


# -- XEP-0425: a moderator retracts ------------------------------------------------------------
def moderated(by: str | None, occupant_id: str) -> Element:
    """<moderated/> (XEP-0425 §3.1, §4): the moderator's occupant JID and XEP-0421 id."""
    el = st.make("moderated", ns.MODERATE, attrs={"by": by} if by else None)
    st.add(el, "occupant-id", ns.OCCUPANT_ID, attrs={"id": occupant_id})
    return el


def notice(room: Room, notice_id: str, sid: str, by: str | None, occupant_id: str,
           reason: str | None) -> Element:
    """XEP-0425 §3.1 Example 4: from the room's bare JID, a XEP-0424 <retract/> with
    <moderated/> inside. It also carries the 0.2.1 form (an XEP-0422 <apply-to/>), as
    Prosody's mod_muc_moderation does, for clients that know only that version."""
    m = st.make("message", attrs={"from": room.jid.bare_str, "type": "groupchat",
                                  "id": notice_id})
    r = st.add(m, "retract", ns.RETRACT, attrs={"id": sid})
    st.append(r, moderated(by, occupant_id))
    if reason:
        st.add(r, "reason", ns.RETRACT, reason)
    legacy = st.add(st.add(m, "apply-to", ns.FASTEN, attrs={"id": sid}), "moderated",
                    ns.MODERATE_0, attrs={"by": by or room.jid.bare_str})
    st.add(legacy, "retract", ns.RETRACT_0)
    if reason:
        st.add(legacy, "reason", ns.MODERATE_0, reason)
    return m


async def moderate(service: MucService, room: Room, req: Request) -> None:
    """<moderate id='stanza id'><retract/><reason/></moderate> (XEP-0425 §3)."""
    p, by = req.payload, room.jid.bare_str
    sid = p.getAttribute("id")
    if not sid:
        raise StanzaError("bad-request", by=by, text="<moderate/> needs the message's 'id'")
    if st.child(p, "retract", ns.RETRACT) is None:  # §1: other actions are out of its scope
        raise StanzaError("feature-not-implemented", by=by, text="only retraction is supported")
    reason = st.child_text(p, "reason", ns.MODERATE) or None
    aff, role, occ = admin.actor(room, req.from_)
    # The moderator role (§3.2). An owner or admin who is not in the room may too: they are
    # moderators whenever present (XEP-0045 §5.1.2); Prosody's mod_muc_moderation decides
    # the same way. The error type is that of §3.2 Example 6.
    if role != R.MODERATOR and aff not in (A.OWNER, A.ADMIN):
        raise StanzaError("forbidden", type_="modify", by=by,
                          text="Only moderators are allowed to moderate other participants' "
                               "messages")
    if not room.bucket(req.from_.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=by, text="too many requests")
    if reason and len(reason.encode()) > service.options.max_message_size:
        raise StanzaError("policy-violation", by=by, text="reason too long")
    target = await find(service, room, sid)
    if target is None:
        raise StanzaError("item-not-found", by=by, text="no message with this id")
    if target.author is None:
        raise StanzaError("not-acceptable", by=by, text="not an occupant's message")
    if target.retracted:
        return None  # already done (a repeated request): nothing changes, nobody is told
    actor = _actor_jid(room, occ, req.from_)
    oid = room.occupant_id(req.from_.bare)
    notice_id, stamp = service.new_id(), service.now_micros()
    inside = [moderated(actor, oid)]
    if reason:  # XEP-0425 §4 Example 7: the reason is kept in the tombstone
        el = st.make("reason", ns.RETRACT)
        el.addContent(reason)
        inside.append(el)
    await erase(service, room, sid, target, notice_id, stamp, inside)
    out = notice(room, notice_id, sid, actor, oid, reason)
    if room.config.archiving:  # XEP-0424 §5: the retraction is archived too
        archive_id = secrets.token_urlsafe(12)
        st.add(out, "stanza-id", ns.SID, attrs={"id": archive_id, "by": room.jid.bare_str})
        await mam.append_notice(service, room, archive_id, out, stamp)
    if not room.destroyed:
        room.broadcast(Template(out))
    return None


def _actor_jid(room: Room, occ: Occupant | None, requester: JID) -> str | None:
    """The moderator's occupant JID; for an owner or admin who is not in the room, the one
    of their reserved nickname, if any (else the notice does not name them, §4)."""
    if occ is not None:
        return room.nick_jid(occ.nick)
    a = room.affiliations.get(requester.bare_str)
    return room.nick_jid(a.nick) if a is not None and a.nick else None


# -- XEP-0424: the author retracts -------------------------------------------------------------
async def own_retraction(service: MucService, room: Room, occ: Occupant, stanza: Element,
                         msg_id: str) -> bool:
    """Called before an occupant's groupchat message is archived and reflected; True if it
    is a retraction. Refused: a moderation notice from an occupant (XEP-0425 §5: only those
    from the room are legitimate), and the retraction of a message the room knows someone
    else sent (XEP-0424 §5: "MUST only be processed when both the original message and the
    retraction request are received from the same" sender). One the room does not know is
    reflected unchanged: the recipients' clients decide (they check the XEP-0421 id)."""
    by = room.jid.bare_str
    r = rt.retract_of(stanza)
    legacy = st.child(stanza, "apply-to", ns.FASTEN)
    if (r is not None and st.child(r, "moderated", ns.MODERATE) is not None) or (
            legacy is not None and st.child(legacy, "moderated", ns.MODERATE_0) is not None):
        raise StanzaError("forbidden", by=by, text="only the room sends moderation notices")
    if r is None:
        return False
    sid = r.getAttribute("id")
    if not sid:
        raise StanzaError("bad-request", by=by, text="<retract/> needs the message's 'id'")
    target = await find(service, room, sid)
    if target is None or target.retracted:
        return True
    if target.author != occ.bare.bare_str:
        raise StanzaError("forbidden", by=by,
                          text="only the author may retract a message (moderators: XEP-0425)")
    await erase(service, room, sid, target, msg_id, service.now_micros())
    return True
