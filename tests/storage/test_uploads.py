"""The upload records store (XEP-0363 slots, quotas, expiry) on every backend."""

from __future__ import annotations

from storage.facade import Storage
from storage.sql import Database
from storage.uploads import DAY, QuotaExceeded, UploadRecord
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]

NOW = 1_700_000_000


def slot(token: str, user: str = "juliet", size: int = 100, created: int = NOW,
         host: str = "localhost", name: str = "a.txt", ctype: str = "") -> UploadRecord:
    return UploadRecord(token.ljust(24, "x"), host, user, name, size, ctype, "pending",
                        created, created + 300)


def tok(token: str) -> str:
    return token.ljust(24, "x")


def test_slot_lifecycle(db: Database) -> None:
    s = Storage(db)
    rec = slot("a", name="très «cool».txt", ctype="text/plain; charset=utf-8", size=5)
    assert done(s.uploads.reserve(rec, 0, 0, 0)) is None
    got = done(s.uploads.get(tok("a")))
    assert got == rec
    assert done(s.uploads.get(tok("nothing"))) is None
    assert done(s.uploads.complete(tok("a"), NOW + 1, "text/plain")) is False  # not claimed
    assert done(s.uploads.claim(tok("a"))) is True
    assert done(s.uploads.claim(tok("a"))) is False  # one PUT per slot
    assert done(s.uploads.complete(tok("a"), NOW + 5, "text/plain")) is True
    got = done(s.uploads.get(tok("a")))
    assert (got.state, got.stored, got.content_type) == ("done", NOW + 5, "text/plain")
    assert done(s.uploads.claim(tok("a"))) is False
    done(s.uploads.reserve(slot("b"), 0, 0, 0))
    assert done(s.uploads.claim(tok("b")))
    done(s.uploads.release(tok("b")))  # a failed upload
    assert done(s.uploads.get(tok("b"))) is None


def test_reservations_count_against_both_quotas(db: Database) -> None:
    s = Storage(db)
    up = s.uploads
    assert done(up.reserve(slot("a", size=600, created=NOW - 10), 1000, 2000, 50)) is None
    assert done(up.claim(tok("a"))) and done(up.complete(tok("a"), NOW - 9, ""))
    assert done(up.reserve(slot("b", size=300, created=NOW - 5), 1000, 2000, 50)) is None
    # pending b counts: 600 + 300 + 200 > 1000
    refused = done(up.reserve(slot("c", size=200), 1000, 2000, 50))
    assert refused == QuotaExceeded("quota", 900, [(NOW - 9 + 50, 600)])
    assert done(up.get(tok("c"))) is None
    assert done(up.reserve(slot("c", size=100), 1000, 2000, 50)) is None  # exactly full
    # other users and domains are separate
    assert done(up.reserve(slot("d", user="romeo", size=1000), 1000, 2000, 50)) is None
    assert done(up.reserve(slot("e", host="other.example", size=1000), 1000, 2000, 50)) is None
    # the daily quota counts what was requested, even once it is no longer kept
    assert done(up.expire("localhost", NOW, NOW - DAY)) == [("juliet", tok("a"))]
    assert done(up.reserve(slot("f", size=600), 1000, 1500, 50)) == QuotaExceeded(
        "daily", 1000, sorted([(NOW - 10 + DAY, 600), (NOW - 5 + DAY, 300), (NOW + DAY, 100)]))
    assert done(up.reserve(slot("f", size=500), 1000, 1500, 50)) is None
    # no limits at all
    assert done(up.reserve(slot("g", size=10 ** 15), 0, 0, 0)) is None


def test_what_stopped_counting_before_the_sweep(db: Database) -> None:
    up = Storage(db).uploads
    # a slot whose URL expired unused gives its bytes back at once (both quotas)
    assert done(up.reserve(slot("x", user="romeo", size=1000, created=NOW - 400), 0, 0, 0)
                ) is None
    assert done(up.reserve(slot("y", user="romeo", size=1000), 1000, 1000, 50)) is None
    # a file past its lifetime no longer counts against the kept quota; the daily one it does
    done(up.reserve(slot("z", user="tybalt", size=1000, created=NOW - 100), 0, 0, 0))
    assert done(up.claim(tok("z"))) and done(up.complete(tok("z"), NOW - 90, ""))
    assert done(up.reserve(slot("w", user="tybalt", size=1000), 1000, 0, 100)) == (
        QuotaExceeded("quota", 1000, [(NOW + 10, 1000)]))
    assert done(up.reserve(slot("w", user="tybalt", size=1000), 1000, 1500, 50)) == (
        QuotaExceeded("daily", 1000, [(NOW - 100 + DAY, 1000)]))
    assert done(up.reserve(slot("w", user="tybalt", size=1000), 1000, 0, 50)) is None


def test_unused_slots_are_released_and_stuck_uploads_abandoned(db: Database) -> None:
    s = Storage(db)
    up = s.uploads
    for t, created in (("old", NOW - 1000), ("new", NOW), ("stuck", NOW - 5000),
                       ("busy", NOW - 10)):
        done(up.reserve(slot(t, created=created), 0, 0, 0))
    done(up.claim(tok("stuck")))
    done(up.claim(tok("busy")))
    done(up.reserve(slot("elsewhere", host="other.example", created=NOW - 1000), 0, 0, 0))
    released = done(up.purge_slots("localhost", NOW, NOW - 3600))
    assert sorted(released) == [("juliet", tok("old")), ("juliet", tok("stuck"))]
    assert done(up.get(tok("new"))) is not None and done(up.get(tok("busy"))) is not None
    assert done(up.get(tok("elsewhere"))) is not None
    # at start nothing is being written: every claimed slot is abandoned
    assert done(up.purge_slots("localhost", NOW, 2 ** 62)) == [("juliet", tok("busy"))]


def test_expiry_keeps_a_day_of_records(db: Database) -> None:
    s = Storage(db)
    up = s.uploads
    for t, created in (("a", NOW - 2 * DAY), ("b", NOW - 100), ("c", NOW - 10)):
        done(up.reserve(slot(t, created=created), 0, 0, 0))
        done(up.claim(tok(t)))
        done(up.complete(tok(t), created + 1, ""))
    expired = done(up.expire("localhost", NOW - 50, NOW - DAY))
    assert sorted(expired) == [("juliet", tok("a")), ("juliet", tok("b"))]
    assert done(up.get(tok("a"))) is None  # gone and older than a day: forgotten
    assert done(up.get(tok("b"))).state == "gone"
    assert done(up.get(tok("c"))).state == "done"
    assert done(up.known("localhost", [tok("a"), tok("b"), tok("c"), tok("zz")])) == {tok("c")}
    assert done(up.expire("localhost", NOW - 50, NOW - DAY)) == []


def test_account_deletion_removes_records(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "juliet", CREDS))
    done(s.uploads.reserve(slot("a"), 0, 0, 0))
    done(s.uploads.reserve(slot("b", user="nurse"), 0, 0, 0))
    assert done(s.accounts.delete("localhost", "juliet"))
    assert done(s.uploads.get(tok("a"))) is None
    assert done(s.uploads.get(tok("b"))) is not None
    done(s.uploads.reserve(slot("c", user="nurse"), 0, 0, 0))
    assert done(s.uploads.delete_user("localhost", "nurse")) == 2
    assert done(s.uploads.get(tok("c"))) is None
