"""The blocklist store (XEP-0191)."""

from __future__ import annotations

from storage.facade import Storage
from storage.sql import Database
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]


def test_add_remove_clear(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "juliet", CREDS))
    assert done(s.blocking.get("localhost", "juliet")) == []
    assert done(s.blocking.add("localhost", "juliet", [
        "romeo@montague.lit", "montague.lit", "iago@shakespeare.lit/x", "romeo@montague.lit"
    ])) == ["romeo@montague.lit", "montague.lit", "iago@shakespeare.lit/x"]
    # already blocked ones are not reported again; case matters (JIDs come prepared)
    assert done(s.blocking.add("localhost", "juliet", ["montague.lit", "Montague.lit"])) == [
        "Montague.lit"]
    assert sorted(done(s.blocking.get("localhost", "juliet"))) == sorted([
        "romeo@montague.lit", "montague.lit", "Montague.lit", "iago@shakespeare.lit/x"])
    assert done(s.blocking.get("localhost", "nurse")) == []
    assert done(s.blocking.remove("localhost", "juliet", ["Montague.lit", "nobody@x"])) == [
        "Montague.lit"]
    assert sorted(done(s.blocking.clear("localhost", "juliet"))) == sorted([
        "romeo@montague.lit", "montague.lit", "iago@shakespeare.lit/x"])
    assert done(s.blocking.get("localhost", "juliet")) == []


def test_account_deletion_removes_the_blocklist(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "juliet", CREDS))
    done(s.blocking.add("localhost", "juliet", ["romeo@montague.lit"]))
    done(s.blocking.add("localhost", "nurse", ["romeo@montague.lit"]))
    assert done(s.accounts.delete("localhost", "juliet"))
    assert done(s.blocking.get("localhost", "juliet")) == []
    assert done(s.blocking.get("localhost", "nurse")) == ["romeo@montague.lit"]
