"""XEP-0045 behaviour that depends on time, as transcripts on the in-process server's
task.Clock: flood control (§20.5: a token bucket per occupant, refilled over time) and
discussion history by 'since' and 'seconds' (§7.2.14) through a real join."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.inproc import FakeSession, add_user, make_server
from tests.unit.test_muc_transcripts import got, instant, join, send, session
from xmppd import stanza as st
from xmppd.server import XmppServer

ROOM = "coven@conference.localhost"


@pytest.fixture
def srv() -> Iterator[XmppServer]:
    server = make_server(["disco", "roster", "presence", "muc"],
                         options={"muc": {"message_rate": 2.0, "message_burst": 4}})
    for u in ("crone", "wicca", "hag"):
        add_user(server, f"{u}@localhost")
    server.clock.advance(1_700_000_000)  # type: ignore[attr-defined]
    yield server


def say(s: FakeSession, mid: str, text: str = "x") -> list[st.Element]:
    return send(s, f"<message to='{ROOM}' type='groupchat' id='{mid}'><body>{text}</body>"
                   "</message>")


def outcome(out: list[st.Element], mid: str) -> str:
    """'groupchat' if the room broadcast it back to its sender, else the error condition."""
    for e in out:
        if e.getAttribute("id") == mid and e.name == "message":
            if e.getAttribute("type") == "error":
                err = st.child(e, "error", st.NS_CLIENT)
                assert err is not None and err.getAttribute("type") == "wait"
                return next(c.name for c in err.elements())
            return e.getAttribute("type", "")
    raise AssertionError(f"no answer for {mid}")


def bodies(out: list[st.Element]) -> list[str]:
    return [st.child_text(e, "body", st.NS_CLIENT) or "" for e in out if e.name == "message"
            and st.child(e, "body", st.NS_CLIENT) is not None]


def test_flood_control_refills_over_time_and_holds_back_one_occupant(srv: XmppServer
                                                                       ) -> None:
    crone, wicca = session(srv, "crone@localhost/r"), session(srv, "wicca@localhost/r")
    join(crone, "firstwitch")
    instant(crone)
    join(wicca, "secondwitch")
    clock = srv.clock  # type: ignore[attr-defined]
    clock.advance(10)  # both buckets full
    results = [outcome(say(wicca, f"f{n}"), f"f{n}") for n in range(7)]
    assert results == ["groupchat"] * 4 + ["resource-constraint"] * 3  # the burst, then no
    seen = say(crone, "calm")
    assert outcome(seen, "calm") == "groupchat"  # another occupant is not held back
    assert bodies(seen) == ["x"] * 4 + ["x"]  # the others saw only what was let through
    clock.advance(0.49)
    assert outcome(say(wicca, "early"), "early") == "resource-constraint"
    clock.advance(0.02)  # 0.51 s at 2 a second: one token
    assert outcome(say(wicca, "one"), "one") == "groupchat"
    assert outcome(say(wicca, "two"), "two") == "resource-constraint"
    clock.advance(60)  # refills up to the burst, not beyond
    assert [outcome(say(wicca, f"g{n}"), f"g{n}") for n in range(5)] == (
        ["groupchat"] * 4 + ["resource-constraint"])
    assert bodies(got(crone)) == ["x"] * (1 + 4)  # "one" and the refill's four


def test_history_since_and_seconds_on_entering(srv: XmppServer) -> None:
    crone = session(srv, "crone@localhost/r")
    join(crone, "firstwitch")
    instant(crone)
    clock = srv.clock  # type: ignore[attr-defined]
    for n in range(2):
        say(crone, f"m{n}", f"m{n}")
    clock.advance(30)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.seconds()))
    clock.advance(30)
    for n in range(2, 4):
        say(crone, f"m{n}", f"m{n}")
    clock.advance(40)  # m0, m1 are 100 s old; m2, m3 40 s
    wicca = session(srv, "wicca@localhost/r")
    assert bodies(join(wicca, "w1", f"<history since='{since}'/>")) == ["m2", "m3"]
    hag = session(srv, "hag@localhost/r")
    assert bodies(join(hag, "h1", "<history seconds='41'/>")) == ["m2", "m3"]
    send(hag, f"<presence to='{ROOM}/h1' type='unavailable'/>")
    assert bodies(join(hag, "h2", "<history seconds='39'/>")) == []
    send(hag, f"<presence to='{ROOM}/h2' type='unavailable'/>")
    assert bodies(join(hag, "h3", "<history seconds='600' maxstanzas='3'/>")) == [
        "m1", "m2", "m3"]
