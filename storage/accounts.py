"""Accounts and their SCRAM credentials."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from twisted.internet.defer import Deferred

from storage.credentials import Credentials
from storage.schema import USER_TABLES, accounts, credentials
from storage.sql import Database

# Built once: a statement made per call costs SQLAlchemy ~45 us to build and key for its
# compiled cache, against ~15 us to run. These two are on hot paths: every login, and every
# stanza to a user who is offline.
_EXISTS = select(accounts.c.username).where(
    accounts.c.host == bindparam("host"), accounts.c.username == bindparam("username"))
_CREDENTIALS = select(credentials.c.mechanism, credentials.c.salt, credentials.c.iterations,
                      credentials.c.stored_key, credentials.c.server_key,
                      accounts.c.disabled).join(accounts, (
                          accounts.c.host == credentials.c.host)
                          & (accounts.c.username == credentials.c.username)).where(
    credentials.c.host == bindparam("host"), credentials.c.username == bindparam("username"))
_LOGIN = update(accounts).where(
    accounts.c.host == bindparam("h"), accounts.c.username == bindparam("u")).values(
    last_login=bindparam("t"))


@dataclass(frozen=True, slots=True)
class AccountInfo:
    created: int  # unix seconds
    disabled: bool
    last_login: int | None  # unix seconds; None: never logged in since it was recorded


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
        def q(conn: Connection) -> dict[str, Credentials]:
            rows = conn.execute(_CREDENTIALS, {"host": host, "username": username}).all()
            return {m: Credentials(m, bytes(salt), iterations, bytes(stored), bytes(server),
                                   bool(disabled))
                    for m, salt, iterations, stored, server, disabled in rows}

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

    def list(self, host: str | None = None, disabled: bool | None = None,
             limit: int | None = None) -> Deferred[list[tuple[str, str]]]:
        """(host, username) in order; only disabled (or enabled) ones if ``disabled`` is
        given; at most ``limit``."""
        def q(conn: Connection) -> list[tuple[str, str]]:
            stmt = select(accounts.c.host, accounts.c.username).order_by(
                accounts.c.host, accounts.c.username)
            if host is not None:
                stmt = stmt.where(accounts.c.host == host)
            if disabled is not None:
                stmt = stmt.where(accounts.c.disabled == int(disabled))
            if limit is not None:
                stmt = stmt.limit(limit)
            return [(r.host, r.username) for r in conn.execute(stmt)]

        return self.db.read(q)

    def count(self, host: str | None = None, disabled: bool | None = None) -> Deferred[int]:
        def q(conn: Connection) -> int:
            stmt = select(func.count()).select_from(accounts)
            if host is not None:
                stmt = stmt.where(accounts.c.host == host)
            if disabled is not None:
                stmt = stmt.where(accounts.c.disabled == int(disabled))
            return int(conn.execute(stmt).scalar_one())

        return self.db.read(q)

    def info(self, host: str, username: str) -> Deferred[AccountInfo | None]:
        def q(conn: Connection) -> AccountInfo | None:
            row = conn.execute(select(
                accounts.c.created, accounts.c.disabled, accounts.c.last_login).where(
                accounts.c.host == host, accounts.c.username == username)).first()
            if row is None:
                return None
            return AccountInfo(int(row.created), bool(row.disabled),
                               None if row.last_login is None else int(row.last_login))

        return self.db.read(q)

    def set_disabled(self, host: str, username: str, disabled: bool) -> Deferred[bool]:
        """False if there is no such account (then nothing changed)."""
        def q(conn: Connection) -> bool:
            n = conn.execute(update(accounts).where(
                accounts.c.host == host, accounts.c.username == username).values(
                disabled=int(disabled))).rowcount
            return bool(n)

        return self.db.write(q)

    def record_logins(self, logins: Iterable[tuple[str, str, int]]) -> Deferred[None]:
        """Last login times (host, username, unix seconds) in one transaction: written in
        batches, not once per login (SQLite commits with an fsync)."""
        params = [{"h": h, "u": u, "t": t} for h, u, t in logins]

        def q(conn: Connection) -> None:
            if params:
                conn.execute(_LOGIN, params)

        return self.db.write(q)


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
