"""User directory search (XEP-0055) with slixmpp's xep_0055 plugin and raw XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from tests.integration.test_vcard import vcard_iq
from tests.support.client import Client, connect, run
from tests.support.raw import RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

S = "{jabber:iq:search}"
X = "{jabber:x:data}"


async def form_search(c: Client, **fields: str) -> list[dict[str, str]]:
    iq = c.plugin["xep_0055"].make_search_iq(ito="localhost")
    for var, value in fields.items():
        iq["search"]["form"].add_field(var.replace("_", "-"), value=value)
    res = await iq.send()
    form = res["search"]["form"]
    assert form["type"] == "result"
    return [{k: str(v) for k, v in item.items()} for item in form.get_items()]


def test_cli_users_find_each_other_by_name(server: ServerProcess) -> None:
    """Accounts made like `xmppd adduser` (no vCard) are found by their account name."""
    (a, _), (b, _) = server.new_user("finda"), server.new_user("findb")

    async def body() -> None:
        ca = await connect(server, a + "/x", plugins=("xep_0055",))
        cb = await connect(server, b + "/x", plugins=("xep_0055",))
        # the service is the domain, announced in disco (feature and directory identity)
        info = await ca.plugin["xep_0030"].get_info(jid="localhost")
        assert "jabber:iq:search" in info["disco_info"]["features"]
        assert ("directory", "user", None, "User directory") in info["disco_info"][
            "identities"]
        found = await form_search(ca, nick=b.split("@")[0].upper())  # case-insensitive
        assert [i["jid"] for i in found] == [b]
        assert found[0]["nick"] == b.split("@")[0]
        found = await form_search(cb, x_user=a.split("@")[0][2:])  # a part of the name
        assert [i["jid"] for i in found] == [a]
        assert await form_search(ca, x_user="no-such-user-anywhere") == []
        await ca.close()
        await cb.close()

    run(body())


def test_vcard_fields_are_searchable(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("vca"), server.new_user("vcb")

    async def body() -> None:
        ca = await connect(server, a + "/x", plugins=("xep_0055",))
        cb = await connect(server, b + "/x", plugins=("xep_0055",))
        token = a.split("@")[0]  # unique per test run
        await vcard_iq(ca, "set", (
            "<vCard xmlns='vcard-temp'>"
            f"<FN>Zoë Quux-{token}</FN><N><GIVEN>Zoë</GIVEN><FAMILY>Quux{token}</FAMILY></N>"
            f"<NICKNAME>zq{token}</NICKNAME>"
            f"<EMAIL><INTERNET/><USERID>zoe.{token}@mail.example</USERID></EMAIL></vCard>"))
        for query in ({"last": f"QUUX{token}"}, {"x_fn": f"zoë quux-{token}"},
                      {"email": f"zoe.{token}@"}, {"nick": f"zq{token}"},
                      {"first": "zoë", "last": token}):
            found = await form_search(cb, **query)
            assert [i["jid"] for i in found] == [a], query
            assert found[0]["first"] == "Zoë" and found[0]["last"] == f"Quux{token}"
            assert found[0]["email"] == f"zoe.{token}@mail.example"
            assert found[0]["x-fn"] == f"Zoë Quux-{token}"
        # all given fields must match
        assert await form_search(cb, first="nobody", last=f"quux{token}") == []
        # a new vCard replaces the directory entry
        await vcard_iq(ca, "set", "<vCard xmlns='vcard-temp'><FN>Someone Else</FN></vCard>")
        assert await form_search(cb, last=f"quux{token}") == []
        await ca.close()
        await cb.close()

    run(body())


def test_legacy_fields_and_bad_requests(server: ServerProcess) -> None:
    (a, pw), (b, _) = server.new_user("lega"), server.new_user("legb")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], pw)
        # get: instructions, the legacy fields and the form (§2, §3)
        res = await raw.iq("<query xmlns='jabber:iq:search'/>", to="localhost", id_="s1")
        q = res.find(S + "query")
        assert q.find(S + "instructions").text
        assert all(q.find(S + f) is not None for f in ("first", "last", "nick", "email"))
        form = q.find(X + "x")
        assert form.get("type") == "form"
        fields = {f.get("var"): f for f in form.findall(X + "field")}
        assert fields["FORM_TYPE"].get("type") == "hidden"
        assert fields["FORM_TYPE"].find(X + "value").text == "jabber:iq:search"
        assert {"first", "last", "nick", "email"} <= set(fields)
        # legacy search -> <item/> elements
        res = await raw.iq(f"<query xmlns='jabber:iq:search'><nick>{b.split('@')[0]}</nick>"
                           "</query>", type_="set", to="localhost", id_="s2")
        items = res.find(S + "query").findall(S + "item")
        assert [i.get("jid") for i in items] == [b]
        assert items[0].find(S + "nick").text == b.split("@")[0]
        # no matches: an empty query (§2)
        res = await raw.iq("<query xmlns='jabber:iq:search'><last>zzz-none-zzz</last></query>",
                           type_="set", to="localhost", id_="s3")
        assert res.get("type") == "result" and list(res.find(S + "query")) == []
        # nothing to search for: bad-request, legacy or form
        for i, body in enumerate((
                "<query xmlns='jabber:iq:search'/>",
                "<query xmlns='jabber:iq:search'><first> </first><last/></query>",
                "<query xmlns='jabber:iq:search'><x xmlns='jabber:x:data' type='submit'>"
                "<field var='FORM_TYPE' type='hidden'><value>jabber:iq:search</value></field>"
                "<field var='first'><value></value></field></x></query>",
                "<query xmlns='jabber:iq:search'><x xmlns='jabber:x:data' type='submit'>"
                "<field var='FORM_TYPE' type='hidden'><value>urn:other</value></field>"
                "<field var='first'><value>x</value></field></x></query>")):
            res = await raw.iq(body, type_="set", to="localhost", id_=f"e{i}")
            assert stanza_error(res) == ("modify", "bad-request"), i
        raw.close()

    run(body())


def test_empty_form_from_slixmpp_is_a_bad_request(server: ServerProcess) -> None:
    a, _ = server.new_user("empty")

    async def body() -> None:
        ca = await connect(server, a + "/x", plugins=("xep_0055",))
        iq = ca.plugin["xep_0055"].make_search_iq(ito="localhost")
        with pytest.raises(IqError) as exc:
            await iq.send()
        assert exc.value.condition == "bad-request"
        # the service still answers afterwards
        get = ca.make_iq_get(ito="localhost")
        get.xml.append(ET.fromstring("<query xmlns='jabber:iq:search'/>"))
        res = await get.send()
        assert res.xml.find(S + "query") is not None
        await ca.close()

    run(body())
