"""Room nicknames under the RFC 8266 Nickname profile (plugins/muc/nicks.py): the form a
room shows, the comparison key look-alikes share, and what is no nickname at all; and the
room's index of reserved nicks (Room.nick_reserved_by)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from plugins.muc import nicks
from plugins.muc.config import RoomConfig
from plugins.muc.room import Room
from xmppd.jid import JID

ALICE_LOOKALIKES = (
    "alice",
    "ALICE",
    "Alice",
    "\uff41lice",  # FULLWIDTH LATIN SMALL LETTER A
    "\uff21\uff2c\uff29\uff23\uff25",  # fullwidth ALICE
    " alice ",  # leading and trailing spaces (RFC 8266 §2.1 rule 2b)
    "alice\u00a0",  # NO-BREAK SPACE, a non-ASCII space (rule 2a), then trimmed
    "\u3000alice",  # IDEOGRAPHIC SPACE
)


@pytest.mark.parametrize("nick", ALICE_LOOKALIKES)
def test_lookalikes_share_the_comparison_key(nick: str) -> None:
    assert nicks.prepare(nick)[1] == "alice"
    assert nicks.key(nick) == "alice"


@pytest.mark.parametrize(("given", "shown"), [
    ("alice", "alice"),
    ("ALICE", "ALICE"),  # §2.3: case is kept; case mapping is for comparison only
    ("\uff41lice", "alice"),  # NFKC maps the width
    (" alice ", "alice"),
    ("Alice  \u2003 Bob", "Alice Bob"),  # rule 2a and 2c: one ASCII space inside
    ("Richard \u2163", "Richard IV"),  # RFC 8266 table 1 example 10 (ROMAN NUMERAL FOUR)
    ("Cafe\u0301", "Caf\u00e9"),
    ("\u265a", "\u265a"),  # example 9: symbols are nicknames too
])
def test_shown_form_is_the_enforced_form(given: str, shown: str) -> None:
    assert nicks.prepare(given)[0] == shown


def test_rfc8266_table1_comparisons() -> None:
    """RFC 8266 §3 table 1: capital and small sigma match, final sigma matches neither
    (toLowerCase, not case folding); "Richard" with ROMAN NUMERAL FOUR is "richard iv"."""
    assert nicks.key("Foo Bar") == nicks.key("foo bar") == "foo bar"
    assert nicks.key("\u03a3") == nicks.key("\u03c3") == "\u03c3"
    assert nicks.key("\u03c2") == "\u03c2"
    assert nicks.key("Richard \u2163") == "richard iv"
    assert nicks.key("\u03d4") == "\u03cb"  # example 8: stable only after reapplying


def test_distinct_nicks_stay_distinct() -> None:
    keys = {nicks.key(n) for n in ("alice", "alice2", "al ice", "alicé", "bob")}
    assert len(keys) == 5


@pytest.mark.parametrize("bad", [
    "",
    "   ",  # nothing left after trimming: zero length (RFC 8266 §2.3)
    "\u3000\u00a0",  # only non-ASCII spaces
    "\u013f",  # NFKC gives L + MIDDLE DOT without the l·l context the class requires
    "\u3131",  # NFKC gives an old Hangul jamo, disallowed in the FreeformClass
    "a\u0007b",  # a control character
])
def test_what_is_no_nickname(bad: str) -> None:
    with pytest.raises(nicks.NickError):
        nicks.prepare(bad)
    assert nicks.key(bad) is None


def test_prepare_is_cached() -> None:
    nicks.prepare.cache_clear()
    nicks.prepare("Zed")
    nicks.prepare("Zed")
    assert nicks.prepare.cache_info().hits == 1


def _room() -> Room:
    service = cast(Any, object())
    return Room(service, JID("coven", "conference.localhost"), RoomConfig(), b"k" * 32, 0)


def test_reserved_nicks_are_found_by_key_and_follow_changes() -> None:
    room = _room()
    room.set_affiliation("bob@localhost", "member", "Bob")
    room.set_affiliation("eve@localhost", "outcast", "Eve")  # outcasts reserve nothing
    room.set_affiliation("old@localhost", "member", "\u3000\u00a0")  # stored, invalid
    assert room.nick_reserved_by(nicks.prepare("\uff42OB")[1]) == "bob@localhost"
    assert room.nick_reserved_by(nicks.prepare("eve")[1]) is None
    room.set_affiliation("bob@localhost", "member", "Robert")
    assert room.nick_reserved_by("bob") is None
    assert room.nick_reserved_by("robert") == "bob@localhost"
    room.drop_affiliation("bob@localhost")
    assert room.nick_reserved_by("robert") is None
