"""Accounts and their SCRAM credentials."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, bindparam, delete, insert, select
from twisted.internet.defer import Deferred

from storage.schema import USER_TABLES, accounts, credentials
from storage.sql import Database

if TYPE_CHECKING:
    from storage.base import Credentials


# Built once: a statement made per call costs SQLAlchemy ~45 us to build and key for its
# compiled cache, against ~15 us to run. These two are on hot paths: every login, and every
# stanza to a user who is offline.
_EXISTS = select(accounts.c.username).where(
    accounts.c.host == bindparam("host"), accounts.c.username == bindparam("username"))
_CREDENTIALS = select(credentials.c.mechanism, credentials.c.salt, credentials.c.iterations,
                      credentials.c.stored_key, credentials.c.server_key).where(
    credentials.c.host == bindparam("host"), credentials.c.username == bindparam("username"))


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def exists(self, host: str, username: str) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            return _account(conn, host, username) is not None

        return self.db.lookup(q)

    def create(self, host: str, username: str, creds: list[Credentials]) -> Deferred[bool]:
        """Create the account; False if it already exists (nothing is changed then)."""

        def q(conn: Connection) -> bool:
            found = _account(conn, host, username)
            if found is not None:
                return False
            conn.execute(insert(accounts).values(host=host, username=username,
                                                 created=int(time.time())))
            _put_credentials(conn, host, username, creds)
            return True

        return self.db.write(q)

    def set_credentials(self, host: str, username: str, creds: list[Credentials]) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            found = _account(conn, host, username)
            if found is None:
                return False
            _put_credentials(conn, host, username, creds)
            return True

        return self.db.write(q)

    def get_credentials(self, host: str, username: str) -> Deferred[dict[str, Credentials]]:
        from storage.base import Credentials

        def q(conn: Connection) -> dict[str, Credentials]:
            rows = conn.execute(_CREDENTIALS, {"host": host, "username": username}).all()
            return {m: Credentials(m, bytes(salt), iterations, bytes(stored), bytes(server))
                    for m, salt, iterations, stored, server in rows}

        return self.db.lookup(q)

    def delete(self, host: str, username: str) -> Deferred[bool]:
        """Delete the account and every per-user row (schema.USER_TABLES), in one transaction."""

        def q(conn: Connection) -> bool:
            found = False
            for table in USER_TABLES:
                n = conn.execute(delete(table).where(
                    table.c.host == host, table.c.username == username)).rowcount
                if table is accounts:
                    found = bool(n)
            return found

        return self.db.write(q)

    def list(self, host: str | None = None) -> Deferred[list[tuple[str, str]]]:
        def q(conn: Connection) -> list[tuple[str, str]]:
            stmt = select(accounts.c.host, accounts.c.username).order_by(
                accounts.c.host, accounts.c.username)
            if host is not None:
                stmt = stmt.where(accounts.c.host == host)
            return [(r.host, r.username) for r in conn.execute(stmt)]

        return self.db.read(q)


def _account(conn: Connection, host: str, username: str) -> Row[Any] | None:
    return conn.execute(_EXISTS, {"host": host, "username": username}).first()


def _put_credentials(conn: Connection, host: str, username: str,
                     creds: list[Credentials]) -> None:
    conn.execute(delete(credentials).where(
        credentials.c.host == host, credentials.c.username == username))
    for c in creds:
        conn.execute(insert(credentials).values(
            host=host, username=username, mechanism=c.mechanism, salt=c.salt,
            iterations=c.iterations, stored_key=c.stored_key, server_key=c.server_key))
