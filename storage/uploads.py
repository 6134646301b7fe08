"""HTTP File Upload (XEP-0363) records: one row per slot handed out, so per-user quotas, the
daily quota and file expiry survive restarts.

A row is born ``pending`` when a slot is granted, becomes ``uploading`` when a PUT claims it
(exactly one PUT can), ``done`` when the file is in place, and ``gone`` when the file
expired; a gone row is kept for a day so that the daily quota still counts it. A slot that is
never used is deleted when its PUT URL expires, which gives its bytes back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    String,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, USER, USER_TABLES, metadata
from storage.sql import Database

TOKEN = 32  # characters of a slot token (the plugin uses 24 URL-safe ones)
DAY = 86400

State = Literal["pending", "uploading", "done", "gone"]
LIVE: tuple[State, ...] = ("pending", "uploading", "done")  # what counts against the quota

uploads = Table(
    "uploads",
    metadata,
    Column("token", String(TOKEN), primary_key=True),
    Column("host", String(HOST), nullable=False),  # the uploader's domain
    Column("username", String(USER), nullable=False),  # the uploader's localpart
    Column("filename", String(255), nullable=False),  # as requested, shown in the URL
    Column("size", BigInteger, nullable=False),  # bytes, as requested
    Column("content_type", String(255), nullable=False),  # "" until known
    Column("state", String(16), nullable=False),
    Column("created", BigInteger, nullable=False),  # unix seconds the slot was granted
    Column("slot_expires", BigInteger, nullable=False),  # unix seconds the PUT URL dies
    Column("stored", BigInteger, nullable=True),  # unix seconds the upload completed
    Index("ix_uploads_user", "host", "username", "created"),
    Index("ix_uploads_state", "host", "state", "stored"),
    **MYSQL,
)
USER_TABLES.append(uploads)


@dataclass(frozen=True, slots=True)
class UploadRecord:
    token: str
    host: str
    username: str
    filename: str
    size: int
    content_type: str
    state: State
    created: int
    slot_expires: int
    stored: int | None = None


@dataclass(frozen=True, slots=True)
class QuotaExceeded:
    """Why a reservation was refused: ``limit`` is "quota" (bytes kept) or "daily" (bytes
    requested in the last 24 hours); ``frees`` lists (unix time, bytes) of the uploads that
    will stop counting and when, so the caller can say when a retry would fit."""

    limit: Literal["quota", "daily"]
    used: int
    frees: list[tuple[int, int]]


def _record(row: object) -> UploadRecord:
    r = row._mapping  # type: ignore[attr-defined]
    return UploadRecord(r["token"], r["host"], r["username"], r["filename"], r["size"],
                        r["content_type"], r["state"], r["created"], r["slot_expires"],
                        r["stored"])


class UploadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, token: str) -> Deferred[UploadRecord | None]:
        def q(conn: Connection) -> UploadRecord | None:
            row = conn.execute(select(uploads).where(uploads.c.token == token)).first()
            return None if row is None else _record(row)

        return self.db.read(q)

    def reserve(self, record: UploadRecord, quota: int, daily_quota: int,
                expire_after: int) -> Deferred[QuotaExceeded | None]:
        """Insert a pending slot unless it would take the user over ``daily_quota`` (bytes of
        slots granted in the 24 hours before ``record.created``) or ``quota`` (bytes of slots
        and files the user holds); 0 means no limit. A slot whose URL expired unused and a
        file older than ``expire_after`` seconds (0: never) stop counting at once, whether or
        not the sweep has deleted them yet. Check and insert share one transaction; callers
        serialise the requests of one user (the default isolation does not stop two
        concurrent ones)."""
        now, day_start = record.created, record.created - DAY
        c = uploads.c

        def released(r: Any) -> bool:
            return r.state == "pending" and r.slot_expires < now

        def expired(r: Any) -> bool:
            return r.state == "gone" or bool(
                r.state == "done" and expire_after and r.stored + expire_after <= now)

        def q(conn: Connection) -> QuotaExceeded | None:
            rows = conn.execute(select(c.state, c.created, c.size, c.stored, c.slot_expires)
                                .where(c.host == record.host, c.username == record.username,
                                       or_(c.created > day_start, c.state.in_(LIVE)))).all()
            if daily_quota:
                recent = [r for r in rows if r.created > day_start and not released(r)]
                used = sum(r.size for r in recent)
                if used + record.size > daily_quota:
                    return QuotaExceeded("daily", used,
                                         sorted((r.created + DAY, r.size) for r in recent))
            if quota:
                held = [r for r in rows if not released(r) and not expired(r)]
                used = sum(r.size for r in held)
                if used + record.size > quota:
                    frees = sorted((r.stored + expire_after, r.size) for r in held
                                   if r.state == "done") if expire_after else []
                    return QuotaExceeded("quota", used, frees)
            conn.execute(insert(uploads).values(
                token=record.token, host=record.host, username=record.username,
                filename=record.filename, size=record.size, content_type=record.content_type,
                state="pending", created=record.created, slot_expires=record.slot_expires,
                stored=None))
            return None

        return self.db.write(q)

    def claim(self, token: str) -> Deferred[bool]:
        """pending -> uploading; True for exactly one caller per slot."""
        return self._transition(token, "pending", "uploading")

    def complete(self, token: str, stored: int, content_type: str) -> Deferred[bool]:
        """uploading -> done; False if the row went away meanwhile (account deleted)."""
        return self._transition(token, "uploading", "done", stored=stored,
                                content_type=content_type)

    def _transition(self, token: str, old: State, new: State, **values: object
                    ) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            n = conn.execute(update(uploads).where(
                uploads.c.token == token, uploads.c.state == old).values(state=new, **values))
            return bool(n.rowcount)

        return self.db.write(q)

    def release(self, token: str) -> Deferred[None]:
        """Forget a slot whose upload failed (its bytes no longer count)."""

        def q(conn: Connection) -> None:
            conn.execute(delete(uploads).where(uploads.c.token == token))

        return self.db.write(q)

    def purge_slots(self, host: str, now: int, stale_before: int
                    ) -> Deferred[list[tuple[str, str]]]:
        """Delete slots whose PUT URL expired unused, and uploads stuck in ``uploading`` since
        before ``stale_before`` (a crash mid-write); returns their (username, token)s."""
        cond = and_(uploads.c.host == host, or_(
            and_(uploads.c.state == "pending", uploads.c.slot_expires < now),
            and_(uploads.c.state == "uploading", uploads.c.slot_expires < stale_before)))

        def q(conn: Connection) -> list[tuple[str, str]]:
            found = [(r.username, r.token) for r in conn.execute(
                select(uploads.c.username, uploads.c.token).where(cond))]
            for chunk in _chunks([t for _, t in found], 500):
                conn.execute(delete(uploads).where(uploads.c.token.in_(chunk)))
            return found

        return self.db.write(q)

    def expire(self, host: str, stored_before: int, forget_before: int
               ) -> Deferred[list[tuple[str, str]]]:
        """Mark uploads stored before ``stored_before`` gone (returns their (username, token)s,
        whose files the caller deletes) and drop gone rows created before ``forget_before``."""

        def q(conn: Connection) -> list[tuple[str, str]]:
            found = [(r.username, r.token) for r in conn.execute(
                select(uploads.c.username, uploads.c.token).where(
                    uploads.c.host == host, uploads.c.state == "done",
                    uploads.c.stored < stored_before))]
            for chunk in _chunks([t for _, t in found], 500):
                conn.execute(update(uploads).where(uploads.c.token.in_(chunk)).values(
                    state="gone"))
            conn.execute(delete(uploads).where(
                uploads.c.host == host, uploads.c.state == "gone",
                uploads.c.created < forget_before))
            return found

        return self.db.write(q)

    def known(self, host: str, tokens: list[str]) -> Deferred[set[str]]:
        """Which of ``tokens`` have a record that still needs its file (orphan sweep)."""

        def q(conn: Connection) -> set[str]:
            out: set[str] = set()
            for chunk in _chunks(tokens, 500):
                out.update(r.token for r in conn.execute(select(uploads.c.token).where(
                    uploads.c.host == host, uploads.c.token.in_(chunk),
                    uploads.c.state != "gone")))
            return out

        return self.db.read(q)

    def delete_user(self, host: str, username: str) -> Deferred[int]:
        """Remove every record of a user (account deletion); returns how many there were."""

        def q(conn: Connection) -> int:
            return int(conn.execute(delete(uploads).where(
                uploads.c.host == host, uploads.c.username == username)).rowcount)

        return self.db.write(q)


def _chunks(items: list[str], n: int) -> Iterable[list[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]
