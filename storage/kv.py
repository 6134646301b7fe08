"""Generic per-user key-value blobs (private XML storage, preferences, small state)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from storage.schema import kv
from storage.sql import Database
from storage.upsert import upsert


class KVStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, host: str, username: str, store: str, key: str) -> Deferred[str | None]:
        def q(conn: Connection) -> str | None:
            row = conn.execute(select(kv.c.value).where(
                kv.c.host == host, kv.c.username == username, kv.c.store == store,
                kv.c.key == key)).first()
            return None if row is None else str(row.value)

        return self.db.read(q)

    def items(self, host: str, username: str, store: str) -> Deferred[dict[str, str]]:
        def q(conn: Connection) -> dict[str, str]:
            rows = conn.execute(select(kv.c.key, kv.c.value).where(
                kv.c.host == host, kv.c.username == username, kv.c.store == store))
            return {r.key: r.value for r in rows}

        return self.db.read(q)

    def setdefault(self, host: str, username: str, store: str, key: str, value: str
                   ) -> Deferred[str]:
        """The stored value, or ``value`` stored now if there was none. The first writer
        wins, also between processes sharing the database: one that loses the race to the
        primary key reads the winner's value."""
        def q(conn: Connection) -> str:
            row = conn.execute(select(kv.c.value).where(
                kv.c.host == host, kv.c.username == username, kv.c.store == store,
                kv.c.key == key)).first()
            if row is not None:
                return str(row.value)
            conn.execute(insert(kv).values(host=host, username=username, store=store, key=key,
                                           value=value))
            return value

        def lost_race(failure: Failure) -> Deferred[str]:
            failure.trap(IntegrityError)
            return self.get(host, username, store, key).addCallback(
                lambda found: value if found is None else found)

        return self.db.write(q).addErrback(lost_race)

    def set(self, host: str, username: str, store: str, key: str, value: str) -> Deferred[None]:
        def q(conn: Connection) -> None:
            upsert(conn, kv, {"host": host, "username": username, "store": store, "key": key},
                   {"value": value})

        return self.db.write(q)

    def delete(self, host: str, username: str, store: str, key: str | None = None
               ) -> Deferred[int]:
        def q(conn: Connection) -> int:
            stmt = delete(kv).where(kv.c.host == host, kv.c.username == username,
                                    kv.c.store == store)
            if key is not None:
                stmt = stmt.where(kv.c.key == key)
            return int(conn.execute(stmt).rowcount)

        return self.db.write(q)
