"""XEP-0357 push registrations: the app servers (service JID + node, with the publish options
the client gave) each account asked the server to notify.

A registration is identified by its service JID and node together (XEP-0357 §5: a service
may be enabled several times with different nodes). Both can be longer than a MySQL key
allows, so the key is their SHA-256; the columns hold the values themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    String,
    Table,
    bindparam,
    delete,
    select,
)
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, USER, USER_TABLES, BigText, metadata
from storage.sql import Database
from storage.upsert import upsert

SERVICE = 3071  # RFC 7622 §3.1: an XMPP address is at most 3071 bytes
NODE = 1023  # characters of a node name this server keeps

push_registrations = Table(
    "push_registrations",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("id", String(64), primary_key=True),  # registration_id(service, node)
    Column("service", String(SERVICE), nullable=False),
    Column("node", String(NODE), nullable=False),
    Column("options", BigText, nullable=True),  # <x xmlns='jabber:x:data'/> publish options
    Column("enabled_at", BigInteger, nullable=False),  # unix microseconds of the last enable
    **MYSQL,
)
USER_TABLES.append(push_registrations)

_t = push_registrations
# Read for every offline message of a user (db.lookup): built once (docs/DEVELOPING.md).
_LIST = select(_t.c.service, _t.c.node, _t.c.options, _t.c.enabled_at).where(
    _t.c.host == bindparam("host"), _t.c.username == bindparam("username")
).order_by(_t.c.enabled_at, _t.c.id)


def registration_id(service: str, node: str) -> str:
    """The key of (service, node); NUL cannot occur in a JID or in XML text."""
    return hashlib.sha256(f"{service}\0{node}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PushRegistration:
    service: str  # the app server's JID (prepared)
    node: str
    options: str | None  # serialized publish-options data form, if the client gave one
    enabled_at: int

    @property
    def key(self) -> tuple[str, str]:
        return self.service, self.node


def _list(conn: Connection, host: str, username: str) -> list[PushRegistration]:
    rows = conn.execute(_LIST, {"host": host, "username": username})
    return [PushRegistration(r.service, r.node, r.options, r.enabled_at) for r in rows]


class PushStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, host: str, username: str) -> Deferred[list[PushRegistration]]:
        """The account's registrations, oldest enable first."""
        return self.db.lookup(lambda conn: _list(conn, host, username))

    def enable(self, host: str, username: str, reg: PushRegistration, limit: int
               ) -> Deferred[list[PushRegistration]]:
        """Add ``reg`` or replace the one with its service and node (XEP-0357 §5: the last
        request's publish options count). Beyond ``limit`` registrations the ones enabled
        longest ago are dropped and returned."""

        def q(conn: Connection) -> list[PushRegistration]:
            upsert(conn, _t, {"host": host, "username": username,
                              "id": registration_id(reg.service, reg.node)},
                   {"service": reg.service, "node": reg.node, "options": reg.options,
                    "enabled_at": reg.enabled_at})
            regs = _list(conn, host, username)
            dropped = [r for r in regs if r.key != reg.key][:max(0, len(regs) - limit)]
            for r in dropped:
                conn.execute(delete(_t).where(
                    _t.c.host == host, _t.c.username == username,
                    _t.c.id == registration_id(r.service, r.node)))
            return dropped

        return self.db.write(q)

    def disable(self, host: str, username: str, service: str, node: str | None = None
                ) -> Deferred[list[PushRegistration]]:
        """Remove the registration of (service, node), or every one of ``service`` when
        ``node`` is None (XEP-0357 §6); returns what was removed."""

        def q(conn: Connection) -> list[PushRegistration]:
            gone = [r for r in _list(conn, host, username) if r.service == service and (
                node is None or r.node == node)]
            for r in gone:
                conn.execute(delete(_t).where(
                    _t.c.host == host, _t.c.username == username,
                    _t.c.id == registration_id(r.service, r.node)))
            return gone

        return self.db.write(q)
