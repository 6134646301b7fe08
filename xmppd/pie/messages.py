"""Offline messages and message archives in XEP-0227 files ("Offline Messages", "Message
archives"), both streamed: one message at a time in, pages of rows out.

Offline messages carry the XEP-0203 ``<delay/>`` of the server that stored them (the
exporting server's own stamp, ``from`` = the host). On import that delay says when the
message was stored and is taken off, since xmppd adds its own at delivery (XEP-0160 §3);
a message already queued for the user (the same stanza) is not queued twice.

Archived messages are XEP-0313 ``<result id/>`` elements whose id is the message's
XEP-0359 stanza-id in the archive, the key that makes a second import add nothing and lets
clients that synced against the old server continue from the id they know.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, insert, select
from twisted.words.xish.domish import Element

from storage.archive import MESSAGE_ID, archive
from storage.offline import offline_messages
from xmppd import stanza as st
from xmppd.jid import JID
from xmppd.pie.model import CLIENT, DELAY, FORWARD, MAM, XMPPD, PieError, Report, Where
from xmppd.pie.xml import attr, jid, parse_stamp, stamp
from xmppd.xmlparser import parse_fragment

PAGE: Final = 500
SID: Final = 40  # the archive's stanza_id column
WITH: Final = 255  # its with_jid column


@dataclass
class Queue:
    """Offline messages already queued for one user (hashes of the stanzas)."""

    host: str
    name: str
    known: set[bytes] | None = None


def _digest(xml: str) -> bytes:
    return hashlib.sha1(xml.encode()).digest()


def offline_unit(conn: Connection, q: Queue, el: Element, where: Where,
                 report: Report) -> None:
    if el.name != "message" or el.uri != CLIENT:
        raise PieError(where, f"<offline-messages/> holds <message xmlns='{CLIENT}'/> "
                       f"elements, not <{el.name} xmlns='{el.uri or ''}'>")
    created = None
    for d in reversed(list(st.children(el, "delay", DELAY))):
        if d.getAttribute("from") == q.host:
            created = parse_stamp(d.getAttribute("stamp"), where, "offline message delay")
            el.children.remove(d)
            break
    xml = st.serialize(el)
    if q.known is None:
        q.known = {_digest(r.stanza) for r in conn.execute(
            select(offline_messages.c.stanza).where(offline_messages.c.host == q.host,
                                                    offline_messages.c.username == q.name))}
    digest = _digest(xml)
    new = digest not in q.known
    if new:
        conn.execute(insert(offline_messages).values(
            host=q.host, username=q.name, stanza=xml,
            created=created if created is not None else int(time.time() * 1_000_000)))
        q.known.add(digest)
    report.count("offline messages", new)


@dataclass
class Archive:
    """The archive being imported (a user's, or a room's on a MUC service); rows are
    written in pages, in file order (which is the archive's order)."""

    host: str
    name: str
    room: bool
    rows: list[dict[str, object]] = field(default_factory=list)


def archive_unit(conn: Connection, a: Archive, el: Element, where: Where,
                 report: Report) -> None:
    if el.name != "result" or el.uri != MAM:
        raise PieError(where, f"<archive/> holds <result xmlns='{MAM}'/> elements, not "
                       f"<{el.name} xmlns='{el.uri or ''}'>")
    sid = attr(el, "id")
    if not sid or len(sid) > SID:
        raise PieError(where, f"archived message without an id of 1 to {SID} characters")
    fwd = st.child(el, "forwarded", FORWARD)
    delay = None if fwd is None else st.child(fwd, "delay", DELAY)
    msg = None if fwd is None else st.child(fwd, "message", CLIENT)
    if msg is None:
        raise PieError(where, f"archived message {sid}: no <forwarded><message "
                       f"xmlns='{CLIENT}'/></forwarded>")
    created = parse_stamp(None if delay is None else delay.getAttribute("stamp"), where,
                          f"archived message {sid}")
    with_ = el.attributes.get((XMPPD, "with"))
    if not isinstance(with_, str):
        with_ = _with(a, msg, where, sid)
    if len(with_) > WITH:
        raise PieError(where, f"archived message {sid}: 'with' {with_[:40]!r}... is longer "
                       f"than {WITH} characters")
    # A user archive finds a one-to-one message by its 'id' (XEP-0424 §5.1 retraction).
    msg_id = None if a.room else msg.getAttribute("id")
    a.rows.append({"host": a.host, "username": a.name, "stanza_id": sid, "with_jid": with_,
                   "created": created, "stanza": st.serialize(msg),
                   "message_id": msg_id if msg_id and len(msg_id) <= MESSAGE_ID else None})
    if len(a.rows) >= PAGE:
        flush(conn, a, report)


def _with(a: Archive, msg: Element, where: Where, sid: str) -> str:
    """XEP-0313 §4.1.1 'with': for a user, the other party's bare JID; for a room, the
    sender's nick (what xmppd's room archive keys messages by)."""
    sender = jid(msg.getAttribute("from") or f"{a.name}@{a.host}", where,
                 f"archived message {sid}: from")
    if a.room:
        return sender.resource
    owner = JID(a.name, a.host)
    to = jid(msg.getAttribute("to") or owner.bare_str, where, f"archived message {sid}: to")
    return (sender.bare if to.bare == owner else to.bare).bare_str


def flush(conn: Connection, a: Archive, report: Report) -> None:
    if not a.rows:
        return
    ids = [str(r["stanza_id"]) for r in a.rows]
    have = {r.stanza_id for r in conn.execute(select(archive.c.stanza_id).where(
        archive.c.host == a.host, archive.c.username == a.name,
        archive.c.stanza_id.in_(ids)))}
    new: list[dict[str, object]] = []
    for r in a.rows:
        if r["stanza_id"] not in have:
            have.add(str(r["stanza_id"]))
            new.append(r)
    if new:
        conn.execute(insert(archive), new)
    report.count("archived messages", True, len(new))
    report.count("archived messages", False, len(a.rows) - len(new))
    a.rows.clear()


# -- export ----------------------------------------------------------------------------------
def offline_export(conn: Connection, host: str, name: str) -> Iterator[Element]:
    last = -1
    while True:
        rows = conn.execute(select(offline_messages.c.id, offline_messages.c.created,
                                   offline_messages.c.stanza).where(
            offline_messages.c.host == host, offline_messages.c.username == name,
            offline_messages.c.id > last).order_by(offline_messages.c.id).limit(PAGE)).all()
        for r in rows:
            el = parse_fragment(r.stanza)
            st.stamp_delay(el, host, stamp(int(r.created)), "Offline Storage")
            yield el
        if len(rows) < PAGE:
            return
        last = rows[-1].id


def archive_export(conn: Connection, host: str, name: str) -> Iterator[Element]:
    last = -1
    while True:
        rows = conn.execute(select(archive).where(
            archive.c.host == host, archive.c.username == name, archive.c.id > last
        ).order_by(archive.c.id).limit(PAGE)).all()
        for r in rows:
            result = st.make("result", MAM, {"id": r.stanza_id})
            result.attributes[(XMPPD, "with")] = r.with_jid
            fwd = st.add(result, "forwarded", FORWARD)
            st.add(fwd, "delay", DELAY, attrs={"stamp": stamp(int(r.created))})
            st.append(fwd, parse_fragment(r.stanza))
            yield result
        if len(rows) < PAGE:
            return
        last = rows[-1].id


def has_rows(conn: Connection, table_host: str, name: str, offline: bool) -> bool:
    t = offline_messages if offline else archive
    return conn.execute(select(t.c.id).where(t.c.host == table_host,
                                             t.c.username == name).limit(1)).first() is not None
