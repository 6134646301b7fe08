"""Offline message queue (XEP-0160): stored in arrival order, committed before the server
reports the message as taken, removed only after it was handed to a session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    delete,
    func,
    insert,
    select,
)
from twisted.internet.defer import Deferred

from storage.batch import BatchWriter
from storage.schema import HOST, MYSQL, USER, USER_TABLES, BigText, metadata
from storage.sql import Database

T = TypeVar("T")

offline_messages = Table(
    "offline_messages",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("host", String(HOST), nullable=False),
    Column("username", String(USER), nullable=False),
    Column("created", BigInteger, nullable=False),  # unix microseconds
    Column("stanza", BigText, nullable=False),
    Index("ix_offline_user", "host", "username", "id"),
    **MYSQL,
)
USER_TABLES.append(offline_messages)


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    id: int
    created: int
    stanza: str


@dataclass(frozen=True, slots=True)
class _Row:
    host: str
    username: str
    created: int
    stanza: str
    quota: int


def _store(conn: Connection, rows: list[_Row]) -> list[bool]:
    """Insert each row unless its user's queue is full (then False: the caller bounces)."""
    counts: dict[tuple[str, str], int] = {}
    out: list[bool] = []
    for r in rows:
        key = (r.host, r.username)
        if key not in counts:
            counts[key] = int(conn.execute(select(func.count()).select_from(
                offline_messages).where(offline_messages.c.host == r.host,
                                        offline_messages.c.username == r.username)
            ).scalar_one())
        if counts[key] >= r.quota:
            out.append(False)
            continue
        conn.execute(insert(offline_messages).values(
            host=r.host, username=r.username, created=r.created, stanza=r.stanza))
        counts[key] += 1
        out.append(True)
    return out


class OfflineStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer: BatchWriter[_Row, bool] = BatchWriter(db, _store)

    def store(self, host: str, username: str, created: int, stanza: str, quota: int
              ) -> Deferred[bool]:
        """Queue one message; fires True once committed, False if the quota is reached."""
        return self._writer.add(_Row(host, username, created, stanza, quota))

    def flushed(self) -> Deferred[None]:
        """Every message stored so far is committed (a drain reads what was routed before)."""
        return self._writer.flushed()

    def _read(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        """A read after every write issued before it has committed: rows are written
        behind (Host.write_behind), and a reader must see what was routed before it."""
        flushed = self.flushed()
        if flushed.called:  # nothing in flight: the read itself (its Deferred as db's)
            return self.db.read(fn)
        return flushed.addCallback(lambda _: self.db.read(fn))

    def fetch(self, host: str, username: str, limit: int = 10000
              ) -> Deferred[list[OfflineMessage]]:
        def q(conn: Connection) -> list[OfflineMessage]:
            rows = conn.execute(select(offline_messages.c.id, offline_messages.c.created,
                                       offline_messages.c.stanza).where(
                offline_messages.c.host == host, offline_messages.c.username == username
            ).order_by(offline_messages.c.id).limit(limit))
            return [OfflineMessage(r.id, r.created, r.stanza) for r in rows]

        return self._read(q)

    def remove(self, host: str, username: str, ids: list[int]) -> Deferred[int]:
        def q(conn: Connection) -> int:
            n = 0
            for i in range(0, len(ids), 500):
                n += conn.execute(delete(offline_messages).where(
                    offline_messages.c.host == host, offline_messages.c.username == username,
                    offline_messages.c.id.in_(ids[i:i + 500]))).rowcount
            return n

        return self.db.write(q)

    def totals(self) -> Deferred[dict[str, tuple[int, int]]]:
        """Per host: (messages queued, users with a queue). A scan of the index, for the
        metrics endpoint (which caches it), never for a stanza's path."""
        def q(conn: Connection) -> dict[str, tuple[int, int]]:
            rows = conn.execute(select(
                offline_messages.c.host, func.count(),
                func.count(offline_messages.c.username.distinct())
            ).group_by(offline_messages.c.host))
            return {r[0]: (int(r[1]), int(r[2])) for r in rows}

        return self._read(q)

    def count(self, host: str, username: str) -> Deferred[int]:
        def q(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(offline_messages).where(
                offline_messages.c.host == host, offline_messages.c.username == username)
            ).scalar_one())

        return self._read(q)
