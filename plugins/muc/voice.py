"""Requesting voice (XEP-0045 §7.13) and approving voice requests (§8.6).

A visitor in a moderated room submits a muc#request form asking for the participant role;
every moderator gets an approval form built from it; a moderator who submits it with
muc#request_allow true grants voice exactly as with a muc#admin role change (§8.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugins.muc import ns
from plugins.muc import roles as R
from plugins.muc.admin import change_role
from plugins.muc.fanout import Template
from xmppd import forms
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError

if TYPE_CHECKING:
    from plugins.muc.room import Room
    from plugins.muc.service import MucService


async def handle(service: MucService, room: Room, ev: H.StanzaEvent, form: forms.Form) -> None:
    by = room.jid.bare_str
    if form.type != "submit":
        raise StanzaError("bad-request", by=by, text="submit the muc#request form")
    if "muc#request_allow" in form.fields:
        approve(service, room, ev, form)
    else:
        request(service, room, ev, form)


def request(service: MucService, room: Room, ev: H.StanzaEvent, form: forms.Form) -> None:
    by = room.jid.bare_str
    occ = room.sessions.get(ev.from_)
    if occ is None:
        raise StanzaError("not-acceptable", by=by, text="you are not an occupant of this room")
    if form.value("muc#role") != R.PARTICIPANT:
        raise StanzaError("bad-request", by=by, text="only the participant role can be asked")
    if occ.role != R.VISITOR:
        raise StanzaError("not-allowed", by=by, text="you already have voice")
    if not room.bucket(occ.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=by, text="too many requests")
    approval = forms.Form("form", title="Voice request")
    approval.instructions.append(
        'To approve this request for voice, select the "Grant voice to this person?" '
        "checkbox and click OK. To skip this request, click the cancel button.")
    approval.add("FORM_TYPE", "hidden", ns.REQUEST)
    approval.add("muc#role", "list-single", R.PARTICIPANT, "Requested role",
                 options=[("Participant", R.PARTICIPANT)])
    approval.add("muc#jid", "jid-single", str(occ.jid), "User ID")
    approval.add("muc#roomnick", "text-single", occ.nick, "Room Nickname")
    approval.add("muc#request_allow", "boolean", "false", "Grant voice to this person?")
    m = st.make("message", attrs={"from": by, "id": service.new_id()})
    st.append(m, approval.to_element())
    tpl = Template(m, serialize=False)
    for mod in room.occupants.values():
        if mod.role == R.MODERATOR:
            room.send_to_occupant(mod, tpl)


def approve(service: MucService, room: Room, ev: H.StanzaEvent, form: forms.Form) -> None:
    by = room.jid.bare_str
    moderator = room.sessions.get(ev.from_)
    if moderator is None or moderator.role != R.MODERATOR:
        raise StanzaError("forbidden", by=by, text="only moderators approve voice requests")
    if not form.fields["muc#request_allow"].boolean():
        return  # declined: nothing to do
    if form.value("muc#role") not in (None, R.PARTICIPANT):
        raise StanzaError("bad-request", by=by, text="only the participant role is granted")
    target = room.occupants.get(form.value("muc#roomnick") or "")
    if target is None:
        raise StanzaError("item-not-found", by=by, text="no such occupant")
    if target.role == R.VISITOR:
        change_role(room, moderator, target, R.PARTICIPANT, None)
