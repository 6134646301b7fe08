"""XEP-0049 private XML lives in the generic kv table (store "private"); this adds the one
query the plugin needs beyond ``storage.kv``: the stored keys alone, for the per-user quota,
without reading every stored element."""

from __future__ import annotations

from sqlalchemy import Connection, select
from twisted.internet.defer import Deferred

from storage.schema import kv
from storage.sql import Database

STORE = "private"
KEY = 191  # the kv table's key length


class PrivateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def keys(self, host: str, username: str) -> Deferred[set[str]]:
        def q(conn: Connection) -> set[str]:
            return {r.key for r in conn.execute(select(kv.c.key).where(
                kv.c.host == host, kv.c.username == username, kv.c.store == STORE))}

        return self.db.read(q)
