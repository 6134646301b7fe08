"""IQs to the service, to rooms and to occupants (XEP-0045 §17.3).

IQs to the service domain and to a room JID are answered by the handler tables below; the
result is sent through the room's outbox so it keeps its place among the stanzas the
handler queued (MAM results before the <fin/>, a kicked occupant's presence before the
moderator's result). An IQ to an occupant JID is a self-ping (XEP-0410 §3.3), answered by the
room, or is forwarded to the occupant's real JID with the sender's occupant JID as 'from'
(§17.3.3), and its answer is forwarded back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.words.xish.domish import Element

from plugins.mam import query as mq
from plugins.muc import admin, disco, mam, moderation, ns, owner
from plugins.muc import affiliations as A
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID

if TYPE_CHECKING:
    from plugins.muc.room import Room
    from plugins.muc.service import MucService

PROXY_TIMEOUT = 60.0


@dataclass
class Reply:
    """The IQ result, sent once: by the handler when it wants (reply.send) or after it."""

    service: MucService
    room: Room | None
    stanza: Element
    sent: bool = field(default=False)

    def send(self, payload: Element | None) -> None:
        if self.sent:
            return
        self.sent = True
        out = st.result_for(self.stanza)
        if payload is not None:
            st.append(out, payload)
        if self.room is not None:
            self.room.send(out)
        else:
            self.service.track_send(out)


@dataclass
class Request:
    stanza: Element
    payload: Element
    from_: JID
    reply: Reply


RoomHandler = Callable[["MucService", "Room", Request], Awaitable[Element | None]]
ServiceHandler = Callable[["MucService", Request], Element | None]


async def _ping(service: MucService, room: Room, req: Request) -> None:
    return None


async def _info(service: MucService, room: Room, req: Request) -> Element:
    return disco.room_info(service, room, req)


async def _items(service: MucService, room: Room, req: Request) -> Element:
    return disco.room_items(service, room, req)


async def _mam_query(service: MucService, room: Room, req: Request) -> Element:
    return await mam.query(service, room, req.from_, req.payload)


async def _mam_form(service: MucService, room: Room, req: Request) -> Element:
    return mam.form(room, req.from_)


async def _mam_metadata(service: MucService, room: Room, req: Request) -> Element:
    return await mam.metadata(service, room, req.from_)


ROOM: dict[tuple[str, str, str], RoomHandler] = {
    ("get", ns.DISCO_INFO, "query"): _info,
    ("get", ns.DISCO_ITEMS, "query"): _items,
    ("get", ns.ADMIN, "query"): admin.get,
    ("set", ns.ADMIN, "query"): admin.set_,
    ("get", ns.OWNER, "query"): owner.get,
    ("set", ns.OWNER, "query"): owner.set_,
    ("set", mq.NS, "query"): _mam_query,
    ("get", mq.NS, "query"): _mam_form,
    ("get", mq.NS, "metadata"): _mam_metadata,
    ("get", ns.PING, "ping"): _ping,
    ("set", ns.MODERATE, "moderate"): moderation.moderate,
}
SERVICE: dict[tuple[str, str, str], ServiceHandler] = {
    ("get", ns.DISCO_INFO, "query"): disco.service_info,
    ("get", ns.DISCO_ITEMS, "query"): disco.service_items,
    ("get", ns.PING, "ping"): lambda service, req: None,
}
# What may be asked of a locked room (§10.1.1: it does not exist yet) - by its owner.
LOCKED_OK = frozenset((ns.OWNER, ns.ADMIN, ns.DISCO_INFO, ns.DISCO_ITEMS, ns.PING))


async def handle(service: MucService, room: Room | None, ev: H.StanzaEvent) -> None:
    s, to = ev.stanza, ev.to
    itype = s.getAttribute("type")
    if itype in ("result", "error"):
        if room is not None and to.resource:
            service.proxy.answer(room, ev)
        return
    payload = next((c for c in s.children if isinstance(c, Element)), None)
    if payload is None or itype not in ("get", "set"):
        raise StanzaError("bad-request")
    if to.local and to.resource:
        await occupant_iq(service, room, ev, payload)
        return
    reply = Reply(service, room, s)
    req = Request(s, payload, ev.from_, reply)
    key = (itype, payload.uri or "", payload.name)
    if not to.local:
        fn = SERVICE.get(key)
        if fn is None or to.resource:
            raise StanzaError("service-unavailable")
        reply.send(fn(service, req))
        return
    by = to.bare_str
    if room is None or (room.locked and (room.affiliation(ev.from_.bare) != A.OWNER
                                         or key[1] not in LOCKED_OK)):
        raise StanzaError("item-not-found", by=by, text="no such room")
    handler = ROOM.get(key)
    if handler is None:
        raise StanzaError("service-unavailable", by=by)
    result = await handler(service, room, req)
    reply.send(result)


async def occupant_iq(service: MucService, room: Room | None, ev: H.StanzaEvent,
                      payload: Element) -> None:
    by = ev.to.bare_str
    occ = room.sessions.get(ev.from_) if room is not None else None
    if room is None or occ is None:
        if payload.uri in (ns.DISCO_INFO, ns.DISCO_ITEMS):
            raise StanzaError("bad-request", by=by, text="you are not in this room")  # §6.6
        # XEP-0410 §3.2: "not joined" is <not-acceptable/> of type cancel
        raise StanzaError("not-acceptable", type_="cancel", by=by, text="you are not in this room")
    target = room.occupants.get(ev.to.resource)
    if target is None:
        raise StanzaError("item-not-found", by=by, text="no such occupant")
    if target is occ and payload.uri == ns.PING and payload.name == "ping":
        Reply(service, room, ev.stanza).send(None)  # XEP-0410 §3.3 self-ping optimisation
        return
    if not room.bucket(occ.bare).take(service.now()):
        raise StanzaError("resource-constraint", by=by, text="too many requests")
    service.proxy.forward(room, occ.nick, target.jid, ev)


class IqProxy:
    """§17.3.3: IQs between occupants, without revealing either real JID."""

    def __init__(self, service: MucService) -> None:
        self.service = service
        self.pending: dict[str, tuple[Room, str, str, JID, str, Any]] = {}

    def forward(self, room: Room, from_nick: str, to: JID, ev: H.StanzaEvent) -> None:
        s = ev.stanza
        new_id = self.service.new_id()
        out = st.shallow_copy(s)
        out.attributes.update({"from": room.nick_jid(from_nick), "to": str(to), "id": new_id})
        call = self.service.host.clock.callLater(PROXY_TIMEOUT, self.pending.pop, new_id, None)
        target_nick = next((o.nick for o in room.occupants.values() if to in o.sessions), "")
        self.pending[new_id] = (room, str(ev.from_), s.getAttribute("id", ""), to, target_nick,
                                call)
        room.send(out)

    def answer(self, room: Room, ev: H.StanzaEvent) -> None:
        s = ev.stanza
        entry = self.pending.get(s.getAttribute("id", ""))
        if entry is None or entry[0] is not room or entry[3] != ev.from_:
            return
        del self.pending[s.getAttribute("id", "")]
        _, requester, orig_id, _, nick, call = entry
        if call.active():
            call.cancel()
        out = st.shallow_copy(s)
        out.attributes.update({"from": room.nick_jid(nick), "to": requester, "id": orig_id})
        room.send(out)

    def stop(self) -> None:
        for entry in self.pending.values():
            if entry[5].active():
                entry[5].cancel()
        self.pending.clear()
