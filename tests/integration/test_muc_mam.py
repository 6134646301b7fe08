"""The room archive (XEP-0313 on the room JID): paging with RSM, 'with', access rules
(XEP-0313 §6.1.2 "MUC Archives") and real-JID visibility, with real clients."""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET

import pytest

from tests.integration.test_muc_support import (
    USER,
    C,
    admin_set,
    close,
    configure,
    create,
    iq,
    iq_error,
    join,
    messages,
    new_room,
    next_message,
    users,
)
from tests.support.client import Client, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
FWD = "urn:xmpp:forward:0"


async def query(c: Client, room: str, rsm: str = "", form: str = ""
                ) -> tuple[list[ET.Element], ET.Element]:
    """(forwarded messages, <fin/>) of one archive query."""
    qid = secrets.token_hex(4)
    q = messages(c)
    # the results precede the IQ result in the stream, so they are queued when it arrives
    res = await iq(c, "set", room, f"<query xmlns='{MAM}' queryid='{qid}'>{form}{rsm}</query>")
    found = []
    while not q.empty():
        m = q.get_nowait()
        r = m.xml.find(f"{{{MAM}}}result")
        if r is not None and r.get("queryid") == qid:
            assert m["from"] == room and r.get("id")
            inner = r.find(f"{{{FWD}}}forwarded/{C}message")
            assert inner is not None
            inner.set("archive-id", r.get("id", ""))
            found.append(inner)
    fin = res.find(f"{{{MAM}}}fin")
    assert fin is not None
    return found, fin


def with_form(jid: str) -> str:
    return (f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>{MAM}</value></field><field var='with'><value>{jid}</value></field></x>")


def test_paging_and_with(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, reader = await users(server, 3, "mam")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        live_ids = []
        for n in range(25):
            sender = owner if n % 5 else b
            sender.send_raw(f"<message to='{room}' type='groupchat' id='m{n}'><body>msg {n}"
                            "</body></message>")
            m = await next_message(owner, where=lambda m, n=n: m["body"] == f"msg {n}")
            sid = m.xml.find("{urn:xmpp:sid:0}stanza-id")
            assert sid is not None and sid.get("by") == room
            live_ids.append(sid.get("id"))
        # a reader who never entered an open room may read its archive (§6.1.2)
        seen: list[ET.Element] = []
        after = ""
        for _ in range(5):
            page, fin = await query(reader, room, f"<set xmlns='{RSM}'><max>10</max>"
                                    + (f"<after>{after}</after>" if after else "") + "</set>")
            seen += page
            if fin.get("complete") == "true":
                break
            after = fin.findtext(f"{{{RSM}}}set/{{{RSM}}}last") or ""
        assert [m.findtext(C + "body") for m in seen] == [f"msg {n}" for n in range(25)]
        assert [m.get("archive-id") for m in seen] == live_ids  # XEP-0359 ids are MAM ids
        for m in seen:
            assert m.get("to") is None and m.get("type") == "groupchat"
            assert str(m.get("from")).startswith(room + "/")
            assert m.find(f"{{{USER}}}x") is None  # semi-anonymous: no real JIDs for readers
        # 'with' an occupant JID of the room
        bee, _ = await query(reader, room, form=with_form(f"{room}/Bee"))
        assert [m.findtext(C + "body") for m in bee] == [f"msg {n}" for n in range(0, 25, 5)]
        # RSM <before/>: the last page
        last, _ = await query(reader, room, f"<set xmlns='{RSM}'><max>3</max><before/></set>")
        assert [m.findtext(C + "body") for m in last] == ["msg 22", "msg 23", "msg 24"]
        assert await iq_error(reader, "set", room, f"<query xmlns='{MAM}'><set xmlns='{RSM}'>"
                              "<after>nope</after></set></query>") == ("cancel",
                                                                       "item-not-found")
        # the owner (a moderator) sees who said what
        mine, _ = await query(owner, room, f"<set xmlns='{RSM}'><max>1</max></set>")
        x_item = mine[0].find(f"{{{USER}}}x/{{{USER}}}item")
        assert x_item is not None and x_item.get("jid") == str(b.boundjid)
        info = await iq(reader, "get", room, "<query xmlns='http://jabber.org/protocol/disco"
                                             "#info'/>")
        features = {f.get("var") for f in info.iter("{http://jabber.org/protocol/disco#info}"
                                                    "feature")}
        assert {MAM, MAM + "#extended", "urn:xmpp:occupant-id:0"} <= features
        await close(owner, b, reader)

    run(body())


def test_access_rules(server: ServerProcess) -> None:
    """§6.1.2: the right to enter decides: outcasts and non-members of a members-only room
    are refused; an unarchived room has no archive."""
    room, private, quiet = new_room(), new_room("private"), new_room("quiet")

    async def body() -> None:
        owner, member, banned, stranger = await users(server, 4, "mamacl")
        await create(owner, room, "Owner")
        await admin_set(owner, room, f"<item affiliation='outcast' jid='{banned.boundjid.bare}'"
                                     "/>")
        assert await iq_error(banned, "set", room, f"<query xmlns='{MAM}'/>") == ("auth",
                                                                                   "forbidden")
        await create(owner, private, "Owner", {"membersonly": "1"})
        await admin_set(owner, private, f"<item affiliation='member' "
                                        f"jid='{member.boundjid.bare}'/>")
        assert await iq_error(stranger, "set", private, f"<query xmlns='{MAM}'/>") == (
            "auth", "forbidden")
        _, fin = await query(member, private)
        assert fin.get("complete") == "true"
        await create(owner, quiet, "Owner", {"enablearchiving": "0"})
        assert (await iq_error(stranger, "set", quiet, f"<query xmlns='{MAM}'/>"))[1] == (
            "service-unavailable")
        await configure(owner, room, {"whois": "anyone"})
        owner.send_raw(f"<message to='{room}' type='groupchat'><body>public</body></message>")
        await next_message(owner, where=lambda m: m["body"] == "public")
        page, _ = await query(stranger, room)
        x_item = page[-1].find(f"{{{USER}}}x/{{{USER}}}item")  # non-anonymous: real JIDs
        assert x_item is not None and x_item.get("jid") == str(owner.boundjid)
        await close(owner, member, banned, stranger)

    run(body())
