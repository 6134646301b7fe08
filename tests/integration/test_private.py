"""Private XML storage (XEP-0049) and bookmarks kept in it (XEP-0048)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from tests.support.client import Client, connect, run
from tests.support.raw import RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

P = "{jabber:iq:private}"


async def private(c: Client, type_: str, inner: str, to: str | None = None) -> ET.Element:
    iq = c.make_iq(itype=type_, ito=to)
    iq.xml.append(ET.fromstring(f"<query xmlns='jabber:iq:private'>{inner}</query>"))
    return (await iq.send()).xml


def test_bookmarks_round_trip_across_sessions(server: ServerProcess) -> None:
    a, _ = server.new_user("bm")

    async def body() -> None:
        c1 = await connect(server, a + "/one", plugins=("xep_0048",))
        # nothing stored yet: the (empty) element asked for comes back
        got = await c1.plugin["xep_0048"].get_bookmarks(method="xep_0049")
        assert got.xml.find(f"{P}query/{{storage:bookmarks}}storage") is not None
        assert len(got["private"]["bookmarks"]["conferences"]) == 0
        bookmarks = c1.plugin["xep_0048"].stanza.Bookmarks()
        bookmarks.add_conference("room@conference.example.org", "Juliet", name="The Room",
                                 autojoin=True)
        bookmarks.add_url("https://example.org/", name="Home")
        await c1.plugin["xep_0048"].set_bookmarks(bookmarks, method="xep_0049")
        c2 = await connect(server, a + "/two", plugins=("xep_0048",))
        got = await c2.plugin["xep_0048"].get_bookmarks(method="xep_0049")
        [conf] = got["private"]["bookmarks"]["conferences"]
        assert conf["jid"] == "room@conference.example.org" and conf["nick"] == "Juliet"
        assert conf["autojoin"] is True and conf["name"] == "The Room"
        [url] = got["private"]["bookmarks"]["urls"]
        assert url["url"] == "https://example.org/"
        await c1.close()
        await c2.close()

    run(body())


def test_arbitrary_elements_and_errors(server: ServerProcess) -> None:
    (a, pw), (b, _) = server.new_user("pa"), server.new_user("pb")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        cb = await connect(server, b + "/x")
        await private(ca, "set", "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet"
                      "</defaultnick></exodus><other xmlns='exodus:prefs'/>")
        got = await private(ca, "get", "<exodus xmlns='exodus:prefs'/>")
        assert got.find(f"{P}query/{{exodus:prefs}}exodus/{{exodus:prefs}}defaultnick"
                        ).text == "Hamlet"
        # each element is its own record; b has its own storage
        got = await private(cb, "get", "<exodus xmlns='exodus:prefs'/>")
        assert list(got.find(f"{P}query/{{exodus:prefs}}exodus")) == []
        # §2.3 errors
        for inner, to, cond in (
                ("", None, "not-acceptable"),
                ("<vCard xmlns='vcard-temp'><FN>Hamlet</FN></vCard>", None, "not-acceptable"),
                ("<x xmlns='jabber:x:data' type='form'/>", None, "not-acceptable"),
                ("<foo xmlns='http://jabber.org/protocol/foo'/>", None, "not-acceptable"),
                ("<exodus xmlns='exodus:prefs'/>", a, None),  # own bare JID is fine
                ("<exodus xmlns='exodus:prefs'/>", b, "forbidden")):
            for type_ in ("get", "set"):
                if cond is None:
                    await private(ca, type_, inner, to=to)
                    continue
                with pytest.raises(IqError) as exc:
                    await private(ca, type_, inner, to=to)
                assert exc.value.condition == cond, (inner, type_)
        with pytest.raises(IqError) as exc:
            await private(ca, "get", "<a xmlns='urn:one'/><b xmlns='urn:two'/>")
        assert exc.value.condition == "bad-request"  # one namespace per get
        got = await private(cb, "get", "<exodus xmlns='exodus:prefs'/>")
        assert list(got.find(f"{P}query/{{exodus:prefs}}exodus")) == []  # b's untouched
        await ca.close()
        await cb.close()
        # over the size limit (131072 bytes per element by default)
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], pw)
        big = "<big xmlns='urn:example:big'>" + "x" * 140000 + "</big>"
        res = await raw.iq(f"<query xmlns='jabber:iq:private'>{big}</query>", type_="set")
        assert stanza_error(res) == ("modify", "not-acceptable")
        raw.close()

    run(body())
