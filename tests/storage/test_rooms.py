"""The persistent room store (XEP-0045 rooms and affiliations) on every backend."""

from __future__ import annotations

from storage.facade import Storage
from storage.rooms import StoredAffiliation, StoredRoom
from storage.sql import Database
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]

SVC = "conference.localhost"


def room(name: str, **kw: object) -> StoredRoom:
    base = StoredRoom(name, {"name": "Cave", "persistent": True, "max_users": 20},
                      subject="", secret="ab" * 32, created=123,
                      affiliations=[StoredAffiliation("crone@localhost", "owner"),
                                    StoredAffiliation("evil@else", "outcast", None, "spam"),
                                    StoredAffiliation("hag@localhost", "member", "thirdwitch")])
    for k, v in kw.items():
        setattr(base, k, v)
    return base


def test_save_load_replace_delete(db: Database) -> None:
    s = Storage(db)
    assert done(s.rooms.load(SVC)) == []
    coven = room("coven")
    done(s.rooms.save(SVC, coven))
    done(s.rooms.save(SVC, room("zürich-é", affiliations=[])))
    done(s.rooms.save("conference.other", room("coven", affiliations=[])))
    loaded = done(s.rooms.load(SVC))
    assert [r.name for r in loaded] == ["coven", "zürich-é"]
    assert loaded[0] == coven
    assert loaded[1].affiliations == []
    # save replaces the whole room, affiliations included
    again = room("coven", config={"name": "New"},
                 affiliations=[StoredAffiliation("wicca@localhost", "owner")])
    done(s.rooms.save(SVC, again))
    assert done(s.rooms.load(SVC))[0] == again
    assert done(s.rooms.delete(SVC, "coven")) is True
    assert done(s.rooms.delete(SVC, "coven")) is False
    assert [r.name for r in done(s.rooms.load(SVC))] == ["zürich-é"]
    assert [r.name for r in done(s.rooms.load("conference.other"))] == ["coven"]


def test_affiliation_changes_and_subject(db: Database) -> None:
    s = Storage(db)
    done(s.rooms.save(SVC, room("coven")))
    done(s.rooms.set_affiliations(SVC, "coven", [
        StoredAffiliation("hag@localhost", "none"),  # removed
        StoredAffiliation("evil@else", "member", "reformed"),  # changed
        StoredAffiliation("new@localhost", "admin"),  # added
    ]))
    assert done(s.rooms.set_subject(SVC, "coven", "Spells ✨", "firstwitch", 99)) is True
    assert done(s.rooms.set_subject(SVC, "nowhere", "x", "", 1)) is False
    r = done(s.rooms.load(SVC))[0]
    assert r.affiliations == [StoredAffiliation("crone@localhost", "owner"),
                              StoredAffiliation("evil@else", "member", "reformed"),
                              StoredAffiliation("new@localhost", "admin")]
    assert (r.subject, r.subject_nick, r.subject_time) == ("Spells ✨", "firstwitch", 99)
    big = "x" * 70000  # subjects may exceed MySQL's TEXT
    done(s.rooms.set_subject(SVC, "coven", big, "", 100))
    assert done(s.rooms.load(SVC))[0].subject == big


def test_update_only_touches_stored_rooms(db: Database) -> None:
    s = Storage(db)
    assert done(s.rooms.update(SVC, room("temp"), [])) is False
    assert done(s.rooms.load(SVC)) == []
    done(s.rooms.save(SVC, room("coven")))
    changed = room("coven", config={"moderated": True}, affiliations=[])
    assert done(s.rooms.update(SVC, changed, [StoredAffiliation("hag@localhost", "none")]))
    r = done(s.rooms.load(SVC))[0]
    assert r.config == {"moderated": True}
    assert [a.jid for a in r.affiliations] == ["crone@localhost", "evil@else"]


def test_forget_user_and_binary_collation(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "crone", CREDS))
    done(s.rooms.save(SVC, room("a")))
    done(s.rooms.save(SVC, room("b")))
    done(s.rooms.save(SVC, room("c", affiliations=[StoredAffiliation("Crone@localhost",
                                                                      "owner")])))
    assert done(s.rooms.forget_user(SVC, "crone@localhost")) == ["a", "b"]
    rooms = {r.name: r for r in done(s.rooms.load(SVC))}
    assert [a.jid for a in rooms["a"].affiliations] == ["evil@else", "hag@localhost"]
    assert [a.jid for a in rooms["c"].affiliations] == ["Crone@localhost"]  # exact match only
