"""Routing and RFC 6121 §8.5 delivery rules, in process (no sockets)."""

from __future__ import annotations

import pytest

from tests.support.inproc import FakeSession, add_user, make_server, resolve
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StreamError, parse_error
from xmppd.server import XmppServer


@pytest.fixture
def server() -> XmppServer:
    s = make_server()
    for u in ("alice", "bob", "carol"):
        add_user(s, f"{u}@localhost")
    return s


def msg(to: str, type_: str | None = "chat", body: str = "hi") -> st.Element:
    m = st.make("message", attrs={"to": to, "id": "m1"})
    if type_:
        m.attributes["type"] = type_
    st.add(m, "body", text_=body)
    return m


def errors(s: FakeSession) -> list[tuple[str, str]]:
    return [parse_error(e) for e in s.take() if e.getAttribute("type") == "error"]  # type: ignore[misc]


def test_full_jid_delivery_and_from_stamp(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a")
    b = FakeSession(server, "bob@localhost/b")
    a.stanza(msg("bob@localhost/b"))
    [got] = b.take()
    assert got.attributes["from"] == "alice@localhost/a"


def test_bare_jid_goes_to_highest_nonnegative_priority(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a")
    b1 = FakeSession(server, "bob@localhost/1", priority=3)
    b2 = FakeSession(server, "bob@localhost/2", priority=3)
    b3 = FakeSession(server, "bob@localhost/3", priority=1)
    b4 = FakeSession(server, "bob@localhost/4", priority=-1)
    for b in (b1, b2, b3, b4):
        b.take()
    a.stanza(msg("bob@localhost"))
    assert [len(b.take()) for b in (b1, b2, b3, b4)] == [1, 1, 0, 0]
    a.stanza(msg("bob@localhost", type_="headline"))
    assert [len(b.take()) for b in (b1, b2, b3, b4)] == [1, 1, 1, 0]


def test_message_types_when_nobody_is_online(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a")
    for t in ("chat", None, "headline", "groupchat"):
        a.stanza(msg("bob@localhost", type_=t))
        assert errors(a) == [("cancel", "service-unavailable")], t
    a.stanza(msg("bob@localhost", type_="error"))
    assert a.take() == []  # errors are never answered with errors


def test_undelivered_hook_can_take_the_message(server: XmppServer) -> None:
    stored: list[st.Element] = []
    server.hosts["localhost"].on(H.MESSAGE_UNDELIVERED,
                                 lambda ev: stored.append(ev.stanza) or True)
    a = FakeSession(server, "alice@localhost/a")
    a.stanza(msg("bob@localhost"))
    a.stanza(msg("bob@localhost/gone"))  # chat to a gone resource falls back to the bare JID
    assert len(stored) == 2 and a.take() == []
    a.stanza(msg("bob@localhost/gone", type_="headline"))
    assert errors(a) == [("cancel", "service-unavailable")]


def test_unknown_user_and_negative_priority(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a")
    a.stanza(msg("nobody@localhost"))
    assert errors(a) == [("cancel", "service-unavailable")]
    neg = FakeSession(server, "bob@localhost/n", priority=-5)
    neg.take()
    a.stanza(msg("bob@localhost"))
    assert errors(a) == [("cancel", "service-unavailable")] and neg.take() == []


def test_iq_rules(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a")
    b = FakeSession(server, "bob@localhost/b")
    ping = st.iq("get", "p1", to="bob@localhost/b")
    st.add(ping, "ping", "urn:xmpp:ping")
    a.stanza(ping)
    assert b.take()[0].attributes["id"] == "p1"
    gone = st.iq("get", "p2", to="bob@localhost/gone")
    st.add(gone, "ping", "urn:xmpp:ping")
    a.stanza(gone)
    assert errors(a) == [("cancel", "service-unavailable")]
    # to the bare JID: answered by the server on the account's behalf
    bare = st.iq("get", "p3", to="bob@localhost")
    st.add(bare, "ping", "urn:xmpp:ping")
    a.stanza(bare)
    [r] = a.take()
    assert r.attributes["type"] == "result" and r.attributes["from"] == "bob@localhost"
    assert b.take() == []
    unknown = st.iq("get", "p4", to="localhost")
    st.add(unknown, "query", "urn:unknown")
    a.stanza(unknown)
    assert errors(a) == [("cancel", "service-unavailable")]
    noto = st.iq("get", "p5")
    st.add(noto, "ping", "urn:xmpp:ping")
    a.stanza(noto)
    [r] = a.take()
    assert r.attributes == {"type": "result", "id": "p5", "to": "alice@localhost/a",
                            "from": "alice@localhost"}


def test_iq_handler_failure_is_answered_like_before_binding(server: XmppServer) -> None:
    """The one IQ error boundary (Host.answer_iq): an unexpected exception in a handler is an
    internal-server-error answer, addressed as a result would be."""
    host = server.hosts["localhost"]

    def broken(_req: object) -> None:
        raise RuntimeError("a bug in a plugin")

    host.iq("get", "urn:example:broken", "query", broken)
    host.iq("get", "urn:example:broken", "query", broken, scope="account")
    a = FakeSession(server, "alice@localhost/a")
    for to, frm in (("localhost", "localhost"), (None, "alice@localhost")):
        iq = st.iq("get", "b1", to=to)
        st.add(iq, "query", "urn:example:broken")
        a.stanza(iq)
        [r] = a.take()
        assert parse_error(r) == ("cancel", "internal-server-error")
        assert r.attributes["from"] == frm and r.attributes["to"] == "alice@localhost/a"


def test_jid_malformed_and_remote(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a")
    a.stanza(msg("a@b@c"))
    [e] = a.take()
    assert parse_error(e) == ("modify", "jid-malformed")
    assert e.attributes["from"] == "localhost"
    a.stanza(msg("x@remote.example"))
    assert errors(a) == [("cancel", "remote-server-not-found")]


def test_resource_conflict_replaces_and_ends_old_session(server: XmppServer) -> None:
    closed: list[str] = []
    server.hosts["localhost"].on(H.SESSION_CLOSED, lambda ev: closed.append(ev.reason))
    old = FakeSession(server, "alice@localhost/same")
    new = FakeSession(server, "alice@localhost/same")
    assert old.closed_with is not None and old.closed_with.condition == "conflict"
    assert closed == ["replaced"]
    assert server.sessions.get(new.jid) is new  # type: ignore[arg-type]


def test_presence_priority_validation(server: XmppServer) -> None:
    a = FakeSession(server, "alice@localhost/a", priority=None)
    p = st.make("presence")
    st.add(p, "priority", text_="200")
    a.stanza(p)
    assert errors(a) == [("modify", "bad-request")]
    assert not a.available


def test_shutdown_closes_sessions_with_system_shutdown(server: XmppServer) -> None:
    class Conn:
        def __init__(self) -> None:
            self.err: StreamError | None = None

        def close(self, error: StreamError | None = None) -> None:
            self.err = error
            server.connections.discard(self)  # type: ignore[arg-type]

        def abort(self) -> None:
            pass

    c = Conn()
    server.connections.add(c)  # type: ignore[arg-type]
    resolve(server.stop())
    assert c.err is not None and c.err.condition == "system-shutdown"
