"""Rosters (RFC 6121 §2), pending inbound subscription requests (§3.1.3) and roster versions
(§2.6). Every change bumps the user's version in the same transaction as the change."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, USER, USER_TABLES, BigText, metadata
from storage.sql import Database

CONTACT = 255  # roster contacts are bare JIDs of at most this many characters (a server limit)

roster_items = Table(
    "roster_items",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("contact", String(CONTACT), primary_key=True),
    Column("name", Text, nullable=True),
    Column("subscription", String(4), nullable=False),  # none / to / from / both
    Column("ask", Boolean, nullable=False),  # pending out (RFC 6121 §3.1.2)
    Column("approved", Boolean, nullable=False),  # pre-approved (§3.4)
    Column("groups", Text, nullable=False),  # JSON list of group names
    **MYSQL,
)

roster_pending = Table(
    "roster_pending",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("contact", String(CONTACT), primary_key=True),
    Column("stanza", BigText, nullable=False),  # the request, re-delivered at login
    Column("created", BigInteger, nullable=False),
    **MYSQL,
)

roster_versions = Table(
    "roster_versions",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("version", BigInteger, nullable=False),
    **MYSQL,
)

USER_TABLES.extend([roster_items, roster_pending, roster_versions])


@dataclass(frozen=True, slots=True)
class RosterItem:
    contact: str
    subscription: str = "none"
    ask: bool = False
    approved: bool = False
    name: str | None = None
    groups: tuple[str, ...] = field(default=())

    def with_(self, **changes: object) -> RosterItem:
        return replace(self, **changes)  # type: ignore[arg-type]


def _item(row: object) -> RosterItem:
    return RosterItem(row.contact, row.subscription, bool(row.ask),  # type: ignore[attr-defined]
                      bool(row.approved), row.name,  # type: ignore[attr-defined]
                      tuple(json.loads(row.groups)))  # type: ignore[attr-defined]


def _bump(conn: Connection, host: str, username: str) -> int:
    where = (roster_versions.c.host == host, roster_versions.c.username == username)
    row = conn.execute(select(roster_versions.c.version).where(*where)).first()
    if row is None:
        conn.execute(insert(roster_versions).values(host=host, username=username, version=1))
        return 1
    version = int(row.version) + 1
    conn.execute(update(roster_versions).where(*where).values(version=version))
    return version


class RosterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, host: str, username: str) -> Deferred[tuple[int, list[RosterItem]]]:
        """(version, items); version 0 means the roster was never changed."""

        def q(conn: Connection) -> tuple[int, list[RosterItem]]:
            ver = conn.execute(select(roster_versions.c.version).where(
                roster_versions.c.host == host, roster_versions.c.username == username)).first()
            rows = conn.execute(select(roster_items).where(
                roster_items.c.host == host, roster_items.c.username == username))
            return (int(ver.version) if ver else 0), [_item(r) for r in rows]

        return self.db.read(q)

    def put(self, host: str, username: str, item: RosterItem) -> Deferred[int]:
        """Insert or replace an item; returns the new roster version."""

        def q(conn: Connection) -> int:
            where = (roster_items.c.host == host, roster_items.c.username == username,
                     roster_items.c.contact == item.contact)
            values = {"name": item.name, "subscription": item.subscription, "ask": item.ask,
                      "approved": item.approved, "groups": json.dumps(list(item.groups))}
            if not conn.execute(update(roster_items).where(*where).values(**values)).rowcount:
                conn.execute(insert(roster_items).values(host=host, username=username,
                                                         contact=item.contact, **values))
            return _bump(conn, host, username)

        return self.db.write(q)

    def remove(self, host: str, username: str, contact: str) -> Deferred[int]:
        def q(conn: Connection) -> int:
            conn.execute(delete(roster_items).where(
                roster_items.c.host == host, roster_items.c.username == username,
                roster_items.c.contact == contact))
            return _bump(conn, host, username)

        return self.db.write(q)

    # -- pending inbound subscription requests ---------------------------------------------------
    def add_pending(self, host: str, username: str, contact: str, stanza: str) -> Deferred[bool]:
        """Store a request; False if one from this contact was already pending."""

        def q(conn: Connection) -> bool:
            where = (roster_pending.c.host == host, roster_pending.c.username == username,
                     roster_pending.c.contact == contact)
            if conn.execute(select(roster_pending.c.contact).where(*where)).first():
                conn.execute(update(roster_pending).where(*where).values(stanza=stanza))
                return False
            conn.execute(insert(roster_pending).values(
                host=host, username=username, contact=contact, stanza=stanza,
                created=int(time.time())))
            return True

        return self.db.write(q)

    def remove_pending(self, host: str, username: str, contact: str) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            return bool(conn.execute(delete(roster_pending).where(
                roster_pending.c.host == host, roster_pending.c.username == username,
                roster_pending.c.contact == contact)).rowcount)

        return self.db.write(q)

    def pending(self, host: str, username: str) -> Deferred[dict[str, str]]:
        """contact -> stored request stanza (XML)."""

        def q(conn: Connection) -> dict[str, str]:
            rows = conn.execute(select(roster_pending.c.contact, roster_pending.c.stanza).where(
                roster_pending.c.host == host, roster_pending.c.username == username
            ).order_by(roster_pending.c.created))
            return {r.contact: r.stanza for r in rows}

        return self.db.read(q)
