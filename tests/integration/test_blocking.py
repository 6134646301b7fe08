"""Blocking Command (XEP-0191) end to end: lists, pushes, and enforcement on every path."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from tests.integration.test_presence import befriend
from tests.support.barrier import barrier, queued
from tests.support.client import Client, connect, run
from tests.support.raw import RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

B = "{urn:xmpp:blocking}"
BLOCKED = "{urn:xmpp:blocking:errors}blocked"


def push_queue(c: Client) -> asyncio.Queue[tuple[str, list[str]]]:
    """Block/unblock pushes (§3.3-§3.5) as (kind, jids)."""
    q: asyncio.Queue[tuple[str, list[str]]] = asyncio.Queue()
    for kind in ("block", "unblock"):
        def handler(iq: Any, kind: str = kind) -> None:
            el = iq.xml.find(B + kind)
            q.put_nowait((kind, [i.get("jid") for i in el.findall(B + "item")]))
        c.add_event_handler("blocked" if kind == "block" else "unblocked", handler)
    return q


async def iq_and_push(raw: RawStream, payload: str, id_: str) -> tuple[ET.Element, ET.Element]:
    """Send an IQ set; return its result and the push this resource gets (either order)."""
    await raw.send(f"<iq type='set' id='{id_}'>{payload}</iq>")
    result = push = None
    while result is None or push is None:
        el = await raw.read()
        if el.get("id") == id_:
            result = el
        elif el.tag == "{jabber:client}iq" and el.get("type") == "set":
            push = el
    return result, push


async def blocklist(c: Client) -> list[str]:
    res = await c.plugin["xep_0191"].get_blocked()
    return sorted(i.get("jid") for i in res.xml.find(B + "blocklist").findall(B + "item"))


def test_block_and_unblock_a_contact(server: ServerProcess) -> None:
    (a, _), (b, _), (c, _) = server.new_user("a"), server.new_user("b"), server.new_user("c")

    async def body() -> None:
        plugins = ("xep_0191", "xep_0092")
        a1 = await connect(server, a + "/one", plugins=plugins)
        b1 = await connect(server, b + "/one", plugins=plugins)
        cc = await connect(server, c + "/one", plugins=plugins)
        await befriend(a1, b1)
        a2 = await connect(server, a + "/two", plugins=plugins)
        await b1.next_presence(where=lambda p: p["from"] == a2.boundjid)
        pushes1, pushes2 = push_queue(a1), push_queue(a2)
        assert await blocklist(a1) == [] and await blocklist(a2) == []  # both interested
        await a1.plugin["xep_0191"].block(b)
        # every interested resource gets the push
        assert await asyncio.wait_for(pushes1.get(), 10) == ("block", [b])
        assert await asyncio.wait_for(pushes2.get(), 10) == ("block", [b])
        # b (subscribed to a) sees both of a's resources go offline ...
        gone = set()
        while gone != {a1.boundjid, a2.boundjid}:
            p = await b1.next_presence(where=lambda p: p["type"] == "unavailable")
            gone.add(p["from"])
        # ... and a's resources see b go offline
        await a1.next_presence(where=lambda p: p["from"].bare == b
                               and p["type"] == "unavailable")
        # b's messages bounce as if a were offline; a gets nothing
        b1.send_message(mto=a, mbody="hello?", mtype="chat")
        err = await b1.next_message(where=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        assert str(err["from"]).split("/")[0] == a
        b1.send_message(mto=str(a2.boundjid), mbody="psst", mtype="chat")
        err = await b1.next_message(where=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        # b's IQs get service-unavailable; b's presence is dropped without an answer
        with pytest.raises(IqError) as exc:
            await b1.plugin["xep_0092"].get_version(a1.boundjid)
        assert exc.value.condition == "service-unavailable"
        b1.send_presence(pto=a, pstatus="directed")
        b1.send_presence(pshow="dnd", pstatus="changed")
        # a's changes of presence do not reach b any more
        a1.send_presence(pshow="chat", pstatus="party")
        await barrier(a1, b1, a1)  # each one's presence handled, then each has read all
        assert not [p for p in queued(b1.presences) if p["from"].bare == a]
        assert not [p for p in queued(a1.presences) if p["from"].bare == b]
        # a cannot send to b: not-acceptable with <blocked/> (§3.3)
        a1.send_message(mto=b, mbody="can you hear me?", mtype="chat")
        err = await a1.next_message(where=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "not-acceptable"
        assert err.xml.find("{jabber:client}error/" + BLOCKED) is not None
        assert err["body"] == "can you hear me?"
        await barrier(b1)
        assert not [m for m in queued(b1.messages) if m["type"] == "chat"]
        # other users are not affected
        cc.send_message(mto=a, mbody="from c", mtype="chat")
        got = await a1.next_message(where=lambda m: m["type"] == "chat")
        assert got["body"] == "from c"
        # the blocklist is kept across sessions
        a3 = await connect(server, a + "/three", plugins=plugins)
        assert await blocklist(a3) == [b]
        await a3.close()
        # unblock: pushes; b sees a's current presence again, a sees b's (probed)
        await a2.plugin["xep_0191"].unblock(b)
        assert await asyncio.wait_for(pushes1.get(), 10) == ("unblock", [b])
        assert await asyncio.wait_for(pushes2.get(), 10) == ("unblock", [b])
        p = await b1.next_presence(where=lambda p: p["from"] == a1.boundjid)
        assert p["status"] == "party"
        await b1.next_presence(where=lambda p: p["from"] == a2.boundjid)
        p = await a1.next_presence(where=lambda p: p["from"] == b1.boundjid)
        assert p["status"] == "changed"
        b1.send_message(mto=a, mbody="back again", mtype="chat")
        got = await a1.next_message(where=lambda m: m["type"] == "chat")
        assert got["body"] == "back again"
        a1.send_message(mto=b, mbody="welcome", mtype="chat")
        got = await b1.next_message(where=lambda m: m["type"] == "chat")
        assert got["body"] == "welcome"
        for x in (a1, a2, b1, cc):
            await x.close()

    run(body())


def test_domains_full_jids_unblock_all_and_errors(server: ServerProcess) -> None:
    (a, pw), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], pw, resource="raw")
        res = await raw.iq("<blocklist xmlns='urn:xmpp:blocking'/>", id_="l0")
        assert list(res.find(B + "blocklist")) == []
        res, push = await iq_and_push(  # this resource asked for the list: it gets a push
            raw, "<block xmlns='urn:xmpp:blocking'><item jid='Evil.Example'/>"
            f"<item jid='{b}/phone'/></block>", "b1")
        assert res.get("type") == "result"
        assert push.find(B + "block") is not None
        assert sorted(i.get("jid") for i in push.find(B + "block")) == [
            f"{b}/phone", "evil.example"]
        # a domain blocks the domain, its users and its subdomains (§6)
        for i, to in enumerate(("evil.example", "mallory@evil.example",
                                "bot@sub.evil.example/x")):
            await raw.send(f"<message to='{to}' id='m{i}' type='chat'><body>x</body></message>")
            el = await raw.read()
            assert el.get("type") == "error" and el.get("id") == f"m{i}"
            assert stanza_error(el) == ("cancel", "not-acceptable")
            assert el.find("{jabber:client}error/" + BLOCKED) is not None
        # a full JID blocks only that resource
        b_phone = await connect(server, b + "/phone")
        b_desk = await connect(server, b + "/desk")
        b_phone.send_message(mto=a + "/raw", mbody="from phone", mtype="chat")
        err = await b_phone.next_message(where=lambda m: m["type"] == "error")
        assert err["error"]["condition"] == "service-unavailable"
        b_desk.send_message(mto=a + "/raw", mbody="from desk", mtype="chat")
        el = await raw.read()
        assert el.tag == "{jabber:client}message" and el.get("from") == f"{b}/desk"
        # bad requests
        for i, (payload, cond) in enumerate((
                ("<block xmlns='urn:xmpp:blocking'/>", "bad-request"),
                ("<block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block>",
                 "jid-malformed"),
                ("<block xmlns='urn:xmpp:blocking'><item/></block>", "bad-request"))):
            res = await raw.iq(payload, type_="set", id_=f"bad{i}")
            assert stanza_error(res)[1] == cond
        # someone else's blocklist is not one's business
        res = await raw.iq("<blocklist xmlns='urn:xmpp:blocking'/>", to=b, id_="other")
        assert stanza_error(res) == ("auth", "forbidden")
        # unblock all (§3.5): an empty push, then everything flows again
        res, push = await iq_and_push(raw, "<unblock xmlns='urn:xmpp:blocking'/>", "u1")
        assert res.get("type") == "result"
        assert push.find(B + "unblock") is not None and list(push.find(B + "unblock")) == []
        res = await raw.iq("<blocklist xmlns='urn:xmpp:blocking'/>", id_="l1")
        assert list(res.find(B + "blocklist")) == []
        b_phone.send_message(mto=a + "/raw", mbody="phone again", mtype="chat")
        el = await raw.read()
        assert el.tag == "{jabber:client}message" and el.get("from") == f"{b}/phone"
        raw.close()
        await b_phone.close()
        await b_desk.close()

    run(body())


def test_blocked_contact_cannot_subscribe_or_probe(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/x", plugins=("xep_0191",))
        await ca.plugin["xep_0191"].block(b)
        cb = await connect(server, b + "/x")
        await cb.get_roster()
        cb.send_presence(pto=a, ptype="subscribe")
        await barrier(cb, ca)
        assert not [p for p in queued(ca.presences) if p["from"].bare == b]
        # no answer and no error either (§3.3)
        assert not [p for p in queued(cb.presences) if p["from"].bare == a]
        iq = ca.make_iq_get(ito=b)
        iq.xml.append(ET.fromstring("<vCard xmlns='vcard-temp'/>"))
        with pytest.raises(IqError) as exc:
            await iq.send()
        assert exc.value.condition == "not-acceptable"
        await ca.close()
        await cb.close()

    run(body())
