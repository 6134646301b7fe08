"""XEP-0045 transcripts against the in-process server: the exact stanzas, in order, for the
cases where order or exactness matters (§7.1 order of events, §7.2.22, §18.1.2 ghosts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.inproc import FakeSession, add_user, make_server, resolve
from xmppd import stanza as st
from xmppd.errors import parse_error
from xmppd.jid import JID
from xmppd.server import XmppServer
from xmppd.xmlparser import parse_fragment

ROOM = "coven@conference.localhost"
MUC = "http://jabber.org/protocol/muc"
USER = "http://jabber.org/protocol/muc#user"
OWNER = "http://jabber.org/protocol/muc#owner"


@pytest.fixture
def srv() -> Iterator[XmppServer]:
    server = make_server(["disco", "roster", "presence", "muc"])
    for u in ("crone", "wicca", "hag"):
        add_user(server, f"{u}@localhost")
    yield server


def got(s: FakeSession) -> list[st.Element]:
    """What a session received, as its client parses it (payloads are pre-serialized)."""
    return [parse_fragment(st.serialize(e)) for e in s.take()]


def send(s: FakeSession, xml: str) -> list[st.Element]:
    s.stanza(parse_fragment(xml))
    return got(s)


def join(s: FakeSession, nick: str, extra: str = "", room: str = ROOM) -> list[st.Element]:
    return send(s, f"<presence to='{room}/{nick}'><x xmlns='{MUC}'>{extra}</x></presence>")


def codes(el: st.Element) -> list[int]:
    x = st.child(el, "x", USER)
    return [int(c.getAttribute("code")) for c in st.children(x, "status", USER)] if x else []


def item(el: st.Element) -> dict[str, str]:
    x = st.child(el, "x", USER)
    i = st.child(x, "item", USER) if x is not None else None
    return dict(i.attributes) if i is not None else {}


def instant(owner: FakeSession, room: str = ROOM) -> None:
    out = send(owner, f"<iq type='set' id='inst' to='{room}'><query xmlns='{OWNER}'>"
                      "<x xmlns='jabber:x:data' type='submit'/></query></iq>")
    assert out[-1].getAttribute("type") == "result"


def session(srv: XmppServer, jid: str, presence: bool = True) -> FakeSession:
    s = FakeSession(srv, jid, priority=0 if presence else None)
    s.take()
    return s


def test_order_of_events_on_entering(srv: XmppServer) -> None:
    """§7.1: others' presence, own presence (110), history, subject."""
    crone, wicca, hag = (session(srv, f"{u}@localhost/r") for u in ("crone", "wicca", "hag"))
    out = join(crone, "firstwitch")
    assert [e.name for e in out] == ["presence", "message"]
    assert codes(out[0]) == [110, 170, 201]
    assert item(out[0]) == {"affiliation": "owner", "role": "moderator",
                            "jid": "crone@localhost/r"}
    assert st.child_text(out[1], "subject", st.NS_CLIENT) == ""
    instant(crone)
    join(wicca, "secondwitch")
    crone.take()
    send(wicca, f"<message to='{ROOM}' type='groupchat' id='h1'><body>Thrice</body></message>")
    crone.take()
    out = join(hag, "thirdwitch", "<history maxstanzas='5'/>")
    kinds = [(e.name, e.getAttribute("from")) for e in out]
    assert kinds == [("presence", f"{ROOM}/firstwitch"), ("presence", f"{ROOM}/secondwitch"),
                     ("presence", f"{ROOM}/thirdwitch"), ("message", f"{ROOM}/secondwitch"),
                     ("message", ROOM)]
    assert codes(out[2]) == [110, 170]
    assert "jid" not in item(out[0])  # semi-anonymous: real JIDs only for moderators
    history = parse_fragment(st.serialize(out[3]))
    delay = st.child(history, "delay", st.NS_DELAY)
    assert delay is not None and delay.getAttribute("from") == ROOM
    assert history.getAttribute("id") == "h1"
    # the owner (a moderator) sees the newcomer's real JID, the participant does not
    assert item(got(crone)[0])["jid"] == "hag@localhost/r"
    assert "jid" not in item(got(wicca)[0])


