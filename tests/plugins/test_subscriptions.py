"""RFC 6121 Appendix A, row by row, through the running plugin (in process).

For each of the nine states and each subscription stanza we set the roster up in that
state, send the stanza (outbound: the local user sends it; inbound: it arrives from a remote
contact) and check the resulting state, the roster push, and whether the stanza was routed
or delivered.
"""

from __future__ import annotations

from typing import Any

import pytest

from plugins.presence import states
from plugins.presence.states import State
from plugins.roster import Roster
from storage.roster import RosterItem
from tests.support.inproc import FakeSession, add_user, make_server, resolve
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.jid import JID
from xmppd.server import XmppServer

N, NO, NI, NOI = "None", "None + Pending Out", "None + Pending In", "None + Pending Out+In"
T, TI, F, FO, B = "To", "To + Pending In", "From", "From + Pending Out", "Both"
SAME = "no state change"

# The RFC's tables, written out as the RFC prints them: (existing state, result).
OUTBOUND = {
    "subscribe": [(N, NO), (NO, SAME), (NI, NOI), (NOI, SAME), (T, SAME), (TI, SAME),
                  (F, FO), (FO, SAME), (B, SAME)],
    "unsubscribe": [(N, SAME), (NO, N), (NI, SAME), (NOI, NI), (T, N), (TI, NI), (F, SAME),
                    (FO, F), (B, F)],
    "subscribed": [(N, SAME), (NO, SAME), (NI, F), (NOI, FO), (T, SAME), (TI, B), (F, SAME),
                   (FO, SAME), (B, SAME)],
    "unsubscribed": [(N, SAME), (NO, SAME), (NI, N), (NOI, NO), (T, SAME), (TI, T), (F, N),
                     (FO, NO), (B, T)],
}
INBOUND = {
    "subscribe": [(N, NI), (NO, NOI), (NI, SAME), (NOI, SAME), (T, TI), (TI, SAME),
                  (F, SAME), (FO, SAME), (B, SAME)],
    "unsubscribe": [(N, SAME), (NO, SAME), (NI, N), (NOI, NO), (T, SAME), (TI, T), (F, N),
                    (FO, NO), (B, T)],
    "subscribed": [(N, SAME), (NO, T), (NI, SAME), (NOI, TI), (T, SAME), (TI, SAME),
                   (F, SAME), (FO, B), (B, SAME)],
    "unsubscribed": [(N, SAME), (NO, N), (NI, SAME), (NOI, NI), (T, N), (TI, NI), (F, SAME),
                     (FO, F), (B, F)],
}
BY_NAME = {s.name: s for s in states.ALL}
USER = JID.parse("alice@localhost")
LOCAL = "bob@localhost"
REMOTE = "carol@remote.example"


class Remote:
    """Collects what the server routes to a remote domain (the default route)."""

    def __init__(self) -> None:
        self.got: list[st.Element] = []

    async def receive(self, ev: H.StanzaEvent) -> None:
        self.got.append(ev.stanza)


def setup_server() -> tuple[XmppServer, Roster, Remote, FakeSession]:
    server = make_server(["roster", "presence"])
    add_user(server, "alice@localhost")
    add_user(server, "bob@localhost")
    remote = Remote()
    server.router.default_route = remote
    alice = FakeSession(server, "alice@localhost/r")
    alice.data["roster_requested"] = True
    alice.take()
    roster = server.hosts["localhost"].plugin("roster")
    assert isinstance(roster, Roster)
    return server, roster, remote, alice


def put_state(server: XmppServer, roster: Roster, contact: str, state: State) -> None:
    if state.subscription != "none" or state.pending_out:
        resolve(roster.put(USER, RosterItem(contact, state.subscription, state.pending_out),
                           push=False))
    if state.pending_in:
        req = st.make("presence", attrs={"type": "subscribe", "from": contact,
                                         "to": str(USER)})
        resolve(roster.set_pending(USER, contact, req))


def current(roster: Roster, contact: str) -> State:
    roster.cache.clear()  # read back what was committed, not the cache
    return resolve(roster.load(USER)).state(contact)


def pushes(session: FakeSession) -> list[st.Element]:
    return [e for e in session.take() if e.name == "iq"]


