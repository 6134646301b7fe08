"""Disabled accounts, last login times and account counts, on every backend (XEP-0133)."""

from __future__ import annotations

from storage.facade import Storage
from storage.sql import Database
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]


def disabled(s: Storage, user: str) -> bool:
    """As a login sees it: with the credentials (one query)."""
    creds = done(s.accounts.get_credentials("localhost", user))
    assert creds
    return all(c.disabled for c in creds.values())


def test_disable_and_reenable(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "alice", CREDS))
    done(s.accounts.create("localhost", "bob", CREDS))
    done(s.accounts.create("other.example", "carol", CREDS))
    assert not disabled(s, "alice")
    assert done(s.accounts.set_disabled("localhost", "alice", True)) is True
    assert done(s.accounts.set_disabled("localhost", "ghost", True)) is False
    assert disabled(s, "alice") and not disabled(s, "bob")
    info = done(s.accounts.info("localhost", "alice"))
    assert info.disabled and info.last_login is None and info.created > 0
    assert done(s.accounts.info("localhost", "ghost")) is None
    # Disabling keeps every bit of the account (XEP-0133 §4.3): credentials too.
    assert done(s.accounts.get_credentials("localhost", "alice"))
    assert done(s.accounts.list("localhost", disabled=True)) == [("localhost", "alice")]
    assert done(s.accounts.list("localhost", disabled=False)) == [("localhost", "bob")]
    assert done(s.accounts.list(limit=2)) == [("localhost", "alice"), ("localhost", "bob")]
    assert done(s.accounts.count()) == 3
    assert done(s.accounts.count("localhost")) == 2
    assert done(s.accounts.count("localhost", disabled=True)) == 1
    assert done(s.accounts.set_disabled("localhost", "alice", False)) is True
    assert not disabled(s, "alice")
    assert done(s.accounts.count(disabled=True)) == 0


def test_last_logins_are_written_in_one_batch(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "alice", CREDS))
    done(s.accounts.create("localhost", "bob", CREDS))
    done(s.accounts.record_logins([("localhost", "alice", 1000), ("localhost", "bob", 2000),
                                   ("localhost", "ghost", 3000)]))
    done(s.accounts.record_logins([]))
    assert done(s.accounts.info("localhost", "alice")).last_login == 1000
    assert done(s.accounts.info("localhost", "bob")).last_login == 2000
    assert done(s.accounts.info("localhost", "ghost")) is None
