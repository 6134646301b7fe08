"""The storage contract, run against every backend (SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from twisted.internet.defer import Deferred

from storage import migrate
from storage.credentials import Credentials
from storage.facade import Storage
from storage.schema import metadata
from storage.sql import Database
from tests.support import backends


@pytest.fixture(params=backends.ALL)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with backends.database(request.param, tmp_path) as url:
        database = Database(url, 2)
        database.migrate()
        yield database
        database.stop()


def done(d: Deferred[Any]) -> Any:
    """Storage Deferreds fire inline when the pool is not started (no reactor needed)."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


CREDS = [Credentials("SCRAM-SHA-256", b"s" * 16, 4096, b"k" * 32, b"v" * 32),
         Credentials("SCRAM-SHA-1", b"t" * 16, 4096, b"a" * 20, b"b" * 20)]


def test_migrations_match_schema(db: Database) -> None:
    assert migrate.current(db.engine) == migrate.heads(db.engine)
    with db.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    relevant = [d for d in diffs if d[0] not in ("remove_index",)]
    assert relevant == []
    db.migrate()  # idempotent


def test_accounts(db: Database) -> None:
    s = Storage(db)
    assert done(s.accounts.create("localhost", "alice", CREDS)) is True
    assert done(s.accounts.create("localhost", "alice", CREDS)) is False
    assert done(s.accounts.exists("localhost", "alice"))
    assert not done(s.accounts.exists("localhost", "Alice"))
    assert not done(s.accounts.exists("other.example", "alice"))
    creds = done(s.accounts.get_credentials("localhost", "alice"))
    assert creds["SCRAM-SHA-1"] == CREDS[1] and creds["SCRAM-SHA-256"] == CREDS[0]
    assert done(s.accounts.create("localhost", "älice", CREDS[:1]))
    assert done(s.accounts.list("localhost")) == [("localhost", "alice"),
                                                  ("localhost", "älice")]
    newer = [Credentials("SCRAM-SHA-256", b"n" * 16, 8192, b"x" * 32, b"y" * 32)]
    assert done(s.accounts.set_credentials("localhost", "alice", newer))
    assert done(s.accounts.get_credentials("localhost", "alice")) == {"SCRAM-SHA-256": newer[0]}
    assert not done(s.accounts.set_credentials("localhost", "ghost", newer))


def test_delete_removes_every_user_row(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "bob", CREDS))
    done(s.kv.set("localhost", "bob", "private", "k", "v"))
    done(s.kv.set("localhost", "carol", "private", "k", "keep"))
    assert done(s.accounts.delete("localhost", "bob")) is True
    assert done(s.accounts.get_credentials("localhost", "bob")) == {}
    assert done(s.kv.get("localhost", "bob", "private", "k")) is None
    assert done(s.kv.get("localhost", "carol", "private", "k")) == "keep"
    assert done(s.accounts.delete("localhost", "bob")) is False


def test_kv_setdefault_keeps_the_first_value(db: Database) -> None:
    s = Storage(db)
    assert done(s.kv.setdefault("", "", "xmppd", "secret", "first")) == "first"
    assert done(s.kv.setdefault("", "", "xmppd", "secret", "second")) == "first"
    assert done(s.kv.get("", "", "xmppd", "secret")) == "first"


def test_kv_is_exact_and_binary(db: Database) -> None:
    s = Storage(db)
    done(s.kv.set("localhost", "u", "st", "a", "1"))
    done(s.kv.set("localhost", "u", "st", "A", "2"))
    done(s.kv.set("localhost", "u", "st", "ä", "3"))
    done(s.kv.set("localhost", "u", "st", "a", "1b"))
    done(s.kv.set("localhost", "u", "st", "big", "x" * 100000 + "🎉"))
    items = done(s.kv.items("localhost", "u", "st"))
    assert items["a"] == "1b" and items["A"] == "2" and items["ä"] == "3"
    assert items["big"].endswith("🎉") and len(items["big"]) == 100001
    assert done(s.kv.delete("localhost", "u", "st", "A")) == 1
    assert done(s.kv.delete("localhost", "u", "st")) == 3
    assert done(s.kv.items("localhost", "u", "st")) == {}
