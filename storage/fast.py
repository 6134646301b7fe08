"""FAST tokens (XEP-0484): per account and client, the secret a client authenticates with
instead of its password. The HT mechanisms HMAC with the token itself, so it is kept as
issued (like a session secret: rotated, expiring, revoked with the password)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Integer,
    String,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from twisted.internet.defer import Deferred

from storage.schema import HOST, MYSQL, USER, USER_TABLES, metadata
from storage.sql import Database

fast_tokens = Table(
    "fast_tokens",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("client", String(64), primary_key=True),  # SHA-256 hex of the user-agent id
    Column("token", String(64), primary_key=True),
    Column("mechanism", String(32), nullable=False),
    Column("expiry", BigInteger, nullable=False),  # unix seconds
    Column("count", Integer, nullable=False),  # highest <fast count=''> seen (replays)
    **MYSQL,
)

USER_TABLES.append(fast_tokens)

# Built once: SQLAlchemy spends more building and cache-keying a statement than running it.
_TOKENS = select(fast_tokens).where(
    fast_tokens.c.host == bindparam("host"), fast_tokens.c.username == bindparam("username"),
    fast_tokens.c.client == bindparam("client"), fast_tokens.c.expiry > bindparam("now"),
).order_by(fast_tokens.c.expiry.desc())


@dataclass(frozen=True, slots=True)
class FastToken:
    token: str
    mechanism: str
    expiry: int
    count: int


class FastTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def tokens(self, host: str, username: str, client: str, now: int
               ) -> Deferred[list[FastToken]]:
        """The client's unexpired tokens, newest expiry first (a key read on the login
        path: db.lookup, answered at once on a SQLite file)."""
        def q(conn: Connection) -> list[FastToken]:
            rows = conn.execute(_TOKENS, {"host": host, "username": username,
                                          "client": client, "now": now})
            return [FastToken(r.token, r.mechanism, r.expiry, r._mapping["count"]) for r in rows]

        return self.db.lookup(q)

    def issue(self, host: str, username: str, client: str, token: FastToken
              ) -> Deferred[None]:
        """Store a new token. Tokens issued before and never used go (XEP-0484 §3.4 SHOULD);
        the one in use stays until the new one is used."""
        def q(conn: Connection) -> None:
            conn.execute(insert(fast_tokens).values(
                host=host, username=username, client=client, token=token.token,
                mechanism=token.mechanism, expiry=token.expiry, count=0))

        return self.db.write(q)

    def used(self, host: str, username: str, client: str, token: FastToken, count: int
             ) -> Deferred[None]:
        """A token authenticated: earlier-expiring tokens of the client go (XEP-0484 §3.4
        MUST) and its replay counter moves on."""
        def q(conn: Connection) -> None:
            where = (fast_tokens.c.host == host, fast_tokens.c.username == username,
                     fast_tokens.c.client == client)
            conn.execute(delete(fast_tokens).where(*where,
                                                   fast_tokens.c.expiry < token.expiry))
            conn.execute(update(fast_tokens).where(*where, fast_tokens.c.token == token.token)
                         .values(count=count))

        return self.db.write(q)

    def revoke(self, host: str, username: str, client: str | None = None,
               token: str | None = None) -> Deferred[int]:
        """Revoke one token, a client's tokens, or (both None) every token of the account."""
        def q(conn: Connection) -> int:
            where = [fast_tokens.c.host == host, fast_tokens.c.username == username]
            if client is not None:
                where.append(fast_tokens.c.client == client)
            if token is not None:
                where.append(fast_tokens.c.token == token)
            return int(conn.execute(delete(fast_tokens).where(*where)).rowcount or 0)

        return self.db.write(q)

    def expire(self, now: int) -> Deferred[int]:
        def q(conn: Connection) -> int:
            return int(conn.execute(delete(fast_tokens).where(
                fast_tokens.c.expiry <= now)).rowcount or 0)

        return self.db.write(q)
