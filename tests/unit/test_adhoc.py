"""XEP-0050 framework transcripts on an in-process server with a fake clock: multi-stage
flows (prev/next/complete), session expiry, the §4.4 errors."""

from __future__ import annotations

from typing import cast

import pytest

from plugins.adhoc import NS, AdHoc, CommandSession, Reply
from tests.support.inproc import FakeSession, make_server
from xmppd import forms
from xmppd import stanza as st
from xmppd.jid import JID
from xmppd.server import XmppServer

NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Wizard:
    """Two input stages, then a result: what prev/next/complete are for."""

    node = "urn:test:wizard"
    name = "Wizard"

    def __init__(self) -> None:
        self.allowed_jids = {"admin@localhost"}
        self.completed: list[dict[str, str | None]] = []

    async def allowed(self, requester: JID) -> bool:
        return requester.bare_str in self.allowed_jids

    async def run(self, session: CommandSession, action: str,
                  form: forms.Form | None) -> Reply:
        stage = session.data.get("stage", 0)
        if action == "prev":
            session.data["stage"] = 0
            return self._stage(0, session)
        if form is not None:
            session.data[f"v{stage}"] = form.value("v")
        if action in ("execute", "next") and stage == 0 and (form is not None
                                                           or action == "next"):
            session.data["stage"] = 1
            return self._stage(1, session)
        if action == "complete":
            self.completed.append({"a": session.data.get("v0"), "b": session.data.get("v1")})
            return Reply("completed", notes=[("info", "done")])
        return self._stage(stage, session)

    def _stage(self, n: int, session: CommandSession) -> Reply:
        f = forms.Form("form", title=f"stage {n}")
        f.add("v", "text-single", session.data.get(f"v{n}"))
        if n == 0:
            return Reply("executing", [f.to_element()], actions=("next",), default="next")
        return Reply("executing", [f.to_element()], actions=("prev", "complete"),
                     default="complete")


@pytest.fixture
def server() -> XmppServer:
    return make_server(["disco", "adhoc"])


def plugin(server: XmppServer) -> AdHoc:
    return cast(AdHoc, server.hosts["localhost"].plugin("adhoc"))


def command(client: FakeSession, node: str, action: str | None = None,
            sid: str | None = None, value: str | None = None,
            lang: str | None = None) -> st.Element:
    iq = st.make("iq", st.NS_CLIENT, {"type": "set", "id": "c1", "to": "localhost"})
    cmd = st.add(iq, "command", NS, attrs={"node": node})
    if action:
        cmd.attributes["action"] = action
    if sid:
        cmd.attributes["sessionid"] = sid
    if lang:
        cmd.attributes[(st.NS_XML, "lang")] = lang
    if value is not None:
        f = forms.Form("submit")
        f.add("v", None, value)
        st.append(cmd, f.to_element())
    client.stanza(iq)
    replies = [r for r in client.take() if r.name == "iq"]
    assert len(replies) == 1
    return replies[0]


def status(reply: st.Element) -> tuple[str, str]:
    cmd = st.child(reply, "command", NS)
    assert cmd is not None, reply.toXml()
    return cmd.getAttribute("status", ""), cmd.getAttribute("sessionid", "")


def actions(reply: st.Element) -> tuple[str | None, list[str]]:
    cmd = st.child(reply, "command", NS)
    assert cmd is not None
    acts = st.child(cmd, "actions", NS)
    assert acts is not None
    return acts.getAttribute("execute"), [c.name for c in st.element_children(acts)]


def err(reply: st.Element) -> tuple[str, str | None]:
    assert reply.getAttribute("type") == "error", reply.toXml()
    e = st.child(reply, "error", st.NS_CLIENT)
    assert e is not None
    general = next(c.name for c in st.element_children(e) if c.uri == NS_STANZAS
                   and c.name != "text")
    specific = next((c.name for c in st.element_children(e) if c.uri == NS), None)
    return general, specific


