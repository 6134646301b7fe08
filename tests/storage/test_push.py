"""The XEP-0357 push registration store, on every backend."""

from __future__ import annotations

from storage.facade import Storage
from storage.push import PushRegistration
from storage.sql import Database
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]

FORM = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
        "http://jabber.org/protocol/pubsub#publish-options</value></field></x>")


def reg(service: str, node: str, at: int, options: str | None = None) -> PushRegistration:
    return PushRegistration(service, node, options, at)


def test_enable_replace_disable(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "juliet", CREDS))
    assert done(s.push.get("localhost", "juliet")) == []
    assert done(s.push.enable("localhost", "juliet", reg("push.example", "n1", 10), 5)) == []
    assert done(s.push.enable("localhost", "juliet", reg("push.example", "n2", 20, FORM),
                              5)) == []
    assert done(s.push.enable("localhost", "juliet", reg("other.example", "n1", 30), 5)) == []
    # XEP-0357 §5: the same service and node again replaces the options (and counts as new)
    assert done(s.push.enable("localhost", "juliet", reg("push.example", "n1", 40, FORM),
                              5)) == []
    assert done(s.push.get("localhost", "juliet")) == [
        reg("push.example", "n2", 20, FORM), reg("other.example", "n1", 30),
        reg("push.example", "n1", 40, FORM)]
    assert done(s.push.get("localhost", "romeo")) == []
    # §6: with a node only that one goes; without, every node of the service
    assert done(s.push.disable("localhost", "juliet", "push.example", "n9")) == []
    assert done(s.push.disable("localhost", "juliet", "push.example", "n2")) == [
        reg("push.example", "n2", 20, FORM)]
    done(s.push.enable("localhost", "juliet", reg("push.example", "n3", 50), 5))
    assert sorted(r.node for r in done(s.push.disable("localhost", "juliet",
                                                        "push.example"))) == ["n1", "n3"]
    assert done(s.push.get("localhost", "juliet")) == [reg("other.example", "n1", 30)]


def test_limit_drops_the_oldest_and_long_values_fit(db: Database) -> None:
    s = Storage(db)
    service = "p" * 1023 + "@" + "push.example" + "/" + "r" * 1000  # longer than a key
    node = "n" * 1023
    done(s.push.enable("localhost", "juliet", reg(service, node, 1), 2))
    done(s.push.enable("localhost", "juliet", reg(service, node[:-1], 2), 2))
    assert done(s.push.enable("localhost", "juliet", reg("push.example", "x", 3), 2)) == [
        reg(service, node, 1)]
    assert [r.node for r in done(s.push.get("localhost", "juliet"))] == [node[:-1], "x"]
    # re-enabling the oldest makes it the newest: the other one goes
    assert done(s.push.enable("localhost", "juliet", reg(service, node[:-1], 4), 2)) == []
    assert done(s.push.enable("localhost", "juliet", reg("push.example", "y", 5), 2)) == [
        reg("push.example", "x", 3)]


def test_account_deletion_removes_registrations(db: Database) -> None:
    s = Storage(db)
    done(s.accounts.create("localhost", "juliet", CREDS))
    done(s.push.enable("localhost", "juliet", reg("push.example", "n1", 1), 5))
    done(s.push.enable("localhost", "nurse", reg("push.example", "n1", 1), 5))
    assert done(s.accounts.delete("localhost", "juliet"))
    assert done(s.push.get("localhost", "juliet")) == []
    assert len(done(s.push.get("localhost", "nurse"))) == 1
