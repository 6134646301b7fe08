"""Multi-user chat rooms (XEP-0045): persistent rooms and their affiliations.

Only persistent rooms are stored (§10.1.3 muc#roomconfig_persistentroom); temporary rooms
live in the MUC service's memory. ``host`` is the MUC service domain (conference.<domain>),
``name`` the room's localpart. Affiliations are kept per bare JID (§5.2) with the reserved
nickname of members (§7.12) and the reason of a ban (§9.2). Room history is not stored here:
room messages go to the ``archive`` table (host = service, username = room, XEP-0313).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
from sqlalchemy.exc import OperationalError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from storage.schema import HOST, MYSQL, BigText, metadata
from storage.sql import Database

T = TypeVar("T")
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
        values = {"affiliation": a.affiliation, "nick": a.nick, "reason": a.reason}
        if not conn.execute(update(muc_affiliations).where(*where).values(**values)).rowcount:
            conn.execute(insert(muc_affiliations).values(host=host, room=name, jid=a.jid,
                                                         **values))


def _deadlock(failure: Failure) -> bool:
    """A transaction the database aborted to break a deadlock (MySQL 1213, or 1205 lock
    wait timeout; PostgreSQL 40P01/40001): running it again is the prescribed remedy."""
    exc = failure.value
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    code = getattr(orig, "args", (None,))[0] if orig is not None else None
    return code in (1213, 1205) or getattr(orig, "pgcode", None) in ("40P01", "40001")


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _write(self, fn: Callable[[Connection], T], attempts: int = 4) -> Deferred[T]:
        """``db.write`` that reruns a transaction aborted by a deadlock: the upserts below
        (update, insert when nothing was updated) take gap locks on MySQL, so two of them
        on neighbouring keys can deadlock."""
        d = self.db.write(fn)
        if attempts > 1:
            d.addErrback(lambda f: self._write(fn, attempts - 1) if _deadlock(f) else f)
        return d

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
            where = (muc_rooms.c.host == host, muc_rooms.c.name == room.name)
            values = _room_values(room)
            if not conn.execute(update(muc_rooms).where(*where).values(**values)).rowcount:
                conn.execute(insert(muc_rooms).values(host=host, name=room.name, **values))
            conn.execute(delete(muc_affiliations).where(
                muc_affiliations.c.host == host, muc_affiliations.c.room == room.name))
            if room.affiliations:
                conn.execute(insert(muc_affiliations), [
                    {"host": host, "room": room.name, "jid": a.jid,
                     "affiliation": a.affiliation, "nick": a.nick, "reason": a.reason}
                    for a in room.affiliations])

        return self._write(q)

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

        return self._write(q)

    def set_affiliations(self, host: str, name: str,
                         changes: list[StoredAffiliation]) -> Deferred[None]:
        """Apply affiliation changes; an affiliation of "none" removes the user's row."""
        return self._write(lambda conn: _apply_affiliations(conn, host, name, changes))

    def set_subject(self, host: str, name: str, subject: str, nick: str,
                    stamp: int) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            return bool(conn.execute(update(muc_rooms).where(
                muc_rooms.c.host == host, muc_rooms.c.name == name).values(
                subject=subject, subject_nick=nick, subject_time=stamp)).rowcount)

        return self._write(q)

    def delete(self, host: str, name: str) -> Deferred[bool]:
        """Remove a room and its affiliations; False if it was not stored."""

        def q(conn: Connection) -> bool:
            conn.execute(delete(muc_affiliations).where(
                muc_affiliations.c.host == host, muc_affiliations.c.room == name))
            return bool(conn.execute(delete(muc_rooms).where(
                muc_rooms.c.host == host, muc_rooms.c.name == name)).rowcount)

        return self._write(q)

    def forget_user(self, host: str, jid: str) -> Deferred[list[str]]:
        """Remove a (deleted) user's affiliations with every room; the rooms affected."""

        def q(conn: Connection) -> list[str]:
            where = (muc_affiliations.c.host == host, muc_affiliations.c.jid == jid)
            names = [r.room for r in conn.execute(select(muc_affiliations.c.room).where(
                *where).order_by(muc_affiliations.c.room))]
            conn.execute(delete(muc_affiliations).where(*where))
            return names

        return self._write(q)
