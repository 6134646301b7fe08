"""Registration invitations (XEP-0401/XEP-0445 tokens) made by ``xmppd invite DOMAIN``.

They live in the generic kv table as host-level records (username "", store "invites",
key = token, value = JSON ``{"uses": n, "expires": unix_seconds}``). Taking a use is a
compare-and-set on the stored value, so two registrations racing for the last use of a
token cannot both win on any backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, select, update
from twisted.internet.defer import Deferred

from storage.schema import kv
from storage.sql import Database

STORE = "invites"
TOKEN = 191  # kv key length


@dataclass(frozen=True, slots=True)
class Invite:
    uses: int
    expires: float


def _parse(value: str) -> Invite | None:
    try:
        data = json.loads(value)
        return Invite(int(data["uses"]), float(data["expires"]))
    except (ValueError, TypeError, KeyError):
        return None


def _where(host: str, token: str) -> tuple[ColumnElement[bool], ...]:
    return (kv.c.host == host, kv.c.username == "", kv.c.store == STORE, kv.c.key == token)


class InviteStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, host: str, token: str) -> Deferred[Invite | None]:
        """The invitation, or None if unknown or unreadable."""

        def q(conn: Connection) -> Invite | None:
            if not token or len(token) > TOKEN:
                return None
            row = conn.execute(select(kv.c.value).where(*_where(host, token))).first()
            return None if row is None else _parse(row.value)

        return self.db.read(q)

    async def take(self, host: str, token: str) -> bool:
        """Use the token once; False if it is unknown or has no use left."""
        return await self._change(host, token, -1)

    async def give_back(self, host: str, token: str) -> None:
        """Undo ``take`` (the registration it was taken for did not happen)."""
        await self._change(host, token, +1)

    async def _change(self, host: str, token: str, delta: int) -> bool:
        def q(conn: Connection) -> bool | None:
            where = _where(host, token)
            row = conn.execute(select(kv.c.value).where(*where)).first()
            if row is None:
                return False
            invite = _parse(row.value)
            if invite is None or invite.uses + delta < 0:
                return False
            value = json.dumps({"uses": invite.uses + delta, "expires": invite.expires})
            n = conn.execute(update(kv).where(*where, kv.c.value == row.value)
                             .values(value=value)).rowcount
            return True if n else None  # None: someone changed it meanwhile, try again

        if not token or len(token) > TOKEN:
            return False
        for _ in range(5):
            done = await self.db.write(q)
            if done is not None:
                return done
        return False