def rows(table: dict[str, list[tuple[str, str]]]) -> list[Any]:
    return [pytest.param(kind, before, after, id=f"{kind}:{before}->{after}")
            for kind, entries in table.items() for before, after in entries]


@pytest.mark.parametrize("kind,before,after", rows(OUTBOUND))
def test_outbound(kind: str, before: str, after: str) -> None:
    server, roster, remote, alice = setup_server()
    put_state(server, roster, REMOTE, BY_NAME[before])
    alice.stanza(st.make("presence", attrs={"type": kind, "to": REMOTE}))
    expected = BY_NAME[before] if after == SAME else BY_NAME[after]
    assert current(roster, REMOTE) == expected
    item_changed = (BY_NAME[before].subscription, BY_NAME[before].pending_out) != (
        expected.subscription, expected.pending_out)
    got_pushes = pushes(alice)
    if item_changed:
        assert got_pushes, "a changed item must be pushed (RFC 6121 §2.1.6)"
    routed = [s for s in remote.got if s.getAttribute("type") == kind]
    if after != SAME:
        assert len(routed) == 1
        assert routed[0].getAttribute("from") == "alice@localhost"  # bare JID (§3.1.2)
    if kind == "subscribed" and after == SAME:
        assert routed == []  # pre-approval or nothing to approve: never routed


@pytest.mark.parametrize("kind,before,after", rows(INBOUND))
def test_inbound(kind: str, before: str, after: str) -> None:
    server, roster, remote, alice = setup_server()
    put_state(server, roster, REMOTE, BY_NAME[before])
    resolve(server.router.route(
        st.make("presence", attrs={"type": kind, "from": REMOTE, "to": "alice@localhost"}),
        None))
    expected = BY_NAME[before] if after == SAME else BY_NAME[after]
    assert current(roster, REMOTE) == expected
    delivered = [e for e in alice.take() if e.name == "presence"
                 and e.getAttribute("type") == kind]
    if after != SAME:
        assert len(delivered) == 1, "a state-changing stanza is delivered to the user"
    elif kind != "subscribe":
        assert delivered == [], "a stanza that changes nothing is not delivered (RFC 6121 §3)"
    if kind == "subscribe" and BY_NAME[before].subscription in ("from", "both"):
        auto = [s for s in remote.got if s.getAttribute("type") == "subscribed"]
        assert len(auto) == 1  # §3.1.3: answered on the user's behalf


def test_pre_approval_then_request_is_auto_approved() -> None:
    server, roster, remote, alice = setup_server()
    alice.stanza(st.make("presence", attrs={"type": "subscribed", "to": REMOTE}))
    assert remote.got == []
    item = resolve(roster.load(USER)).items[REMOTE]
    assert item.approved and item.subscription == "none"
    resolve(server.router.route(st.make("presence", attrs={
        "type": "subscribe", "from": REMOTE, "to": "alice@localhost"}), None))
    assert current(roster, REMOTE) == states.FROM
    # the approval, then our current presence (RFC 6121 §3.1.5)
    assert [s.getAttribute("type") for s in remote.got] == ["subscribed", None]
    assert not resolve(roster.load(USER)).items[REMOTE].approved


def test_local_users_end_to_end() -> None:
    server, roster, _remote, alice = setup_server()
    bob = FakeSession(server, "bob@localhost/b")
    bob.data["roster_requested"] = True
    bob.take()
    alice.stanza(st.make("presence", attrs={"type": "subscribe", "to": LOCAL}))
    [req] = [e for e in bob.take() if e.name == "presence"]
    assert req.attributes["from"] == "alice@localhost" and req.attributes["type"] == "subscribe"
    bob.stanza(st.make("presence", attrs={"type": "subscribed", "to": "alice@localhost"}))
    assert current(roster, LOCAL) == states.TO
    got = alice.take()
    assert any(e.name == "presence" and e.getAttribute("type") == "subscribed" for e in got)
    assert any(e.name == "presence" and e.getAttribute("from") == "bob@localhost/b"
               and e.getAttribute("type") is None for e in got)  # §3.1.5 current presence
    bob_roster = resolve(roster.load(JID.parse(LOCAL))).items["alice@localhost"]
    assert bob_roster.subscription == "from"
    assert any(e.name == "iq" for e in bob.take())  # bob's roster was pushed too
