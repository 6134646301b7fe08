"""Message archives (XEP-0313) for users and MUC rooms: one row per archived stanza.

Paging is by the auto-increment row id, which follows arrival order; a time bound is first
turned into an id bound through the (owner, created) index, so every page - with or without
'with', 'start', 'end', RSM before/after - is one index range scan of at most max+1 rows.

A row's stanza can be replaced in place (``replace``) by a XEP-0424/XEP-0425 tombstone: the
entry keeps its archive id and place, only its content goes. A user's archive also keeps
the client's message 'id' (``message_id``): XEP-0424 §5.1 names the message a one-to-one
retraction applies to by that id, so ``by_message_id`` finds it through an index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    update,
)
from twisted.internet.defer import Deferred, succeed

from storage.batch import BatchWriter
from storage.schema import HOST, MYSQL, USER, USER_TABLES, BigText, metadata
from storage.sql import Database

T = TypeVar("T")
MESSAGE_ID = 255  # longest message 'id' kept for retractions (an index key with host and user)

archive = Table(
    "archive",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("host", String(HOST), nullable=False),  # owner's domain (or MUC service)
    Column("username", String(USER), nullable=False),  # owner's localpart (or room)
    Column("stanza_id", String(40), nullable=False),  # XEP-0359 id, the MAM UID
    Column("with_jid", String(255), nullable=False),  # bare JID of the other party
    Column("created", BigInteger, nullable=False),  # unix microseconds
    Column("stanza", BigText, nullable=False),
    # the message's 'id' attribute (user archives; None if absent or too long to index)
    Column("message_id", String(MESSAGE_ID), nullable=True),
    Index("ix_archive_owner", "host", "username", "id"),
    Index("ix_archive_with", "host", "username", "with_jid", "id"),
    Index("ix_archive_time", "host", "username", "created"),
    Index("ix_archive_expiry", "host", "created"),
    Index("ux_archive_sid", "host", "username", "stanza_id", unique=True),
    Index("ix_archive_msgid", "host", "username", "message_id"),  # 3 x 255 x 4 <= 3072 bytes
    **MYSQL,
)
USER_TABLES.append(archive)


@dataclass(frozen=True, slots=True)
class ArchivedMessage:
    row: int
    stanza_id: str
    with_jid: str
    created: int
    stanza: str


@dataclass(frozen=True, slots=True)
class ArchiveRow:
    host: str
    username: str
    stanza_id: str
    with_jid: str
    created: int
    stanza: str
    message_id: str | None = None  # the stanza's 'id' (user archives), see by_message_id


@dataclass
class ArchiveQuery:
    with_jid: str | None = None
    start: int | None = None
    end: int | None = None
    after_ids: list[str] = field(default_factory=list)  # form after-id and RSM <after>
    before_ids: list[str] = field(default_factory=list)  # form before-id and RSM <before>
    ids: list[str] = field(default_factory=list)
    max: int = 50
    last_page: bool = False  # RSM <before/> (empty) or <before>id</before>: newest first


@dataclass
class ArchivePage:
    messages: list[ArchivedMessage]
    complete: bool


class UnknownId(LookupError):
    """An id given in before/after/ids is not in this archive (XEP-0313 item-not-found)."""


def _insert(conn: Connection, rows: list[ArchiveRow]) -> list[None]:
    conn.execute(insert(archive), [{
        "host": r.host, "username": r.username, "stanza_id": r.stanza_id,
        "with_jid": r.with_jid, "created": r.created, "stanza": r.stanza,
        "message_id": r.message_id if r.message_id and len(r.message_id) <= MESSAGE_ID
        else None} for r in rows])
    return [None] * len(rows)


class ArchiveStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer: BatchWriter[ArchiveRow, None] = BatchWriter(db, _insert)

    def append(self, row: ArchiveRow) -> Deferred[None]:
        """Archive one stanza; fires once committed (group commit under load)."""
        return self._writer.add(row)

    def flushed(self) -> Deferred[None]:
        """Every row appended so far is committed (read your writes before a query)."""
        return self._writer.flushed()

    def _read(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        """A read after every write issued before it has committed: rows are written
        behind (Host.write_behind), and a reader must see what was routed before it."""
        flushed = self.flushed()
        if flushed.called:  # nothing in flight: the read itself (its Deferred as db's)
            return self.db.read(fn)
        return flushed.addCallback(lambda _: self.db.read(fn))

    @property
    def writes(self) -> int:
        """Stanzas archived (committed) by this process since it started."""
        return self._writer.committed

    def query(self, host: str, username: str, q: ArchiveQuery) -> Deferred[ArchivePage]:
        return self._read(lambda conn: _query(conn, host, username, q))

    def bounds(self, host: str, username: str) -> Deferred[tuple[ArchivedMessage | None,
                                                                 ArchivedMessage | None]]:
        """Oldest and newest entries (XEP-0313 archive metadata)."""

        def q(conn: Connection) -> tuple[ArchivedMessage | None, ArchivedMessage | None]:
            owner = (archive.c.host == host, archive.c.username == username)
            out = []
            for order in (archive.c.id.asc(), archive.c.id.desc()):
                r = conn.execute(select(archive).where(*owner).order_by(order).limit(1)).first()
                out.append(None if r is None else _msg(r))
            return out[0], out[1]

        return self._read(q)

    def _write(self, fn: Callable[[Connection], T]) -> Deferred[T]:
        """A change after the rows appended before it have committed (a purge must not
        leave a row still in flight; a tombstone replaces a committed row)."""
        flushed = self.flushed()
        if flushed.called:
            return self.db.write(fn)
        return flushed.addCallback(lambda _: self.db.write(fn))

    def get(self, host: str, username: str, stanza_id: str) -> Deferred[ArchivedMessage | None]:
        """One entry by its archive id (XEP-0359 stanza id), or None."""

        def q(conn: Connection) -> ArchivedMessage | None:
            r = conn.execute(select(archive).where(
                archive.c.host == host, archive.c.username == username,
                archive.c.stanza_id == stanza_id)).first()
            return None if r is None else _msg(r)

        return self._read(q)

    def by_message_id(self, host: str, username: str, with_jid: str, message_id: str,
                      limit: int = 10) -> Deferred[list[ArchivedMessage]]:
        """Entries of one conversation whose message 'id' is ``message_id``, newest first
        (client ids are not unique: the caller picks among them)."""
        if not message_id or len(message_id) > MESSAGE_ID:
            return succeed([])

        def q(conn: Connection) -> list[ArchivedMessage]:
            rows = conn.execute(select(archive).where(
                archive.c.host == host, archive.c.username == username,
                archive.c.message_id == message_id, archive.c.with_jid == with_jid,
            ).order_by(archive.c.id.desc()).limit(limit))
            return [_msg(r) for r in rows]

        return self._read(q)

    def replace(self, host: str, username: str, stanza_id: str, stanza: str) -> Deferred[bool]:
        """Replace the stanza of one entry (a tombstone), keeping its id, time and place;
        False if there is no such entry. Fires once committed."""

        def q(conn: Connection) -> bool:
            return bool(conn.execute(update(archive).where(
                archive.c.host == host, archive.c.username == username,
                archive.c.stanza_id == stanza_id).values(stanza=stanza)).rowcount)

        return self._write(q)

    def purge(self, host: str, username: str) -> Deferred[int]:
        def q(conn: Connection) -> int:
            return int(conn.execute(delete(archive).where(
                archive.c.host == host, archive.c.username == username)).rowcount)

        return self._write(q)

    def expire(self, host: str, before: int) -> Deferred[int]:
        """Delete a host's entries older than ``before`` (unix microseconds)."""

        def q(conn: Connection) -> int:
            return int(conn.execute(delete(archive).where(
                archive.c.host == host, archive.c.created < before)).rowcount)

        return self._write(q)

    def count(self, host: str, username: str) -> Deferred[int]:
        def q(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(archive).where(
                archive.c.host == host, archive.c.username == username)).scalar_one())

        return self._read(q)


