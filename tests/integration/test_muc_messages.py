"""Messages in a room (XEP-0045 §7.4, §7.5, §8.1), history on entering (§7.2.13-7.2.15),
stanza ids (XEP-0359) and occupant ids (XEP-0421), with real clients."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.integration.test_muc_support import (
    USER,
    C,
    close,
    configure,
    create,
    error_condition,
    join,
    new_room,
    next_from,
    next_message,
    users,
)
from tests.support.client import Client, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
SID = "{urn:xmpp:sid:0}stanza-id"
OID = "{urn:xmpp:occupant-id:0}occupant-id"
DELAY = "{urn:xmpp:delay}delay"


def groupchat(c: Client, room: str, body: str, msg_id: str | None = None, extra: str = "") -> None:
    attr = f" id='{msg_id}'" if msg_id else ""
    c.send_raw(f"<message to='{room}' type='groupchat'{attr}><body>{body}</body>{extra}"
               "</message>")


async def said(c: Client, room: str, nick: str, body: str) -> ET.Element:
    m = await next_message(c, where=lambda m: str(m["from"]) == f"{room}/{nick}"
                           and m["body"] == body)
    return m.xml


def test_reflection_to_every_occupant_with_ids(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        clients = await users(server, 4, "refl")
        owner, rest = clients[0], clients[1:]
        await create(owner, room, "N0")
        for i, c in enumerate(rest, 1):
            await join(c, room, f"N{i}")
        groupchat(rest[0], room, "Harpier cries", "hysf1v37",
                  "<x xmlns='http://jabber.org/protocol/muc#user'><item jid='forged@x'/></x>"
                  f"<stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='{room}'/>"
                  "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='fake'/>")
        copies = [await said(c, room, "N1", "Harpier cries") for c in clients]
        sids = {m.find(SID).get("id") for m in copies}  # type: ignore[union-attr]
        oids = {m.find(OID).get("id") for m in copies}  # type: ignore[union-attr]
        for m in copies:  # §7.4: same id, type groupchat, the client's own extras replaced
            assert m.get("id") == "hysf1v37" and m.get("type") == "groupchat"
            assert len(m.findall(SID)) == 1 and m.find(SID).get("by") == room  # type: ignore[union-attr]
            assert len(m.findall(OID)) == 1
            assert m.find(f"{{{USER}}}x") is None
        assert len(sids) == 1 and "fake" not in sids
        assert len(oids) == 1 and "fake" not in oids
        # XEP-0421: the occupant id is stable for the user across visits and nicks
        rest[0].send_raw(f"<presence to='{room}/N1' type='unavailable'/>")
        await next_from(rest[0], f"{room}/N1", where=lambda p: p["type"] == "unavailable")
        await join(rest[0], room, "Renamed")
        groupchat(rest[0], room, "again")
        m = await said(owner, room, "Renamed", "again")
        assert m.find(OID).get("id") in oids  # type: ignore[union-attr]
        assert m.get("id")  # the room made one up for a message without (§7.4)
        await close(*clients)

    run(body())


def test_who_may_speak(server: ServerProcess) -> None:
    """§7.4: non-occupants get not-acceptable, visitors forbidden; §7.13/§8.6 voice."""
    room = new_room()

    async def body() -> None:
        owner, visitor, outsider = await users(server, 3, "speak")
        await create(owner, room, "Mod", {"moderatedroom": "1"})
        await join(visitor, room, "Vis")
        groupchat(outsider, room, "let me in")
        err = await next_message(outsider, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("modify", "not-acceptable")
        outsider.send_raw(f"<message to='{room}/Mod' type='chat'><body>psst</body></message>")
        err = await next_message(outsider, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("modify", "not-acceptable")
        groupchat(visitor, room, "may I?")
        err = await next_message(visitor, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("auth", "forbidden")
        # §7.13: the visitor asks for voice; the moderator gets the approval form
        visitor.plugin["xep_0045"].request_voice(room, "participant")
        form = await next_message(owner, where=lambda m: m.xml.find(
            "{jabber:x:data}x") is not None)
        x = form.xml.find("{jabber:x:data}x")
        values = {f.get("var"): [v.text or "" for v in f.findall("{jabber:x:data}value")]
                  for f in x.findall("{jabber:x:data}field")}  # type: ignore[union-attr]
        assert values["FORM_TYPE"] == ["http://jabber.org/protocol/muc#request"]
        assert values["muc#roomnick"] == ["Vis"] and values["muc#role"] == ["participant"]
        assert values["muc#jid"] == [str(visitor.boundjid)]
        owner.send_raw(
            f"<message to='{room}'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
            "<field var='muc#role'><value>participant</value></field>"
            "<field var='muc#roomnick'><value>Vis</value></field>"
            "<field var='muc#request_allow'><value>true</value></field></x></message>")
        voiced = await next_from(visitor, f"{room}/Vis",
                                 where=lambda p: p["muc"]["role"] == "participant")
        assert 110 in [int(s.get("code")) for s in voiced.xml.iter(f"{{{USER}}}status")]
        groupchat(visitor, room, "thank you")
        await said(owner, room, "Vis", "thank you")
        await close(owner, visitor, outsider)

    run(body())


def test_private_messages(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "pm")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        await join(c, room, "Cee")
        b.send_raw(f"<message to='{room}/Cee' type='chat' id='pm1'><body>just us</body>"
                   "</message>")
        m = await said(c, room, "Bee", "just us")
        assert m.get("type") == "chat" and m.get("id") == "pm1"
        assert m.find(f"{{{USER}}}x") is not None  # §7.5 marked for carbons
        assert m.find(OID) is not None
        b.send_raw(f"<message to='{room}/Nobody' type='chat'><body>?</body></message>")
        err = await next_message(b, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("cancel", "item-not-found")
        b.send_raw(f"<message to='{room}/Cee' type='groupchat'><body>?</body></message>")
        err = await next_message(b, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("modify", "bad-request")
        await configure(owner, room, {"allowpm": "none"})
        b.send_raw(f"<message to='{room}/Cee' type='chat'><body>still?</body></message>")
        err = await next_message(b, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("auth", "forbidden")
        await close(owner, b, c)

    run(body())


def test_subject(server: ServerProcess) -> None:
    """§8.1 permissions; §7.2.15 the subject (with its delay) closes the join sequence."""
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "subj")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        b.send_raw(f"<message to='{room}' type='groupchat'><subject>mine</subject></message>")
        err = await next_message(b, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("auth", "forbidden")
        owner.send_raw(f"<message to='{room}' type='groupchat'><subject>Spells</subject>"
                       "</message>")
        m = await next_message(b, where=lambda m: m["subject"] == "Spells")
        assert str(m["from"]) == f"{room}/Owner" and m["body"] == ""
        c.send_raw(f"<presence to='{room}/Cee'><x xmlns='http://jabber.org/protocol/muc'/>"
                   "</presence>")
        m = await next_message(c, where=lambda m: m.xml.find(C + "subject") is not None)
        assert m["subject"] == "Spells" and str(m["from"]) == f"{room}/Owner"
        delay = m.xml.find(DELAY)
        assert delay is not None and delay.get("from") == room
        await configure(owner, room, {"changesubject": "1"})
        b.send_raw(f"<message to='{room}' type='groupchat'><subject>Ours</subject></message>")
        m = await next_message(c, where=lambda m: m["subject"] == "Ours")
        assert str(m["from"]) == f"{room}/Bee"
        await close(owner, b, c)

    run(body())


def test_history_on_join(server: ServerProcess) -> None:
    """§7.2.14: maxstanzas, maxchars, seconds and since, oldest first, delayed by the room."""
    room = new_room()

    async def body() -> None:
        owner, b = await users(server, 2, "hist")
        await create(owner, room, "Owner")
        for n in range(5):
            groupchat(owner, room, f"line {n}")
            await said(owner, room, "Owner", f"line {n}")

        async def history(inner: str) -> list[ET.Element]:
            b.send_raw(f"<presence to='{room}/Bee'><x xmlns='http://jabber.org/protocol/muc'>"
                       f"{inner}</x></presence>")
            got: list[ET.Element] = []
            while True:
                m = await next_message(b, where=lambda m: m["from"].bare == room)
                if m.xml.find(C + "subject") is not None:
                    break
                got.append(m.xml)
            b.send_raw(f"<presence to='{room}/Bee' type='unavailable'/>")
            await next_from(b, f"{room}/Bee", where=lambda p: p["type"] == "unavailable")
            return got

        everything = await history("")
        assert [m.findtext(C + "body") for m in everything] == [f"line {n}" for n in range(5)]
        for m in everything:
            delay = m.find(DELAY)
            assert delay is not None and delay.get("from") == room and delay.get("stamp")
            assert m.find(OID) is not None and m.find(SID) is not None
        two = await history("<history maxstanzas='2'/>")
        assert [m.findtext(C + "body") for m in two] == ["line 3", "line 4"]
        assert await history("<history maxchars='0'/>") == []
        size = len(ET.tostring(everything[-1]))
        few = await history(f"<history maxchars='{size * 2 + 40}'/>")
        assert 1 <= len(few) <= 2
        assert await history("<history since='2999-01-01T00:00:00Z'/>") == []
        # 'seconds' and 'since' as time passes: tests/unit/test_muc_timing.py, on a Clock
        assert len(await history("<history seconds='600' maxstanzas='3'/>")) == 3
        await close(owner, b)

    run(body())
