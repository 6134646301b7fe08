"""Multi-user chat rooms (XEP-0045): persistent rooms and their affiliations.

Only persistent rooms are stored (§10.1.3 muc#roomconfig_persistentroom); temporary rooms
live in the MUC service's memory. ``host`` is the MUC service domain (conference.<domain>),
``name`` the room's localpart. Affiliations are kept per bare JID (§5.2) with the reserved
nickname of members (§7.12) and the reason of a ban (§9.2). Room history is not stored here:
room messages go to the ``archive`` table (host = service, username = room, XEP-0313).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, BigText, metadata
from storage.sql import Database
from storage.upsert import upsert

ROOM = 255  # a room localpart; the MUC service refuses to create rooms with longer names
AFFILIATIONS = ("owner", "admin", "member", "outcast")

muc_rooms = Table(
    "muc_rooms",
    metadata,
    Column("host", String(HOST), primary_key=True),  # the MUC service domain
    Column("name", String(ROOM), primary_key=True),  # the room's localpart
    Column("config", Text, nullable=False),  # JSON object of the room configuration
    Column("subject", BigText, nullable=False),
    Column("subject_nick", Text, nullable=False),  # who set it ('' = the room itself)
    Column("subject_time", BigInteger, nullable=False),  # unix microseconds; 0 = never set
    Column("secret", String(64), nullable=False),  # XEP-0421 occupant-id HMAC key (hex)
    Column("created", BigInteger, nullable=False),  # unix microseconds
    **MYSQL,
)

muc_affiliations = Table(
    "muc_affiliations",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("room", String(ROOM), primary_key=True),
    Column("jid", String(255), primary_key=True),  # bare JID
    Column("affiliation", String(8), nullable=False),  # owner / admin / member / outcast
    Column("nick", Text, nullable=True),  # reserved room nickname (members, §9.3)
    Column("reason", Text, nullable=True),  # e.g. why a user was banned (§9.2)
    Index("ix_muc_affiliations_jid", "host", "jid"),
    **MYSQL,
)


@dataclass(frozen=True, slots=True)
class StoredAffiliation:
    jid: str
    affiliation: str  # "none" only in changes passed to set_affiliations (= remove)
    nick: str | None = None
    reason: str | None = None


@dataclass
class StoredRoom:
    name: str
    config: dict[str, Any]
    subject: str = ""
    subject_nick: str = ""
    subject_time: int = 0
    secret: str = ""
    created: int = 0
    affiliations: list[StoredAffiliation] = field(default_factory=list)


def _room_values(room: StoredRoom) -> dict[str, Any]:
    return {"config": json.dumps(room.config, sort_keys=True), "subject": room.subject,
            "subject_nick": room.subject_nick, "subject_time": room.subject_time,
            "secret": room.secret, "created": room.created}


def _apply_affiliations(conn: Connection, host: str, name: str,
                        changes: list[StoredAffiliation]) -> None:
    for a in changes:
        where = (muc_affiliations.c.host == host, muc_affiliations.c.room == name,
                 muc_affiliations.c.jid == a.jid)
        if a.affiliation not in AFFILIATIONS:
            conn.execute(delete(muc_affiliations).where(*where))
            continue
        upsert(conn, muc_affiliations, {"host": host, "room": name, "jid": a.jid},
               {"affiliation": a.affiliation, "nick": a.nick, "reason": a.reason})


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, host: str) -> Deferred[list[StoredRoom]]:
        """Every stored room of a MUC service, with its affiliations."""

        def q(conn: Connection) -> list[StoredRoom]:
            found: dict[str, StoredRoom] = {}
            for r in conn.execute(select(muc_rooms).where(muc_rooms.c.host == host)
                                  .order_by(muc_rooms.c.name)):
                found[r.name] = StoredRoom(r.name, json.loads(r.config), r.subject,
                                           r.subject_nick, int(r.subject_time), r.secret,
                                           int(r.created))
            for a in conn.execute(select(muc_affiliations).where(
                    muc_affiliations.c.host == host).order_by(muc_affiliations.c.jid)):
                room = found.get(a.room)
                if room is not None:
                    room.affiliations.append(StoredAffiliation(a.jid, a.affiliation, a.nick,
                                                               a.reason))
            return list(found.values())

        return self.db.read(q)

    def save(self, host: str, room: StoredRoom) -> Deferred[None]:
        """Insert or replace a room with all of its affiliations (one transaction)."""

        def q(conn: Connection) -> None:
            upsert(conn, muc_rooms, {"host": host, "name": room.name}, _room_values(room))
            conn.execute(delete(muc_affiliations).where(
                muc_affiliations.c.host == host, muc_affiliations.c.room == room.name))
            if room.affiliations:
                conn.execute(insert(muc_affiliations), [
                    {"host": host, "room": room.name, "jid": a.jid,
                     "affiliation": a.affiliation, "nick": a.nick, "reason": a.reason}
                    for a in room.affiliations])

        return self.db.write(q)

    def update(self, host: str, room: StoredRoom,
               changes: list[StoredAffiliation]) -> Deferred[bool]:
        """Store a room's configuration and subject with some affiliation changes; False if
        the room is not stored (a temporary room)."""

        def q(conn: Connection) -> bool:
            if not conn.execute(update(muc_rooms).where(
                    muc_rooms.c.host == host, muc_rooms.c.name == room.name).values(
                    **_room_values(room))).rowcount:
                return False
            _apply_affiliations(conn, host, room.name, changes)
            return True

        return self.db.write(q)

    def set_affiliations(self, host: str, name: str,
                         changes: list[StoredAffiliation]) -> Deferred[None]:
        """Apply affiliation changes; an affiliation of "none" removes the user's row."""
        return self.db.write(lambda conn: _apply_affiliations(conn, host, name, changes))

    def set_subject(self, host: str, name: str, subject: str, nick: str,
                    stamp: int) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            return bool(conn.execute(update(muc_rooms).where(
                muc_rooms.c.host == host, muc_rooms.c.name == name).values(
                subject=subject, subject_nick=nick, subject_time=stamp)).rowcount)

        return self.db.write(q)

    def delete(self, host: str, name: str) -> Deferred[bool]:
        """Remove a room and its affiliations; False if it was not stored."""

        def q(conn: Connection) -> bool:
            conn.execute(delete(muc_affiliations).where(
                muc_affiliations.c.host == host, muc_affiliations.c.room == name))
            return bool(conn.execute(delete(muc_rooms).where(
                muc_rooms.c.host == host, muc_rooms.c.name == name)).rowcount)

        return self.db.write(q)

    def forget_user(self, host: str, jid: str) -> Deferred[list[str]]:
        """Remove a (deleted) user's affiliations with every room; the rooms affected."""

        def q(conn: Connection) -> list[str]:
            where = (muc_affiliations.c.host == host, muc_affiliations.c.jid == jid)
            names = [r.room for r in conn.execute(select(muc_affiliations.c.room).where(
                *where).order_by(muc_affiliations.c.room))]
            conn.execute(delete(muc_affiliations).where(*where))
            return names

        return self.db.write(q)
