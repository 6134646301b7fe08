"""Database.write runs a transaction again when the database aborted it as a deadlock victim
(MySQL 1213): the remedy the databases prescribe, in the one place every store writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from storage.sql import Database
from tests.storage.test_contract import done


class Flaky:
    """A transaction body whose first runs are aborted as deadlock victims."""

    def __init__(self, failures: int, code: int = 1213) -> None:
        self.failures, self.code, self.calls = failures, code, 0

    def __call__(self, conn: Connection) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("INSERT ...", {}, Exception(self.code, "Deadlock found"))
        return "written"


def test_deadlocked_transactions_are_run_again(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'retry.sqlite'}", 1)
    try:
        flaky = Flaky(2)
        assert done(db.write(flaky)) == "written" and flaky.calls == 3
        hopeless = Flaky(10)
        with pytest.raises(OperationalError):
            done(db.write(hopeless))
        assert hopeless.calls == 5
        other = Flaky(10, code=1062)  # a duplicate key is not a deadlock: no second run
        with pytest.raises(OperationalError):
            done(db.write(other))
        assert other.calls == 1
    finally:
        db.stop()


def test_connections_the_server_closed_are_replaced(tmp_path: Path) -> None:
    """PostgreSQL restarted or killed our sessions: the next read and write still work
    (no pre-ping round trip guards every statement; a dead pooled connection is retried)."""
    from sqlalchemy import create_engine, text

    from tests.support import backends

    backends.require("postgres")
    with backends.database("postgres", tmp_path) as url:
        db = Database(url, 2)
        db.migrate()
        try:
            def backend_pid(conn: Connection) -> int:
                return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())

            before = {done(db.read(backend_pid)), done(db.write(backend_pid))}
            admin = create_engine(url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                for pid in before:
                    conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            admin.dispose()
            after_read = done(db.read(backend_pid))
            after_write = done(db.write(backend_pid))
            assert after_read not in before and after_write not in before
        finally:
            db.stop()
