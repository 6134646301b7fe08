"""vCards (XEP-0054) as published, with the SHA-1 of their photo (XEP-0153) in the same row,
so the XML and the hash advertised in presence can never disagree."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Connection, String, Table, select
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, USER, USER_TABLES, BigText, metadata
from storage.sql import Database
from storage.upsert import upsert

vcards = Table(
    "vcards",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("vcard", BigText, nullable=False),  # the <vCard xmlns='vcard-temp'/> element
    Column("photo", String(40), nullable=True),  # hex SHA-1 of the PHOTO BINVAL data
    Column("updated", BigInteger, nullable=False),  # unix seconds
    **MYSQL,
)

USER_TABLES.append(vcards)


@dataclass(frozen=True, slots=True)
class StoredVCard:
    xml: str
    photo: str | None


class VCardStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, host: str, username: str) -> Deferred[StoredVCard | None]:
        def q(conn: Connection) -> StoredVCard | None:
            row = conn.execute(select(vcards.c.vcard, vcards.c.photo).where(
                vcards.c.host == host, vcards.c.username == username)).first()
            return None if row is None else StoredVCard(row.vcard, row.photo)

        return self.db.read(q)

    def photo(self, host: str, username: str) -> Deferred[str | None]:
        """The photo hash alone (read at every login; the XML may be large)."""

        def q(conn: Connection) -> str | None:
            row = conn.execute(select(vcards.c.photo).where(
                vcards.c.host == host, vcards.c.username == username)).first()
            return None if row is None else row.photo

        return self.db.read(q)

    def put(self, host: str, username: str, xml: str, photo: str | None) -> Deferred[None]:
        def q(conn: Connection) -> None:
            values = {"vcard": xml, "photo": photo, "updated": int(time.time())}
            upsert(conn, vcards, {"host": host, "username": username}, values)

        return self.db.write(q)
