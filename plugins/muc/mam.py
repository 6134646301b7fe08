"""The room archive (XEP-0313 on the room JID) in the shared ``archive`` table, with
host = the MUC service and username = the room.

Each stored stanza is the message as the room reflected it, without 'to', plus an
``<x xmlns='...muc#user'><item jid='real full JID'/></x>`` that results keep only for
requesters who may see real JIDs (XEP-0313 §6.1.2 "MUC Archives"). The archive's 'with'
is the sender's roomnick, so a query ``with`` an occupant JID finds what that nick said;
the room's own messages (XEP-0425 moderation notices) have the empty roomnick, which no
occupant has.
After a restart the in-memory discussion history is rebuilt from the archive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.mam import query as mq
from plugins.muc import affiliations as A
from plugins.muc import ns
from plugins.muc import roles as R
from plugins.muc.history import HistoryEntry, history_entry
from storage.archive import ArchiveQuery, ArchiveRow
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError
from xmppd.logs import Logger
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from plugins.muc.room import Room
    from plugins.muc.service import MucService

log = Logger(namespace="xmppd.plugins.muc")
ROOM_NICK = ""  # the 'with' of the room's own messages: no occupant has an empty nick
NO_MATCH = "\x01"  # no archived message has it: RFC 8266 nicknames exclude controls


def stored_form(message: Element, real: JID) -> str:
    """The archived XML: the reflected message plus the sender's real JID."""
    out = st.shallow_copy(message)
    out.attributes.pop("to", None)
    x = st.add(out, "x", ns.USER)
    st.add(x, "item", ns.USER, attrs={"jid": str(real)})
    return st.serialize(out)


def append(service: MucService, room: Room, sid: str, nick: str, message: Element,
           real: JID, stamp: int, origin: object) -> None:
    """Archive one room message, written behind (Host.write_behind): the room broadcasts it
    while the row commits with others; the sender's XEP-0198 acks wait for the commit."""
    d = service.host.storage.archive.append(ArchiveRow(
        service.domain, room.name, sid, nick, stamp, stored_form(message, real)))
    d.addErrback(lambda f: log.failure("archiving a message of {room} failed", f,
                                       room=room.jid.bare_str))
    service.host.write_behind(origin, d)


async def append_notice(service: MucService, room: Room, sid: str, message: Element,
                        stamp: int) -> None:
    """Archive a message from the room itself (no sender, no real JID)."""
    out = st.shallow_copy(message)
    out.attributes.pop("to", None)
    await service.host.storage.archive.append(ArchiveRow(
        service.domain, room.name, sid, ROOM_NICK, stamp, st.serialize(out)))


def split_real_jid(message: Element) -> tuple[Element, str | None]:
    """(the message without any muc#user <x/>, the real JID stored in it)."""
    real = None
    kept = []
    for c in message.children:
        if isinstance(c, Element) and c.name == "x" and c.uri == ns.USER:
            item = st.child(c, "item", ns.USER)
            if item is not None and item.getAttribute("jid"):
                real = item.getAttribute("jid")
            continue
        kept.append(c)
    message.children = kept
    return message, real


async def load_history(service: MucService, room: Room) -> None:
    """Fill a stored room's discussion history from its archive, once (§7.2.13 across
    restarts). Concurrent first joins wait for one query; if storage fails, the room goes
    on without the old history rather than refusing entry."""
    if room.history_loaded:
        return
    await room.history_lock.acquire()
    try:
        if not room.history_loaded:
            try:
                await _load(service, room)
            except Exception:
                log.failure("could not load the history of {room}", room=room.jid.bare_str)
                room.history_loaded = True
    finally:
        room.history_lock.release()


