"""Invitation tokens (``xmppd invite``) as the register plugin uses them."""

from __future__ import annotations

import json
from typing import Any

from storage.facade import Storage
from storage.invites import Invite
from storage.sql import Database
from tests.storage.test_contract import db, done

__all__ = ["db"]


def run(coro: Any) -> Any:
    from twisted.internet.defer import Deferred

    return done(Deferred.fromCoroutine(coro))


def test_take_and_give_back(db: Database) -> None:
    s = Storage(db)
    done(s.kv.set("localhost", "", "invites", "tok", json.dumps({"uses": 2, "expires": 99.5})))
    assert done(s.invites.get("localhost", "tok")) == Invite(2, 99.5)
    assert done(s.invites.get("other.example", "tok")) is None
    assert done(s.invites.get("localhost", "")) is None
    assert done(s.invites.get("localhost", "x" * 500)) is None
    assert run(s.invites.take("localhost", "tok")) is True
    assert run(s.invites.take("localhost", "tok")) is True
    assert run(s.invites.take("localhost", "tok")) is False  # used up
    assert done(s.invites.get("localhost", "tok")) == Invite(0, 99.5)
    run(s.invites.give_back("localhost", "tok"))
    assert done(s.invites.get("localhost", "tok")) == Invite(1, 99.5)
    assert run(s.invites.take("localhost", "nope")) is False
    done(s.kv.set("localhost", "", "invites", "bad", "not json"))
    assert done(s.invites.get("localhost", "bad")) is None
    assert run(s.invites.take("localhost", "bad")) is False
