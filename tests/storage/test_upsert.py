"""Native upserts: concurrent first writes of many rows neither fail nor deadlock."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from storage.directory import directory
from storage.sql import Database
from storage.upsert import upsert
from storage.vcard import vcards
from tests.storage.test_contract import db

__all__ = ["db"]


def test_concurrent_first_writes(db: Database) -> None:
    def work(n: int) -> None:
        for i in range(15):
            user = f"u{(n * 7 + i) % 40}"  # writers overlap on the same and adjacent keys
            with db.engine.begin() as conn:
                upsert(conn, vcards, {"host": "localhost", "username": user},
                       {"vcard": f"<vCard xmlns='vcard-temp'><FN>{n}</FN></vCard>",
                        "photo": None, "updated": n})
                upsert(conn, directory, {"host": "localhost", "username": user},
                       {"fn": str(n), "fn_key": str(n), "nick": None, "nick_key": "",
                        "given": None, "given_key": "", "family": None, "family_key": "",
                        "email": None, "email_key": ""})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(vcards)).scalar_one() == 40
        assert conn.execute(select(func.count()).select_from(directory)).scalar_one() == 40
        fns = {r.username: r.fn for r in conn.execute(select(directory))}
        vc = {r.username: r.vcard for r in conn.execute(select(vcards))}
    assert all(f"<FN>{fns[u]}</FN>" in vc[u] for u in fns)  # each row is one writer's