async def _load(service: MucService, room: Room) -> None:
    if room.history_loaded:
        return
    limit = room.config.history_length
    entries: list[HistoryEntry] = []
    if limit > 0:
        page = await service.host.storage.archive.query(
            service.domain, room.name, ArchiveQuery(max=limit, last_page=True))
        for msg in page.messages:
            el, real = split_real_jid(parse_fragment(msg.stanza))
            if st.child(el, "body", st.NS_CLIENT) is None:
                continue  # subject changes, tombstones, notices are not history (§7.2.13)
            entries.append(history_entry(el, room.jid.bare_str, msg.created, _bare(real)))
    if not room.history_loaded:
        room.history.replace(entries + list(room.history.entries))
        room.history_loaded = True


# -- queries ---------------------------------------------------------------------------------------
def check_access(room: Room, requester: JID) -> None:
    """XEP-0313 §6.1.2: "MUST check that the user requesting the archive has the right to
    enter it at the time of the query": not banned; a member in members-only rooms; in a
    password-protected room someone who proved the password (an occupant) or is affiliated."""
    by = room.jid.bare_str
    if not room.config.archiving:
        raise StanzaError("service-unavailable", by=by, text="this room is not archived")
    aff = room.affiliation(requester.bare)
    present = bool(room.occupant_of(requester.bare))
    if room.locked and aff != A.OWNER:
        raise StanzaError("item-not-found", by=by)
    if aff == A.OUTCAST:
        raise StanzaError("forbidden", by=by, text="you are banned from this room")
    if room.config.members_only and A.rank(aff) < A.rank(A.MEMBER):
        raise StanzaError("forbidden", by=by, text="members only")
    if room.config.password_protected and not present and A.rank(aff) < A.rank(A.MEMBER):
        raise StanzaError("forbidden", by=by, text="join the room to read its archive")


def sees_jids(room: Room, requester: JID) -> bool:
    if room.config.non_anonymous or A.rank(room.affiliation(requester.bare)) >= A.rank(A.ADMIN):
        return True
    return any(o.role == R.MODERATOR for o in room.occupant_of(requester.bare))


def parse(room: Room, payload: Element, max_page: int) -> tuple[ArchiveQuery, bool]:
    """XEP-0313 §4 query; 'with' is an occupant JID of this room (or the room itself)."""

    def with_nick(j: JID) -> str | None:
        if j.bare == room.jid:
            return j.resource or None
        return NO_MATCH  # the archive is keyed by roomnick, not real JIDs

    return mq.parse_query(payload, max_page, with_nick)


async def query(service: MucService, room: Room, requester: JID, payload: Element) -> Element:
    """Send the matching messages (through the room, so they precede the IQ result) and
    return the <fin/>."""
    check_access(room, requester)
    q, flip = parse(room, payload, service.options.max_archive_page)
    reveal: bool | None = None  # decided once the page is read, as before the first result

    async def deliver(out: Element) -> None:
        nonlocal reveal
        if reveal is None:
            reveal = sees_jids(room, requester)
        fwd = st.child(st.child(out, "result", mq.NS), "forwarded", mq.NS_FORWARD)  # type: ignore[arg-type]
        inner = st.child(fwd, "message", st.NS_CLIENT) if fwd is not None else None
        if inner is not None:
            _, real = split_real_jid(inner)
            if reveal and real:
                x = st.add(inner, "x", ns.USER)
                st.add(x, "item", ns.USER, attrs={"jid": real})
        room.send(out)

    return await mq.answer(service.host.storage.archive, service.domain, room.name, q, flip,
                           str(requester), room.jid.bare_str, payload.getAttribute("queryid"),
                           deliver)


async def metadata(service: MucService, room: Room, requester: JID) -> Element:
    check_access(room, requester)
    return await mq.metadata_element(service.host.storage.archive, service.domain, room.name)


def form(room: Room, requester: JID) -> Element:
    check_access(room, requester)
    return mq.query_form()


def _bare(jid: str | None) -> str:
    try:
        return JID.parse(jid).bare_str if jid else ""
    except JIDError:
        return ""