def _msg(r: object) -> ArchivedMessage:
    return ArchivedMessage(r.id, r.stanza_id, r.with_jid, r.created,  # type: ignore[attr-defined]
                           r.stanza)  # type: ignore[attr-defined]


def _row_of(conn: Connection, host: str, username: str, sid: str) -> int:
    r = conn.execute(select(archive.c.id).where(
        archive.c.host == host, archive.c.username == username,
        archive.c.stanza_id == sid)).first()
    if r is None:
        raise UnknownId(sid)
    return int(r.id)


def _time_bound(conn: Connection, host: str, username: str, stamp: int, first: bool) -> int:
    """Smallest id with created >= stamp (first) or largest id with created <= stamp."""
    owner = (archive.c.host == host, archive.c.username == username)
    if first:
        r = conn.execute(select(func.min(archive.c.id)).where(
            *owner, archive.c.created >= stamp)).scalar()
        return int(r) if r is not None else 2 ** 62
    r = conn.execute(select(func.max(archive.c.id)).where(
        *owner, archive.c.created <= stamp)).scalar()
    return int(r) if r is not None else -1


def _query(conn: Connection, host: str, username: str, q: ArchiveQuery) -> ArchivePage:
    where = [archive.c.host == host, archive.c.username == username]
    if q.ids:
        rows = conn.execute(select(archive).where(
            *where, archive.c.stanza_id.in_(q.ids)).order_by(archive.c.id)).all()
        if len(rows) != len(set(q.ids)):
            found = {r.stanza_id for r in rows}
            raise UnknownId(next(i for i in q.ids if i not in found))
        return ArchivePage([_msg(r) for r in rows], True)
    if q.with_jid is not None:
        where.append(archive.c.with_jid == q.with_jid)
    lo, hi = None, None
    for sid in q.after_ids:
        row = _row_of(conn, host, username, sid)
        lo = row if lo is None else max(lo, row)
    for sid in q.before_ids:
        row = _row_of(conn, host, username, sid)
        hi = row if hi is None else min(hi, row)
    if q.start is not None:
        lo = max(lo if lo is not None else -1, _time_bound(conn, host, username, q.start,
                                                              True) - 1)
    if q.end is not None:
        bound = _time_bound(conn, host, username, q.end, False) + 1
        hi = bound if hi is None else min(hi, bound)
    if lo is not None:
        where.append(archive.c.id > lo)
    if hi is not None:
        where.append(archive.c.id < hi)
    order = archive.c.id.desc() if q.last_page else archive.c.id.asc()
    rows = list(conn.execute(select(archive).where(*where).order_by(order).limit(q.max + 1)))
    complete = len(rows) <= q.max
    rows = rows[:q.max]
    if q.last_page:
        rows.reverse()
    return ArchivePage([_msg(r) for r in rows], complete)

