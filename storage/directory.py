"""The user directory searched through XEP-0055 (plugins/search.py), fed from vCards.

One row per user who published a vCard (XEP-0054, plugins/vcard.py): the display values as
published plus case-folded copies (``*_key``) that searches compare against, so matching is
case-insensitive the same way on every backend (SQLite's LOWER() only folds ASCII, MySQL
tables are binary). Accounts without a vCard (created with ``xmppd adduser``) have no row;
``search`` joins the accounts table so they are still found by their account name.

Matching is a case-insensitive substring test (``LIKE '%value%'``). The (host, key) indexes
serve exact and prefix lookups; a substring test scans the host's rows, which the result
limit keeps cheap to return.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Index,
    String,
    Table,
    Text,
    and_,
    delete,
    or_,
    select,
)
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, USER, USER_TABLES, accounts, metadata
from storage.sql import Database
from storage.upsert import upsert

KEY = 255  # characters of a folded search key (longer values are cut for matching only)
FIELDS = ("fn", "nick", "given", "family", "email")

directory = Table(
    "directory",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("fn", Text, nullable=True),  # vCard FN
    Column("nick", Text, nullable=True),  # NICKNAME
    Column("given", Text, nullable=True),  # N/GIVEN
    Column("family", Text, nullable=True),  # N/FAMILY
    Column("email", Text, nullable=True),  # EMAIL/USERID
    Column("fn_key", String(KEY), nullable=False),
    Column("nick_key", String(KEY), nullable=False),
    Column("given_key", String(KEY), nullable=False),
    Column("family_key", String(KEY), nullable=False),
    Column("email_key", String(KEY), nullable=False),
    Index("ix_directory_fn", "host", "fn_key"),
    Index("ix_directory_nick", "host", "nick_key"),
    Index("ix_directory_given", "host", "given_key"),
    Index("ix_directory_family", "host", "family_key"),
    Index("ix_directory_email", "host", "email_key"),
    **MYSQL,
)

USER_TABLES.append(directory)


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """What the directory knows about one account (None: not in the vCard)."""

    username: str = ""
    fn: str | None = None
    nick: str | None = None
    given: str | None = None
    family: str | None = None
    email: str | None = None


def fold(value: str) -> str:
    """The search key of a value: Unicode case folding (so 'STRASSE' finds 'Straße')."""
    return value.casefold()[:KEY]


# What each search criterion compares. "nick" also matches the account name: an account
# without a NICKNAME (or without a vCard at all) is still found by the name it logs in with.
CRITERIA = ("fn", "nick", "given", "family", "email", "user")


def _condition(criterion: str, value: str) -> ColumnElement[bool]:
    key = value.casefold()
    user = accounts.c.username.contains(key, autoescape=True)
    if criterion == "user":
        return user
    column = directory.c[f"{criterion}_key"].contains(key, autoescape=True)
    if criterion == "nick":
        return or_(column, user)
    return column


class DirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, host: str, entry: DirectoryEntry) -> Deferred[None]:
        """Insert or replace the row of ``entry.username``."""

        def q(conn: Connection) -> None:
            values: dict[str, str | None] = {}
            for name in FIELDS:
                value = getattr(entry, name)
                values[name] = value
                values[f"{name}_key"] = fold(value) if value else ""
            upsert(conn, directory, {"host": host, "username": entry.username}, values)

        return self.db.write(q)

    def get(self, host: str, username: str) -> Deferred[DirectoryEntry | None]:
        def q(conn: Connection) -> DirectoryEntry | None:
            row = conn.execute(select(directory).where(
                directory.c.host == host, directory.c.username == username)).first()
            if row is None:
                return None
            return DirectoryEntry(username, *(getattr(row, f) for f in FIELDS))

        return self.db.read(q)

    def delete(self, host: str, username: str) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            return bool(conn.execute(delete(directory).where(
                directory.c.host == host, directory.c.username == username)).rowcount)

        return self.db.write(q)

    def search(self, host: str, criteria: Mapping[str, str], limit: int
               ) -> Deferred[list[DirectoryEntry]]:
        """Accounts of ``host`` matching every criterion (case-insensitive substrings),
        ordered by account name, at most ``limit``. Keys of ``criteria`` are in CRITERIA."""
        unknown = set(criteria) - set(CRITERIA)
        if unknown:
            raise ValueError(f"unknown search criteria {sorted(unknown)}")

        def q(conn: Connection) -> list[DirectoryEntry]:
            joined = accounts.outerjoin(directory, and_(
                directory.c.host == accounts.c.host,
                directory.c.username == accounts.c.username))
            stmt = (select(accounts.c.username, *(directory.c[f] for f in FIELDS))
                    .select_from(joined)
                    .where(accounts.c.host == host,
                           *(_condition(c, v) for c, v in criteria.items()))
                    .order_by(accounts.c.username)
                    .limit(limit))
            return [DirectoryEntry(r.username, *(getattr(r, f) for f in FIELDS))
                    for r in conn.execute(stmt)]

        return self.db.read(q)
