"""Messages to a room: to all occupants (§7.4), the subject (§8.1), private messages (§7.5),
and the message-borne protocols: invitations (invites.py), voice requests (voice.py).

A reflected groupchat message carries the client's 'id' (§7.4, muc#stable_id), a XEP-0359
<stanza-id by='room'/> under which the room archive keeps it, and the sender's XEP-0421
<occupant-id/>. It is archived (and committed) before it is reflected. A XEP-0424
retraction first turns the retracted message into a tombstone (moderation.py).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.hints import chat_state_only, message_type
from plugins.muc import invites, mam, moderation, ns, voice
from plugins.muc import roles as R
from plugins.muc.fanout import Template
from plugins.muc.occupant import Occupant
from plugins.muc.presence import occupant_error
from plugins.muc.room import Subject
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID

if TYPE_CHECKING:
    from plugins.muc.room import Room
    from plugins.muc.service import MucService


async def handle(service: MucService, room: Room | None, ev: H.StanzaEvent) -> None:
    s, frm, to = ev.stanza, ev.from_, ev.to
    mtype = message_type(s)
    if mtype == "error":
        if room is not None:
            occupant_error(service, room, frm, s)
        return
    if not to.local:
        raise StanzaError("service-unavailable", text="the service itself takes no messages")
    by = to.bare_str
    if room is None or (room.locked and frm not in room.sessions):
        raise StanzaError("item-not-found", by=by, text="no such room")  # §17.1.3
    if to.resource:
        await private_message(service, room, ev)
        return
    if mtype == "groupchat":
        await groupchat(service, room, ev)
        return
    x = st.child(s, "x", ns.USER)
    if x is not None and (st.child(x, "invite", ns.USER) is not None
                          or st.child(x, "decline", ns.USER) is not None):
        await invites.handle(service, room, ev, x)
        return
    form = forms.find(s, ns.REQUEST)
    if form is not None:
        await voice.handle(service, room, ev, form)
        return
    # §17.1.1: a message to the room that is not of type groupchat
    raise StanzaError("bad-request", by=by, text="messages to the room must be of type groupchat")


def sender(room: Room, frm: JID) -> Occupant:
    occ = room.sessions.get(frm)
    if occ is None:  # §7.4 / §7.5: only occupants speak in the room
        raise StanzaError("not-acceptable", by=room.jid.bare_str,
                          text="you are not an occupant of this room")
    return occ


def check_limits(service: MucService, room: Room, occ: Occupant, stanza: Element) -> None:
    """§20.5: message size and rate per occupant; one occupant's flood is refused with
    resource-constraint (type wait) and does not slow anyone else down."""
    by = room.jid.bare_str
    text = st.serialize(stanza)
    size = len(text) if text.isascii() else len(text.encode())  # the limit is in bytes
    if size > service.options.max_message_size:
        raise StanzaError("policy-violation", by=by, text="message too large")
    if not room.bucket(occ.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=by, text="too many messages, slow down")


def reflected(room: Room, occ: Occupant, stanza: Element, mtype: str, sid: str | None,
              msg_id: str) -> Element:
    """The message as the room sends it: from the occupant JID, the client's payload minus
    what only the room may add (muc#user data, stanza-ids claiming to be the room's,
    occupant-ids: XEP-0359 §3.1, XEP-0421 §4), plus the room's own."""
    out = st.make("message", attrs={"from": room.nick_jid(occ.nick), "type": mtype,
                                    "id": msg_id})
    lang = stanza.attributes.get((st.NS_XML, "lang"))
    if lang:
        out.attributes[(st.NS_XML, "lang")] = lang
    room_jid = room.jid.bare_str
    for c in stanza.children:
        if not isinstance(c, Element):
            continue
        if (c.uri == ns.USER and c.name == "x") or (c.uri == ns.OCCUPANT_ID) or (
                c.uri == ns.SID and c.name == "stanza-id" and c.getAttribute("by") == room_jid):
            continue
        st.append(out, c)
    if sid is not None:
        st.add(out, "stanza-id", ns.SID, attrs={"id": sid, "by": room_jid})
    st.add(out, "occupant-id", ns.OCCUPANT_ID, attrs={"id": occ.occupant_id})
    return out


async def groupchat(service: MucService, room: Room, ev: H.StanzaEvent) -> None:
    s, frm = ev.stanza, ev.from_
    occ = sender(room, frm)
    by = room.jid.bare_str
    subject = st.child(s, "subject", st.NS_CLIENT)
    body = st.child(s, "body", st.NS_CLIENT)
    is_subject = subject is not None and body is None and (
        st.child(s, "thread", st.NS_CLIENT) is None)
    if is_subject:
        if not R.may_change_subject(occ.role, room.config.change_subject):
            raise StanzaError("forbidden", by=by, text="you may not change the subject")
    elif not R.may_speak(occ.role):
        raise StanzaError("forbidden", by=by, text="visitors have no voice in this room")
    check_limits(service, room, occ, s)
    if not room.history_loaded:
        await mam.load_history(service, room)
    msg_id = s.getAttribute("id") or service.new_id()
    retraction = await moderation.own_retraction(service, room, occ, s, msg_id)
    sid = secrets.token_urlsafe(12)
    out = reflected(room, occ, s, "groupchat", sid, msg_id)
    stamp = service.now_micros()
    if is_subject:
        assert subject is not None
        text = st.text(subject)
        if room.config.persistent and not room.locked:
            await service.host.storage.rooms.set_subject(service.domain, room.name, text,
                                                         occ.nick, stamp)
        room.subject = Subject(text, occ.nick, stamp)
    if room.config.archiving and (body is not None or is_subject or retraction):
        mam.append(service, room, sid, occ.nick, out, frm, stamp, ev.origin)
    if room.destroyed:
        return
    if body is not None:
        room.history.add(out, room.jid.bare_str, stamp, frm.bare_str)
    room.broadcast(Template(out, serialize=not chat_state_only(out)))


async def private_message(service: MucService, room: Room, ev: H.StanzaEvent) -> None:
    """§7.5: to every session of the addressed occupant (RECOMMENDED in §7.2.9), from the
    sender's occupant JID, marked with <x xmlns='...muc#user'/> (for XEP-0280 carbons)."""
    s, frm, to = ev.stanza, ev.from_, ev.to
    by = room.jid.bare_str
    mtype = message_type(s)
    if mtype == "groupchat":
        raise StanzaError("bad-request", by=by, text="private messages are not groupchat")
    occ = sender(room, frm)
    target = room.occupants.get(to.resource)
    if target is None:
        raise StanzaError("item-not-found", by=by, text="no such occupant")
    if not R.may_send_pm(occ.role, room.config.allow_pm):
        raise StanzaError("forbidden", by=by, text="private messages are not allowed here")
    check_limits(service, room, occ, s)
    out = reflected(room, occ, s, s.getAttribute("type") or "normal", None,
                    s.getAttribute("id") or service.new_id())
    if s.getAttribute("type") is None:
        del out.attributes["type"]
    st.add(out, "x", ns.USER)
    room.send_to_occupant(target, Template(out, serialize=False))
