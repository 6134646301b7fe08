"""XEP-0055 search through the running plugin (in process): access modes and forms."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.inproc import FakeSession, add_user, make_server
from xmppd import stanza as st
from xmppd.errors import parse_error
from xmppd.xmlparser import parse_fragment

NS = "jabber:iq:search"


def ask(access: str, query: str, type_: str = "set", sender: str = "juliet@localhost/x"
        ) -> Any:
    server = make_server(["disco", "search"], options={"search": {"access": access}})
    for user in ("juliet", "romeo", "rosaline"):
        add_user(server, f"{user}@localhost")
    session = FakeSession(server, sender, priority=None)
    iq = st.iq(type_, "s1", to="localhost")
    st.append(iq, parse_fragment(query))
    session.stanza(iq)
    [reply] = session.take()
    return reply


def test_legacy_search_over_account_names() -> None:
    reply = ask("local", f"<query xmlns='{NS}'><nick>RO</nick></query>")
    q = st.child(reply, "query", NS)
    assert q is not None
    items = list(st.children(q, "item", NS))
    assert [i.getAttribute("jid") for i in items] == ["romeo@localhost", "rosaline@localhost"]
    assert [st.child_text(i, "nick", NS) for i in items] == ["romeo", "rosaline"]
    assert [st.child_text(i, "first", NS) for i in items] == ["", ""]


def test_form_search_and_result_form() -> None:
    reply = ask("anyone", (
        f"<query xmlns='{NS}'><x xmlns='jabber:x:data' type='submit'>"
        f"<field var='FORM_TYPE' type='hidden'><value>{NS}</value></field>"
        "<field var='x-user'><value>juliet</value></field></x></query>"))
    x = st.child(st.child(reply, "query", NS), "x", "jabber:x:data")  # type: ignore[arg-type]
    assert x is not None and x.getAttribute("type") == "result"
    reported = st.child(x, "reported", "jabber:x:data")
    assert reported is not None
    assert [f.getAttribute("var") for f in st.children(reported, "field")] == [
        "jid", "first", "last", "nick", "email", "x-fn"]
    [item] = list(st.children(x, "item", "jabber:x:data"))
    values = {f.getAttribute("var"): st.child_text(f, "value", "jabber:x:data")
              for f in st.children(item, "field")}
    assert values["jid"] == "juliet@localhost" and values["nick"] == "juliet"


@pytest.mark.parametrize("access,query,condition", [
    ("nobody", "<nick>ro</nick>", "forbidden"),
    ("nobody", "", "forbidden"),
    ("local", "", "bad-request"),
    ("local", "<nick>   </nick>", "bad-request"),
    ("local", "<x xmlns='jabber:x:data' type='form'><field var='nick'><value>r</value>"
              "</field></x>", "bad-request"),
    ("local", "<x xmlns='jabber:x:data' type='submit'><field var='gender'><value>m</value>"
              "</field></x>", "bad-request"),
])
def test_refusals(access: str, query: str, condition: str) -> None:
    reply = ask(access, f"<query xmlns='{NS}'>{query}</query>")
    assert reply.getAttribute("type") == "error"
    assert parse_error(reply) is not None and parse_error(reply)[1] == condition


def test_get_is_refused_when_disabled_and_answered_otherwise() -> None:
    reply = ask("nobody", f"<query xmlns='{NS}'/>", type_="get")
    assert parse_error(reply) == ("auth", "forbidden")
    reply = ask("local", f"<query xmlns='{NS}'/>", type_="get")
    q = st.child(reply, "query", NS)
    assert q is not None and st.child(q, "x", "jabber:x:data") is not None
