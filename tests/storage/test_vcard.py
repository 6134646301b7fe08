"""The vCard store (XEP-0054) with the XEP-0153 photo hash."""

from __future__ import annotations

from storage.facade import Storage
from storage.sql import Database
from storage.vcard import StoredVCard
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]


def test_put_get_photo(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "juliet", CREDS))
    assert done(s.vcard.get("localhost", "juliet")) is None
    assert done(s.vcard.photo("localhost", "juliet")) is None
    big = "<vCard xmlns='vcard-temp'><DESC>" + "é" * 100000 + "</DESC></vCard>"
    done(s.vcard.put("localhost", "juliet", big, "a" * 40))
    assert done(s.vcard.get("localhost", "juliet")) == StoredVCard(big, "a" * 40)
    assert done(s.vcard.photo("localhost", "juliet")) == "a" * 40
    done(s.vcard.put("localhost", "juliet", "<vCard xmlns='vcard-temp'/>", None))
    assert done(s.vcard.get("localhost", "juliet")) == StoredVCard(
        "<vCard xmlns='vcard-temp'/>", None)
    assert done(s.accounts.delete("localhost", "juliet"))
    assert done(s.vcard.get("localhost", "juliet")) is None
