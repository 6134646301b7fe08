"""Database.lookup: key reads on a SQLite file are answered on the caller's thread (no hop
to the pool and back on every login); everywhere else they go through the pool like read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from storage.facade import Storage
from storage.sql import Database
from tests.storage.test_contract import CREDS, done


class NoReactor:
    """Started with this, any work sent to the pool never comes back: a Deferred that has
    fired was answered on the calling thread."""

    def callFromThread(self, *_a: Any, **_k: Any) -> None:  # noqa: N802 (Twisted's name)
        pass


def _started(url: str) -> Database:
    db = Database(url, 1)
    db.migrate()
    assert done(Storage(db).accounts.create("localhost", "alice", CREDS))
    db.start(NoReactor())
    return db


def test_sqlite_file_lookups_answer_at_once_with_committed_rows(tmp_path: Path) -> None:
    db = _started(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        accounts = Storage(db).accounts
        assert done(accounts.exists("localhost", "alice")) is True
        assert done(accounts.exists("localhost", "bob")) is False
        assert done(accounts.get_credentials("localhost", "alice"))["SCRAM-SHA-1"] == CREDS[1]
        # Errors come back through the Deferred, not raised at the caller.
        failed = db.lookup(lambda conn: conn.execute(text("SELECT nope FROM nowhere")))
        out: list[Any] = []
        failed.addErrback(out.append)
        assert out and "nowhere" in str(out[0].value)
        # read still goes through the pool (here: never answered).
        assert not db.read(lambda conn: 1).called
    finally:
        db.stop()


def test_memory_lookups_go_through_the_pool(tmp_path: Path) -> None:
    """An in-memory database is one connection shared with the writer thread: a lookup on
    the reactor thread could see a transaction in progress, so it takes the pool's turn."""
    db = _started("sqlite://")
    try:
        d = db.lookup(lambda conn: conn.execute(text("SELECT 1")).scalar_one())
        assert not d.called
    finally:
        db.stop()


def test_lookup_runs_the_function_with_a_connection(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'y.sqlite'}", 1)
    try:
        def q(conn: Connection) -> int:
            return int(conn.execute(text("SELECT 41 + 1")).scalar_one())

        assert done(db.lookup(q)) == 42
    finally:
        db.stop()