def test_wizard_next_prev_complete(server: XmppServer) -> None:
    wizard = Wizard()
    plugin(server).add_command(wizard)
    admin = FakeSession(server, "admin@localhost/ui")
    first = command(admin, wizard.node)
    state, sid = status(first)
    assert state == "executing" and sid
    assert actions(first) == ("next", ["next"])
    assert err(command(admin, wizard.node, "complete", sid)) == ("bad-request", "bad-action")
    assert err(command(admin, wizard.node, "prev", sid)) == ("bad-request", "bad-action")
    second = command(admin, wizard.node, None, sid, "one")  # execute = next here
    assert actions(second) == ("complete", ["prev", "complete"])
    back = command(admin, wizard.node, "prev", sid)
    assert actions(back) == ("next", ["next"])
    x = st.child(st.child(back, "command", NS), "x", forms.NS)  # type: ignore[arg-type]
    assert x is not None and forms.Form.parse(x).value("v") == "one"  # remembered
    command(admin, wizard.node, "next", sid, "uno")
    done = command(admin, wizard.node, None, sid, "two")  # execute = complete now
    assert status(done) == ("completed", sid)
    assert wizard.completed == [{"a": "uno", "b": "two"}]
    cmd = st.child(done, "command", NS)
    assert cmd is not None and cmd.getAttribute((st.NS_XML, "lang")) == "en"
    assert err(command(admin, wizard.node, "next", sid, "x")) == ("not-allowed",
                                                                  "session-expired")


def test_sessions_expire_and_belong_to_their_requester(server: XmppServer) -> None:
    wizard = Wizard()
    plugin(server).add_command(wizard)
    admin = FakeSession(server, "admin@localhost/ui")
    twin = FakeSession(server, "admin@localhost/other")
    _state, sid = status(command(admin, wizard.node))
    assert err(command(twin, wizard.node, "next", sid, "x")) == ("bad-request", "bad-sessionid")
    clock = server.clock
    clock.advance(599)  # type: ignore[attr-defined]
    _state, same = status(command(admin, wizard.node, "next", sid, "a"))  # touched again
    assert same == sid
    clock.advance(599)  # type: ignore[attr-defined]
    assert status(command(admin, wizard.node, "prev", sid))[0] == "executing"
    clock.advance(601)  # type: ignore[attr-defined]
    assert err(command(admin, wizard.node, "next", sid, "b")) == ("not-allowed",
                                                                  "session-expired")
    assert sid not in plugin(server).sessions
    assert err(command(admin, wizard.node, "next", "made-up")) == ("bad-request",
                                                                  "bad-sessionid")
    # A requester that goes away takes its sessions with it.
    _state, sid2 = status(command(admin, wizard.node))
    admin.close()
    assert sid2 not in plugin(server).sessions


def test_errors_and_cancel(server: XmppServer) -> None:
    wizard = Wizard()
    plugin(server).add_command(wizard)
    admin = FakeSession(server, "admin@localhost/ui")
    stranger = FakeSession(server, "stranger@localhost/ui")
    assert err(command(stranger, wizard.node)) == ("forbidden", None)
    assert err(command(admin, "urn:test:none")) == ("item-not-found", None)
    assert err(command(admin, wizard.node, "dance")) == ("bad-request", "malformed-action")
    assert err(command(admin, wizard.node, "cancel")) == ("bad-request", "bad-action")
    assert err(command(admin, wizard.node, lang="de")) == ("bad-request", "bad-locale")
    _state, sid = status(command(admin, wizard.node, lang="en-GB"))
    assert err(command(admin, wizard.node, "next", sid, "x", lang="en-US")) == (
        "bad-request", "bad-locale")
    assert status(command(admin, wizard.node, "cancel", sid)) == ("canceled", sid)
    assert err(command(admin, wizard.node, "cancel", sid)) == ("not-allowed",
                                                               "session-expired")
    assert wizard.completed == []


def test_bounded_sessions(server: XmppServer) -> None:
    wizard = Wizard()
    ad = plugin(server)
    ad.add_command(wizard)
    admin = FakeSession(server, "admin@localhost/ui")
    for _ in range(ad.options.max_sessions_per_requester):
        assert status(command(admin, wizard.node))[0] == "executing"
    assert err(command(admin, wizard.node)) == ("resource-constraint", None)


def test_disco_lists_only_what_the_requester_may_run(server: XmppServer) -> None:
    wizard = Wizard()
    plugin(server).add_command(wizard)

    def items(who: FakeSession) -> list[str]:
        iq = st.make("iq", st.NS_CLIENT, {"type": "get", "id": "d", "to": "localhost"})
        st.add(iq, "query", "http://jabber.org/protocol/disco#items", attrs={"node": NS})
        who.stanza(iq)
        (reply,) = who.take()
        q = st.child(reply, "query", "http://jabber.org/protocol/disco#items")
        assert q is not None
        return [i.getAttribute("node", "") for i in st.element_children(q)]

    assert items(FakeSession(server, "admin@localhost/a")) == [wizard.node]
    assert items(FakeSession(server, "stranger@localhost/a")) == []
