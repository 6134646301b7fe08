"""The user directory store (XEP-0055 search over vCard fields and account names)."""

from __future__ import annotations

import pytest

from storage.directory import DirectoryEntry
from storage.facade import Storage
from storage.sql import Database
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]


def names(entries: list[DirectoryEntry]) -> list[str]:
    return [e.username for e in entries]


def test_search_vcard_fields_and_account_names(db: Database) -> None:
    s = Storage(db)
    for user in ("juliet", "romeo", "tybalt", "nurse"):
        done(s.accounts.create("capulet.lit", user, CREDS))
    done(s.accounts.create("other.lit", "juliet2", CREDS))
    done(s.directory.put("capulet.lit", DirectoryEntry(
        "juliet", fn="Juliet Capulet", nick="JuliC", given="Juliet", family="Capulet",
        email="juliet@shakespeare.lit")))
    done(s.directory.put("capulet.lit", DirectoryEntry(
        "tybalt", fn="Tybalt", given="Tybalt", family="CAPULET")))
    done(s.directory.put("capulet.lit", DirectoryEntry(
        "romeo", fn="Roméo Montague", nick="STRASSE", family="Montague")))
    search = lambda **c: names(done(s.directory.search("capulet.lit", c, 50)))  # noqa: E731
    # case-insensitive substrings, per field; results ordered by account name
    assert search(family="capulet") == ["juliet", "tybalt"]
    assert search(fn="ROMÉO") == ["romeo"]
    assert search(nick="straße") == ["romeo"]  # Unicode case folding, not just ASCII
    assert search(email="SHAKESPEARE") == ["juliet"]
    assert search(given="bal") == ["tybalt"]
    # every criterion must match
    assert search(family="capulet", given="jul") == ["juliet"]
    assert search(family="capulet", given="rom") == []
    # the account name: accounts without a vCard are found too, by user or by nick
    assert search(user="nurs") == ["nurse"]
    assert search(nick="nurse") == ["nurse"]
    assert search(user="e") == ["juliet", "nurse", "romeo"]
    # LIKE wildcards in the query are plain characters
    assert search(user="%") == [] and search(fn="_") == []
    # other hosts are not searched; the limit applies
    assert search(user="juliet2") == []
    assert names(done(s.directory.search("capulet.lit", {"user": "e"}, 2))) == [
        "juliet", "nurse"]
    with pytest.raises(ValueError):
        s.directory.search("capulet.lit", {"gender": "x"}, 5)


def test_put_replaces_get_and_delete(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("capulet.lit", "juliet", CREDS))
    done(s.directory.put("capulet.lit", DirectoryEntry("juliet", nick="Jules")))
    done(s.directory.put("capulet.lit", DirectoryEntry("juliet", fn="Juliet")))
    got = done(s.directory.get("capulet.lit", "juliet"))
    assert got == DirectoryEntry("juliet", fn="Juliet")
    assert names(done(s.directory.search("capulet.lit", {"nick": "jules"}, 5))) == []
    long = "x" * 600 + "needle"  # beyond the indexed key length: stored whole, not matched
    done(s.directory.put("capulet.lit", DirectoryEntry("juliet", fn=long)))
    assert done(s.directory.get("capulet.lit", "juliet")).fn == long
    assert done(s.directory.delete("capulet.lit", "juliet")) is True
    assert done(s.directory.get("capulet.lit", "juliet")) is None
    assert done(s.directory.delete("capulet.lit", "juliet")) is False


def test_account_deletion_removes_the_entry(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("capulet.lit", "juliet", CREDS))
    done(s.directory.put("capulet.lit", DirectoryEntry("juliet", fn="Juliet")))
    assert done(s.accounts.delete("capulet.lit", "juliet"))
    assert done(s.directory.get("capulet.lit", "juliet")) is None
    assert done(s.directory.search("capulet.lit", {"fn": "juliet"}, 5)) == []
