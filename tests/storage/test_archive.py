"""The archive store's XEP-0424/XEP-0425 operations on every backend: an entry found by its
archive id or by its message 'id', and replaced in place by a tombstone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column, insert, select, table

from storage import migrate
from storage.archive import MESSAGE_ID, ArchiveQuery, ArchiveRow, archive
from storage.facade import Storage
from storage.sql import Database
from tests.storage.test_contract import db, done
from tests.support import backends

__all__ = ["db"]


def row(sid: str, with_jid: str = "b@localhost", mid: str | None = None,
        owner: tuple[str, str] = ("localhost", "a"), created: int = 1) -> ArchiveRow:
    return ArchiveRow(owner[0], owner[1], sid, with_jid, created,
                      f"<message id='{mid}'><body>{sid}</body></message>", mid)


def test_get_and_replace_keep_the_entry_in_place(db: Database) -> None:
    s = Storage(db)
    for i in range(3):
        done(s.archive.append(row(f"s{i}", created=10 + i)))
    done(s.archive.append(row("s1", owner=("localhost", "other"))))
    got = done(s.archive.get("localhost", "a", "s1"))
    assert got is not None and got.stanza_id == "s1" and "<body>s1</body>" in got.stanza
    assert done(s.archive.get("localhost", "a", "nope")) is None
    assert done(s.archive.get("localhost", "A", "s1")) is None  # exact, binary keys

    tomb = "<message><retracted xmlns='urn:xmpp:message-retract:1' id='r'/></message>"
    assert done(s.archive.replace("localhost", "a", "s1", tomb)) is True
    assert done(s.archive.replace("localhost", "a", "s1", tomb)) is True  # same value again
    assert done(s.archive.replace("localhost", "a", "nope", tomb)) is False
    page = done(s.archive.query("localhost", "a", ArchiveQuery()))
    assert [(m.stanza_id, m.created) for m in page.messages] == [("s0", 10), ("s1", 11),
                                                                  ("s2", 12)]
    assert page.messages[1].stanza == tomb and page.messages[1].row == got.row
    other = done(s.archive.get("localhost", "other", "s1"))
    assert other is not None and "<body>s1</body>" in other.stanza  # another owner's entry


def test_by_message_id_is_per_conversation_newest_first(db: Database) -> None:
    s = Storage(db)
    done(s.archive.append(row("s0", mid="m1")))
    done(s.archive.append(row("s1", mid="m2")))
    done(s.archive.append(row("s2", mid="m1")))  # client ids repeat
    done(s.archive.append(row("s3", with_jid="c@localhost", mid="m1")))
    done(s.archive.append(row("s4", mid="M1")))
    done(s.archive.append(row("s5", mid=None)))
    done(s.archive.append(row("s6", owner=("localhost", "z"), mid="m1")))
    found = done(s.archive.by_message_id("localhost", "a", "b@localhost", "m1"))
    assert [m.stanza_id for m in found] == ["s2", "s0"]
    assert [m.stanza_id for m in done(s.archive.by_message_id(
        "localhost", "a", "b@localhost", "m1", limit=1))] == ["s2"]
    assert done(s.archive.by_message_id("localhost", "a", "b@localhost", "")) == []
    assert done(s.archive.by_message_id("localhost", "a", "b@localhost", "nope")) == []


def test_an_overlong_message_id_is_not_indexed(db: Database) -> None:
    s = Storage(db)
    long_id = "é" * (MESSAGE_ID + 1)
    done(s.archive.append(row("s0", mid=long_id)))
    done(s.archive.append(row("s1", mid="é" * MESSAGE_ID)))  # the longest kept
    assert done(s.archive.by_message_id("localhost", "a", "b@localhost", long_id)) == []
    assert [m.stanza_id for m in done(s.archive.by_message_id(
        "localhost", "a", "b@localhost", "é" * MESSAGE_ID))] == ["s1"]
    assert done(s.archive.get("localhost", "a", "s0")) is not None  # archived all the same


@pytest.fixture(params=backends.ALL)
def at_0003(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with backends.database(request.param, tmp_path) as url:
        database = Database(url, 2)
        migrate.upgrade(database.engine, "0003")
        yield database
        database.stop()


def test_migration_0801_keeps_existing_entries(at_0003: Database) -> None:
    """Entries archived before 0801 stay, with no message id (no retraction finds them)."""
    before = table("archive", *(column(c) for c in (
        "host", "username", "stanza_id", "with_jid", "created", "stanza")))
    with at_0003.engine.begin() as conn:
        conn.execute(insert(before).values(
            host="localhost", username="a", stanza_id="old", with_jid="b@localhost",
            created=1, stanza="<message id='m1'><body>x</body></message>"))
    migrate.upgrade(at_0003.engine, "heads")
    assert migrate.current(at_0003.engine) == migrate.heads(at_0003.engine)
    with at_0003.engine.connect() as conn:
        assert conn.execute(select(archive.c.stanza_id, archive.c.message_id)).all() == [
            ("old", None)]
    s = Storage(at_0003)
    assert done(s.archive.by_message_id("localhost", "a", "b@localhost", "m1")) == []
    done(s.archive.append(row("new", mid="m1")))
    assert [m.stanza_id for m in done(s.archive.by_message_id(
        "localhost", "a", "b@localhost", "m1"))] == ["new"]