def test_presence_without_muc_extension_is_an_explicit_kick(srv: XmppServer) -> None:
    """§7.2.22: a non-occupant's plain presence (groupchat 1.0) gets 110, 307 and 333."""
    crone = session(srv, "crone@localhost/r")
    out = send(crone, f"<presence to='{ROOM}/firstwitch'/>")
    assert len(out) == 1 and out[0].getAttribute("type") == "unavailable"
    assert codes(out[0]) == [110, 307, 333]
    assert item(out[0]) == {"affiliation": "none", "role": "none"}
    assert not srv.router.routes["conference.localhost"].rooms  # type: ignore[attr-defined]


def test_gone_resource_is_removed_on_the_error_bounce(srv: XmppServer) -> None:
    """§18.1.2: a groupchat message to an occupant whose resource is gone bounces with
    service-unavailable; the room removes that occupant with status 333."""
    crone, wicca = session(srv, "crone@localhost/r"), session(srv, "wicca@localhost/r")
    join(crone, "firstwitch")
    instant(crone)
    join(wicca, "secondwitch")
    crone.take()
    srv.sessions.unbind(wicca)  # the resource vanished without any unavailable presence
    out = send(crone, f"<message to='{ROOM}' type='groupchat'><body>anyone?</body></message>")
    gone = [e for e in out if e.name == "presence"]
    assert len(gone) == 1 and gone[0].getAttribute("from") == f"{ROOM}/secondwitch"
    assert gone[0].getAttribute("type") == "unavailable" and codes(gone[0]) == [333]
    assert item(gone[0])["role"] == "none"


def test_blocked_occupant_is_not_mistaken_for_a_ghost(srv: XmppServer) -> None:
    """An error from a local user whose session is alive (e.g. a privacy rule) keeps it."""
    crone, wicca = session(srv, "crone@localhost/r"), session(srv, "wicca@localhost/r")
    join(crone, "firstwitch")
    instant(crone)
    join(wicca, "secondwitch")
    crone.take()
    send(wicca, f"<message to='{ROOM}/firstwitch' type='error'><error type='cancel'>"
                "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"
                "</message>")
    assert got(crone) == []


def test_session_end_removes_an_occupant_that_never_sent_presence(srv: XmppServer) -> None:
    """The presence plugin only tells directed-presence targets about sessions that sent
    initial presence; the room still removes a session that ends."""
    crone = session(srv, "crone@localhost/r")
    wicca = session(srv, "wicca@localhost/r", presence=False)
    join(crone, "firstwitch")
    instant(crone)
    join(wicca, "secondwitch")
    crone.take()
    wicca.close()
    out = got(crone)
    assert [(e.getAttribute("from"), e.getAttribute("type")) for e in out] == [
        (f"{ROOM}/secondwitch", "unavailable")]


def test_multi_session_nick(srv: XmppServer) -> None:
    """§7.2.9: the same bare JID enters with the same nick from two resources; in-room
    traffic reaches both, and leaving with one keeps the occupant."""
    crone = session(srv, "crone@localhost/r")
    hag1, hag2 = session(srv, "hag@localhost/one"), session(srv, "hag@localhost/two")
    join(crone, "firstwitch")
    instant(crone)
    join(hag1, "thirdwitch")
    out = join(hag2, "thirdwitch")
    mine = next(e for e in out if e.getAttribute("from") == f"{ROOM}/thirdwitch")
    assert codes(mine) == [110, 170]
    crone.take()
    hag1.take()
    send(crone, f"<message to='{ROOM}' type='groupchat'><body>both?</body></message>")
    assert len(hag1.take()) == 1 and len(hag2.take()) == 1
    send(crone, f"<message to='{ROOM}/thirdwitch' type='chat'><body>pm</body></message>")
    assert len(hag1.take()) == 1 and len(hag2.take()) == 1  # §7.2.9: PMs to all resources
    out = send(hag2, f"<presence to='{ROOM}/thirdwitch' type='unavailable'/>")
    assert codes(out[0]) == [110] and out[0].getAttribute("type") == "unavailable"
    # the others see the occupant again, now through the remaining session
    shown = got(crone)
    assert len(shown) == 1 and shown[0].getAttribute("type") is None
    assert item(shown[0])["jid"] == "hag@localhost/one"


