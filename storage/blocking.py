"""Blocklists (XEP-0191): the JIDs each user blocked, one row each (prepared JID strings)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Column, Connection, String, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from storage.schema import HOST, MYSQL, USER, USER_TABLES, metadata
from storage.sql import Database

BLOCKED = 255  # longest blocked JID in characters (the key must fit MySQL's 3072 bytes)

blocklist = Table(
    "blocklist",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("jid", String(BLOCKED), primary_key=True),
    **MYSQL,
)

USER_TABLES.append(blocklist)


class BlockingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, host: str, username: str) -> Deferred[list[str]]:
        def q(conn: Connection) -> list[str]:
            rows = conn.execute(select(blocklist.c.jid).where(
                blocklist.c.host == host, blocklist.c.username == username
            ).order_by(blocklist.c.jid))
            return [r.jid for r in rows]

        return self.db.read(q)

    def add(self, host: str, username: str, jids: Iterable[str]) -> Deferred[list[str]]:
        """Block ``jids``; returns those that were not blocked before (in the given order)."""
        wanted = list(dict.fromkeys(jids))

        def q(conn: Connection) -> list[str]:
            have = {r.jid for r in conn.execute(select(blocklist.c.jid).where(
                blocklist.c.host == host, blocklist.c.username == username))}
            new = [j for j in wanted if j not in have]
            if new:
                conn.execute(insert(blocklist), [
                    {"host": host, "username": username, "jid": j} for j in new])
            return new

        def again(failure: Failure) -> Deferred[list[str]]:
            failure.trap(IntegrityError)  # a concurrent block of the same JID: re-read
            return self.db.write(q)

        return self.db.write(q).addErrback(again)

    def remove(self, host: str, username: str, jids: Iterable[str]) -> Deferred[list[str]]:
        """Unblock ``jids``; returns those that were blocked."""
        wanted = list(dict.fromkeys(jids))

        def q(conn: Connection) -> list[str]:
            removed = []
            for j in wanted:
                n = conn.execute(delete(blocklist).where(
                    blocklist.c.host == host, blocklist.c.username == username,
                    blocklist.c.jid == j)).rowcount
                if n:
                    removed.append(j)
            return removed

        return self.db.write(q)

    def clear(self, host: str, username: str) -> Deferred[list[str]]:
        """Unblock everything; returns what was blocked."""

        def q(conn: Connection) -> list[str]:
            where = (blocklist.c.host == host, blocklist.c.username == username)
            old = [r.jid for r in conn.execute(
                select(blocklist.c.jid).where(*where).order_by(blocklist.c.jid))]
            conn.execute(delete(blocklist).where(*where))
            return old

        return self.db.write(q)
