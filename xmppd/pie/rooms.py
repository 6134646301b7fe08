"""Persistent MUC rooms in XEP-0227 files, an xmppd extension (XEP-0227 leaves MUC out of
scope): under the ``<host/>`` of the MUC service,

    <room xmlns='urn:xmppd:pie:0' name='lobby' created='...' secret='...'>
      <x xmlns='jabber:x:data' type='submit'>  (muc#roomconfig, XEP-0045 §10.1.3)
      <subject nick='alice' stamp='...'>text</subject>
      <item xmlns='http://jabber.org/protocol/muc#admin' jid='...' affiliation='member'
            nick='...'><reason>...</reason></item>  (XEP-0045 §9-§10 items)
      <archive xmlns='urn:xmpp:pie:0#mam'>...</archive>  (the room's XEP-0313 archive)
    </room>

``secret`` is the key the room's XEP-0421 occupant ids derive from; carrying it keeps those
ids stable across a migration. Import merges affiliations per JID like roster items.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, update
from twisted.words.xish.domish import Element

from storage.rooms import AFFILIATIONS, ROOM, muc_affiliations, muc_rooms
from storage.upsert import upsert
from xmppd import stanza as st
from xmppd.pie.forms import room_config, room_form
from xmppd.pie.model import DATA, MUC_ADMIN, XMPPD, PieError, Report, Where
from xmppd.pie.xml import attr, jid, parse_stamp, stamp


@dataclass
class RoomCtx:
    host: str
    name: str
    where: Where
    created: int
    secret: str | None
    config: dict[str, Any] = field(default_factory=dict)
    subject: tuple[str, str, int] | None = None
    affiliations: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    saved: bool = False


def open_room(host: str, attrs: dict[Any, str], where: Where) -> RoomCtx:
    raw = attrs.get("name") or ""
    name = jid(f"{raw}@{host}", where, "room name").local if raw else ""
    if not name or len(name) > ROOM:
        raise PieError(where, f"<room/> needs a name of 1 to {ROOM} characters")
    created = attrs.get("created")
    return RoomCtx(host, name, where,
                   parse_stamp(created, where, "room created") if created
                   else int(time.time() * 1_000_000), attrs.get("secret"))


def room_unit(r: RoomCtx, el: Element, where: Where, report: Report) -> bool:
    """Take one child of <room/>; False if it is not one xmppd knows."""
    if el.name == "x" and el.uri == DATA:
        r.config.update(room_config(el, r.name, where, report))
    elif el.name == "subject" and el.uri == XMPPD:
        when = attr(el, "stamp")
        r.subject = (st.text(el), attr(el, "nick") or "",
                     parse_stamp(when, where, "subject") if when else 0)
    elif el.name == "item" and el.uri == MUC_ADMIN:
        who = jid(attr(el, "jid"), where, f"affiliation in room {r.name}", bare=True)
        aff = attr(el, "affiliation")
        if aff not in AFFILIATIONS:
            raise PieError(where, f"room {r.name}: affiliation {aff!r} of {who} is not one of "
                           f"{', '.join(AFFILIATIONS)}")
        reason = st.child(el, "reason", MUC_ADMIN)
        r.affiliations[str(who)] = (aff, attr(el, "nick"),
                                    st.text(reason) if reason is not None else None)
    else:
        return False
    return True


def save_room(conn: Connection, r: RoomCtx, report: Report) -> None:
    """Write the room (once, before its archive or at its end) if anything differs."""
    if r.saved:
        return
    r.saved = True
    key = (muc_rooms.c.host == r.host, muc_rooms.c.name == r.name)
    row = conn.execute(select(muc_rooms).where(*key)).first()
    secret = r.secret or (row.secret if row is not None else secrets.token_hex(32))
    subject = r.subject or ((row.subject, row.subject_nick, int(row.subject_time))
                            if row is not None else ("", "", 0))
    config = dict(json.loads(row.config)) if row is not None else {}
    config.update(r.config)
    config["persistent"] = True
    values = {"config": json.dumps(config, sort_keys=True), "subject": subject[0],
              "subject_nick": subject[1], "subject_time": subject[2], "secret": secret,
              "created": int(row.created) if row is not None else r.created}
    changed = row is None or any(getattr(row, k) != v for k, v in values.items())
    if row is None:
        conn.execute(insert(muc_rooms).values(host=r.host, name=r.name, **values))
    elif changed:
        conn.execute(update(muc_rooms).where(*key).values(**values))
    report.count("rooms", changed)
    for who, (aff, nick, reason) in sorted(r.affiliations.items()):
        k = (muc_affiliations.c.host == r.host, muc_affiliations.c.room == r.name,
             muc_affiliations.c.jid == who)
        have = conn.execute(select(muc_affiliations.c.affiliation, muc_affiliations.c.nick,
                                   muc_affiliations.c.reason).where(*k)).first()
        diff = have is None or tuple(have) != (aff, nick, reason)
        if diff:
            upsert(conn, muc_affiliations, {"host": r.host, "room": r.name, "jid": who},
                   {"affiliation": aff, "nick": nick, "reason": reason})
        report.count("room affiliations", diff)


def export_rooms(conn: Connection, host: str) -> list[tuple[dict[str, str], list[Element]]]:
    """(<room/> attributes, children before the archive) of each room of a MUC service."""
    out = []
    for r in conn.execute(select(muc_rooms).where(muc_rooms.c.host == host)
                          .order_by(muc_rooms.c.name)):
        attrs = {"name": r.name, "created": stamp(int(r.created)), "secret": r.secret}
        kids = [room_form(json.loads(r.config))]
        if r.subject or r.subject_nick or r.subject_time:
            subj = st.make("subject", XMPPD, {"nick": r.subject_nick})
            if r.subject_time:
                subj.attributes["stamp"] = stamp(int(r.subject_time))
            subj.children.append(r.subject)
            kids.append(subj)
        for a in conn.execute(select(muc_affiliations).where(
                muc_affiliations.c.host == host, muc_affiliations.c.room == r.name
        ).order_by(muc_affiliations.c.jid)):
            item = st.make("item", MUC_ADMIN, {"jid": a.jid, "affiliation": a.affiliation})
            if a.nick is not None:
                item.attributes["nick"] = a.nick
            if a.reason is not None:
                st.add(item, "reason", MUC_ADMIN, a.reason)
            kids.append(item)
        out.append((attrs, kids))
    return out


def room_hosts(conn: Connection) -> list[str]:
    return [r.host for r in conn.execute(select(muc_rooms.c.host).distinct()
                                         .order_by(muc_rooms.c.host))]