def test_owner_leaving_a_locked_room_destroys_it(srv: XmppServer) -> None:
    """§10.1.3: the owner goes away before configuring: the room is destroyed."""
    crone = session(srv, "crone@localhost/r")
    join(crone, "firstwitch")
    out = send(crone, f"<presence to='{ROOM}/firstwitch' type='unavailable'/>")
    x = st.child(out[0], "x", USER)
    assert x is not None and st.child(x, "destroy", USER) is not None
    wicca = session(srv, "wicca@localhost/r")
    out = join(wicca, "secondwitch")  # a new room, owned by the newcomer
    assert codes(out[0]) == [110, 170, 201]


def test_errors_carry_the_room_as_by(srv: XmppServer) -> None:
    crone, wicca = session(srv, "crone@localhost/r"), session(srv, "wicca@localhost/r")
    join(crone, "firstwitch")
    out = join(wicca, "secondwitch")  # locked room
    err = st.child(out[0], "error", st.NS_CLIENT)
    assert parse_error(out[0]) == ("cancel", "item-not-found")
    assert err is not None and err.getAttribute("by") == ROOM
    assert st.child(out[0], "x", MUC) is not None  # the MUC extension comes back (§7.2.6)
    out = send(wicca, f"<presence to='{ROOM}'><x xmlns='{MUC}'/></presence>")
    assert parse_error(out[0]) == ("modify", "jid-malformed")  # §7.2.1 no nickname
    instant(crone)
    for nick in ("%20%20", "x" * 65):
        nick = nick.replace("%20", " ")
        out = join(wicca, nick)
        assert parse_error(out[0]) == ("modify", "jid-malformed"), nick


def test_unconfigured_room_is_destroyed_after_the_lock_timeout(srv: XmppServer) -> None:
    """§10.1.1 (and §20.5: rooms left unconfigured): the lock does not last for ever."""
    crone = session(srv, "crone@localhost/r")
    join(crone, "firstwitch")
    srv.clock.advance(299)  # type: ignore[attr-defined]
    assert got(crone) == []
    srv.clock.advance(2)  # type: ignore[attr-defined]
    out = got(crone)
    assert len(out) == 1 and out[0].getAttribute("type") == "unavailable"
    x = st.child(out[0], "x", USER)
    destroy = st.child(x, "destroy", USER) if x is not None else None
    assert destroy is not None
    assert st.child_text(destroy, "reason", USER) == "The room was not configured in time"
    assert not srv.router.routes["conference.localhost"].rooms  # type: ignore[attr-defined]


def test_deleted_account_loses_its_affiliations(srv: XmppServer) -> None:
    """XEP-0077 §3.2: deleting an account removes every bit of its data, room
    affiliations included (they would otherwise pass to whoever registers the name again)."""
    crone = session(srv, "crone@localhost/r")
    join(crone, "firstwitch")
    instant(crone)
    send(crone, f"<iq type='set' id='a1' to='{ROOM}'><query xmlns='{MUC}#admin'>"
                "<item affiliation='outcast' jid='hag@localhost'/>"
                "<item affiliation='member' jid='wicca@localhost'/></query></iq>")
    room = srv.router.routes["conference.localhost"].rooms["coven"]  # type: ignore[attr-defined]
    assert set(room.affiliations) == {"crone@localhost", "hag@localhost", "wicca@localhost"}
    assert resolve(srv.delete_account(JID.parse("hag@localhost")))
    assert set(room.affiliations) == {"crone@localhost", "wicca@localhost"}
