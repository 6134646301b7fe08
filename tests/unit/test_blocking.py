"""XEP-0191 §6 JID matching, and enforcement through the running plugin (in process)."""

from __future__ import annotations

import pytest

from plugins.blocking import matches
from tests.support.inproc import FakeSession, add_user, make_server
from xmppd import stanza as st
from xmppd.jid import JID

BLOCKED = frozenset({"romeo@montague.lit", "iago@shakespeare.lit/evil", "capulet.lit",
                     "gateway.example/res"})


@pytest.mark.parametrize("jid,blocked", [
    ("romeo@montague.lit", True),  # user@domain: any resource
    ("romeo@montague.lit/orchard", True),
    ("benvolio@montague.lit", False),
    ("montague.lit", False),
    ("iago@shakespeare.lit/evil", True),  # user@domain/resource: only that resource
    ("iago@shakespeare.lit/good", False),
    ("iago@shakespeare.lit", False),
    ("capulet.lit", True),  # domain: itself, its users and resources, its subdomains
    ("juliet@capulet.lit", True),
    ("juliet@capulet.lit/balcony", True),
    ("capulet.lit/res", True),
    ("nurse@chat.capulet.lit", True),
    ("muc.chat.capulet.lit", True),
    ("notcapulet.lit", False),
    ("gateway.example/res", True),  # domain/resource: only that resource of the domain
    ("gateway.example/other", False),
    ("gateway.example", False),
    ("user@gateway.example/res", False),
])
def test_matching(jid: str, blocked: bool) -> None:
    assert matches(BLOCKED, JID.parse(jid)) is blocked


def test_empty_blocklist_and_ip_literals() -> None:
    assert not matches(frozenset(), JID.parse("a@b.c"))
    assert not matches(frozenset({"1"}), JID.parse("a@127.0.0.1"))  # dots of an IP: no
    assert not matches(frozenset({"1]"}), JID.parse("a@[::1]"))


def test_own_resources_and_server_are_never_blocked() -> None:
    server = make_server(["roster", "presence", "blocking", "ping"])
    add_user(server, "juliet@localhost")
    one = FakeSession(server, "juliet@localhost/one")
    two = FakeSession(server, "juliet@localhost/two")
    iq = st.iq("set", "b1")
    block = st.add(iq, "block", "urn:xmpp:blocking")
    for jid in ("juliet@localhost", "localhost"):
        st.add(block, "item", attrs={"jid": jid})
    one.stanza(iq)
    assert [e.getAttribute("type") for e in one.take() if e.name == "iq"] == ["result"]
    two.take()
    msg = st.make("message", attrs={"to": "juliet@localhost/two", "type": "chat"})
    st.add(msg, "body", text_="to myself")
    one.stanza(msg)
    assert [e.name for e in two.take()] == ["message"]
    ping = st.iq("get", "p1", to="localhost")
    st.add(ping, "ping", "urn:xmpp:ping")
    one.stanza(ping)
    assert [e.getAttribute("type") for e in one.take()] == ["result"]
