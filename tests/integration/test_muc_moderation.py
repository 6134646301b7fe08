"""Retracting room messages over real sockets: XEP-0425 (a moderator) and XEP-0424 (the
author), the notices occupants get, the tombstones the room archive keeps, and every refusal.

``test_slixmpp_itest_moderate`` is slixmpp's own integration test for XEP-0425,
poezio/slixmpp ``itests/test_moderate.py`` (TestModerate.test_moderate_msg, the version that
moderates by ``msg_recv['stanza_id']['id']``), run step by step with the same plugin calls
against the ``server`` fixture instead of its CI_* environment.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET

import pytest
from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.test_muc_mam import MAM, query
from tests.integration.test_muc_support import (
    PLUGINS,
    SERVICE,
    USER,
    C,
    close,
    create,
    drain,
    error_condition,
    iq,
    iq_error,
    join,
    messages,
    new_room,
    next_message,
    user,
)
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
MODERATE = "urn:xmpp:message-moderate:1"
RETRACT = "urn:xmpp:message-retract:1"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
SID = "urn:xmpp:sid:0"
FASTEN = "urn:xmpp:fasten:0"
DISCO = "http://jabber.org/protocol/disco#info"


def test_slixmpp_itest_moderate(server: ServerProcess) -> None:
    unique = secrets.token_hex(16)
    muc = JID(f"{unique}@{SERVICE}")

    async def body() -> None:
        # asyncSetUp: two accounts, plugins xep_0425, xep_0359, xep_0045
        plugins = ("xep_0425", "xep_0359", "xep_0045")
        clients = [await connect(server, f"{server.new_user(f'itest{n}')[0]}/r",
                                 plugins=plugins) for n in range(2)]
        # setup_muc
        clients[0]["xep_0045"].join_muc(muc, "client1")
        presence = await clients[0].wait_until(f"muc::{muc}::got_online")
        assert presence["muc"]["affiliation"] == "owner"
        config = await clients[0]["xep_0045"].get_room_config(muc)
        values = config.get_values()
        values["muc#roomconfig_persistentroom"] = False
        values["muc#roomconfig_membersonly"] = True
        config["values"] = values
        config.reply()
        config = await clients[0]["xep_0045"].set_room_config(muc, config)
        await clients[0]["xep_0045"].send_affiliation_list(
            muc, [(clients[1].boundjid.bare, "member")])
        clients[1]["xep_0045"].join_muc(muc, "client2")
        await clients[1].wait_until(f"muc::{muc}::got_online")
        # test_moderate_msg
        msg = clients[1].make_message(mto=muc, mtype="groupchat", mbody="Coucou")
        msg.send()
        msg_recv = await clients[0].wait_until("groupchat_message")
        _iqres, new_msg = await asyncio.gather(
            clients[0]["xep_0425"].moderate(muc, id=msg_recv["stanza_id"]["id"],
                                            reason="Your message is bad."),
            clients[1].wait_until("moderated_message"))
        assert new_msg["apply_to"]["id"], msg_recv["id"]  # the itest's own assertion
        # ... and what it means: the notice names the room's stanza id and the moderator
        assert new_msg["from"] == muc and new_msg["type"] == "groupchat"
        assert new_msg["retract"]["id"] == msg_recv["stanza_id"]["id"]
        assert new_msg["retract"]["moderated"]["by"] == f"{muc}/client1"
        assert new_msg["retract"]["reason"] == "Your message is bad."
        for c in clients:
            await c.close()

    run(body())


# -- helpers ---------------------------------------------------------------------------------
def moderate_xml(sid: str, reason: str | None = "spam", retract: bool = True) -> str:
    r = f"<retract xmlns='{RETRACT}'/>" if retract else ""
    why = f"<reason>{reason}</reason>" if reason is not None else ""
    return f"<moderate xmlns='{MODERATE}' id='{sid}'>{r}{why}</moderate>"


async def say(sender: Client, reader: Client, room: str, text: str) -> str:
    """A groupchat message; its room stanza id as ``reader`` got it."""
    sender.send_raw(f"<message to='{room}' type='groupchat' id='{secrets.token_hex(4)}'>"
                    f"<body>{text}</body></message>")
    m = await next_message(reader, where=lambda m: m["body"] == text)
    sid = m.xml.find(f"{{{SID}}}stanza-id")
    assert sid is not None and sid.get("by") == room
    return str(sid.get("id"))


def is_notice(m: ET.Element) -> bool:
    return m.find(f"{{{RETRACT}}}retract/{{{MODERATE}}}moderated") is not None


async def no_notice(c: Client, room: str) -> None:
    """No moderation notice reached ``c``: it says something in the room and reads up to its
    own message (the room sends in order), finding none on the way."""
    marker = secrets.token_hex(4)
    c.send_raw(f"<message to='{room}' type='groupchat'><body>{marker}</body></message>")
    while True:
        m = await next_message(c)
        assert not is_notice(m.xml), ET.tostring(m.xml)
        if m["body"] == marker:
            return


async def notice(c: Client, room: str) -> ET.Element:
    m = await next_message(c, where=lambda m: m["from"] == room and is_notice(m.xml))
    return m.xml


async def archive(c: Client, room: str) -> dict[str, ET.Element]:
    page, fin = await query(c, room)
    assert fin.get("complete") == "true"
    return {str(m.get("archive-id")): m for m in page}


async def newcomer(server: ServerProcess, room: str) -> tuple[Client, list[str]]:
    """A new occupant and the discussion history it got on entering (§7.2.13)."""
    late = await user(server, "late")
    history: list[str] = []
    late.add_event_handler("groupchat_message", lambda m: m["body"] and history.append(
        m["body"]))
    await join(late, room, "Late")  # returns after the subject, which ends the history
    return late, history


async def raw_iq_error(c: Client, to: str, payload: str) -> tuple[str, str]:
    """An IQ set whose error slixmpp cannot parse (its Error stanza does not know
    RFC 6120 §8.3.3.12 policy-violation), read as XML."""
    id_ = secrets.token_hex(4)
    got: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
    c.register_handler(Callback(f"raw {id_}", MatchXPath(f"{C}iq"), lambda s: s["id"] == id_
                                and not got.done() and got.set_result(s.xml)))
    c.send_raw(f"<iq type='set' id='{id_}' to='{to}'>{payload}</iq>")
    reply = await asyncio.wait_for(got, 10)
    c.remove_handler(f"raw {id_}")
    assert reply.get("type") == "error"
    return error_condition(reply)


async def features(c: Client, jid: str) -> set[str]:
    info = await iq(c, "get", jid, f"<query xmlns='{DISCO}'/>")
    return {str(f.get("var")) for f in info.iter(f"{{{DISCO}}}feature")}


# -- XEP-0425 ----------------------------------------------------------------------------------
def test_moderator_retracts_archive_keeps_a_tombstone(server: ServerProcess) -> None:
    room = new_room("mod")

    async def body() -> None:
        owner = await user(server, "modowner")
        bee = await user(server, "modbee")
        await create(owner, room, "Owner")
        await join(bee, room, "Bee")
        keep = await say(bee, owner, room, "kept")
        sid = await say(bee, owner, room, "bad words")
        bee_msg = (await archive(owner, room))[sid]
        author_oid = bee_msg.find(f"{{{OCCUPANT_ID}}}occupant-id")
        assert author_oid is not None
        assert {MODERATE, RETRACT, RETRACT + "#tombstone"} <= await features(bee, room)
        drain(owner, bee)

        res = await iq(owner, "set", room, moderate_xml(sid, "no swearing"))
        assert list(res) == []  # an empty result (§3.1 Example 5)
        for c in (owner, bee):  # every occupant, the moderator too (§3.1)
            n = await notice(c, room)
            assert n.get("type") == "groupchat" and n.get("id")
            r = n.find(f"{{{RETRACT}}}retract")
            assert r is not None and r.get("id") == sid
            mod = r.find(f"{{{MODERATE}}}moderated")
            assert mod is not None and mod.get("by") == f"{room}/Owner"
            oid = mod.find(f"{{{OCCUPANT_ID}}}occupant-id")
            assert oid is not None and oid.get("id")
            assert r.findtext(f"{{{RETRACT}}}reason") == "no swearing"
            legacy = n.find(f"{{{FASTEN}}}apply-to")  # XEP-0425 0.2.1 clients
            assert legacy is not None and legacy.get("id") == sid
        notice_id = n.get("id")

        entries = await archive(bee, room)
        tomb = entries[sid]
        assert tomb.find(C + "body") is None and "bad words" not in ET.tostring(tomb).decode()
        assert tomb.get("from") == f"{room}/Bee" and tomb.get("type") == "groupchat"
        kept_oid = tomb.find(f"{{{OCCUPANT_ID}}}occupant-id")
        assert kept_oid is not None and kept_oid.get("id") == author_oid.get("id")
        retracted = tomb.find(f"{{{RETRACT}}}retracted")
        assert retracted is not None and retracted.get("id") == notice_id
        assert retracted.get("stamp", "").endswith("Z")
        mod = retracted.find(f"{{{MODERATE}}}moderated")
        assert mod is not None and mod.get("by") == f"{room}/Owner"
        assert retracted.findtext(f"{{{RETRACT}}}reason") == "no swearing"
        assert entries[keep].findtext(C + "body") == "kept"
        # the notice itself is archived, last (XEP-0424 §5), and no other entry changed
        last = list(entries.values())[-1]
        assert last.get("id") == notice_id and is_notice(last)
        assert last.get("from") == room and last.find(f"{{{USER}}}x") is None
        assert list(entries)[:-1] == list(await archive(owner, room))[:-1]
        # a newcomer's history has no trace of it (XEP-0424 §5)
        late, history = await newcomer(server, room)
        assert "kept" in history and "bad words" not in history
        # again: nothing changes and nobody is told
        drain(owner, bee)
        assert list(await iq(owner, "set", room, moderate_xml(sid, "twice"))) == []
        again = await archive(bee, room)
        assert [ET.tostring(e) for e in again.values()] == [ET.tostring(e)
                                                            for e in entries.values()]
        await no_notice(bee, room)
        await close(owner, bee, late)

    run(body())


def test_moderation_refusals_change_nothing(server: ServerProcess) -> None:
    room = new_room("modno")

    async def body() -> None:
        owner = await user(server, "refowner")
        bee = await user(server, "refbee")
        stranger = await user(server, "refstranger")
        await create(owner, room, "Owner")
        await join(bee, room, "Bee")
        sid = await say(owner, bee, room, "owner speaks")
        mine = await say(bee, bee, room, "bee speaks")
        before = [ET.tostring(e) for e in (await archive(owner, room)).values()]
        drain(owner, bee)
        # a participant is no moderator (§3.2: forbidden, type modify as in Example 6)
        assert await iq_error(bee, "set", room, moderate_xml(sid)) == ("modify", "forbidden")
        assert await iq_error(bee, "set", room, moderate_xml(mine)) == ("modify", "forbidden")
        assert await iq_error(stranger, "set", room, moderate_xml(sid)) == ("modify",
                                                                            "forbidden")
        # unknown ids, bad payloads
        assert await iq_error(owner, "set", room, moderate_xml("nope")) == ("cancel",
                                                                             "item-not-found")
        assert (await iq_error(owner, "set", room, f"<moderate xmlns='{MODERATE}'><retract "
                               f"xmlns='{RETRACT}'/></moderate>"))[1] == "bad-request"
        assert (await iq_error(owner, "set", room, moderate_xml(sid, retract=False)))[1] == (
            "feature-not-implemented")
        assert (await iq_error(owner, "get", room, moderate_xml(sid)))[1] == (
            "service-unavailable")
        assert (await iq_error(owner, "set", f"nosuchroom@{SERVICE}", moderate_xml(sid)))[1] \
            == "item-not-found"
        huge = "x" * 33000  # over max_message_size
        assert await raw_iq_error(owner, room, moderate_xml(sid, huge)) == (
            "modify", "policy-violation")
        after = [ET.tostring(e) for e in (await archive(owner, room)).values()]
        assert after == before
        await no_notice(bee, room)
        # an owner who is not in the room may (a moderator whenever present); a notice is
        # not an occupant's message
        await owner.close()
        owner = await user(server, "x", jid=owner.boundjid.bare)
        assert list(await iq(owner, "set", room, moderate_xml(mine, None))) == []
        n = await notice(bee, room)
        mod = n.find(f"{{{RETRACT}}}retract/{{{MODERATE}}}moderated")
        assert mod is not None and mod.get("by") is None  # no nick to name them by
        entries = await archive(bee, room)
        assert entries[mine].find(f"{{{RETRACT}}}retracted") is not None
        notice_sid = n.find(f"{{{SID}}}stanza-id")
        assert notice_sid is not None
        assert (await iq_error(owner, "set", room, moderate_xml(str(notice_sid.get("id")))))[
            1] == "not-acceptable"
        await close(owner, bee, stranger)

    run(body())


def test_room_without_archive(server: ServerProcess) -> None:
    """The history is the room's only record: moderation works on it."""
    room = new_room("modquiet")

    async def body() -> None:
        owner = await user(server, "quietowner")
        bee = await user(server, "quietbee")
        await create(owner, room, "Owner", {"enablearchiving": "0"})
        await join(bee, room, "Bee")
        feats = await features(bee, room)
        assert {MODERATE, RETRACT} <= feats and RETRACT + "#tombstone" not in feats
        sid = await say(bee, owner, room, "gone soon")
        await say(bee, owner, room, "stays")
        assert list(await iq(owner, "set", room, moderate_xml(sid))) == []
        n = await notice(bee, room)
        assert n.find(f"{{{SID}}}stanza-id") is None  # not archived: no archive id
        assert await iq_error(owner, "set", room, moderate_xml("nope")) == ("cancel",
                                                                             "item-not-found")
        late, history = await newcomer(server, room)
        assert "stays" in history and "gone soon" not in history
        await close(owner, bee, late)

    run(body())


# -- XEP-0424 in rooms -------------------------------------------------------------------------
def retraction(room: str, sid: str, msg_id: str, extra: str = "") -> str:
    return (f"<message to='{room}' type='groupchat' id='{msg_id}'><retract id='{sid}' "
            f"xmlns='{RETRACT}'>{extra}</retract><fallback xmlns='urn:xmpp:fallback:0' "
            f"for='{RETRACT}'/><body>/me retracted a message</body>"
            "<store xmlns='urn:xmpp:hints'/></message>")


def test_author_retracts_own_room_message(server: ServerProcess) -> None:
    room = new_room("own")

    async def body() -> None:
        owner = await user(server, "ownowner")
        bee = await user(server, "ownbee")
        wasp = await connect(server, f"{server.new_user('ownwasp')[0]}/r",
                             plugins=(*PLUGINS, "xep_0424"))
        messages(wasp)
        await create(owner, room, "Owner")
        await join(bee, room, "Bee")
        await join(wasp, room, "Wasp")
        sid = await say(bee, owner, room, "oops")
        other = await say(owner, owner, room, "owner's")
        # slixmpp's XEP-0424 call, with the room's stanza id (XEP-0424 §5.1)
        sent = wasp["xep_0424"].send_retraction(JID(room), id=other, mtype="groupchat")
        err = await next_message(wasp, where=lambda m: m["type"] == "error")
        assert err["id"] == sent["id"] and error_condition(err) == ("auth", "forbidden")
        bee.send_raw(retraction(room, sid, "r1"))
        for c in (owner, bee, wasp):
            m = await next_message(c, where=lambda m: m.xml.find(f"{{{RETRACT}}}retract")
                                   is not None)
            assert m["from"] == f"{room}/Bee" and m["id"] == "r1"
        entries = await archive(owner, room)
        tomb = entries[sid].find(f"{{{RETRACT}}}retracted")
        assert tomb is not None and tomb.get("id") == "r1"  # the retraction's id (§4)
        assert entries[sid].find(C + "body") is None
        assert entries[sid].find(f"{{{RETRACT}}}retracted/{{{MODERATE}}}moderated") is None
        assert entries[other].findtext(C + "body") == "owner's"  # untouched
        last = list(entries.values())[-1]  # the retraction is archived (§5)
        assert last.find(f"{{{RETRACT}}}retract") is not None and last.get("id") == "r1"
        # refused: someone else's message, a moderation notice from an occupant, no id
        before = [ET.tostring(e) for e in entries.values()]
        for bad, cond in ((retraction(room, other, "r2"), "forbidden"),
                          (retraction(room, "x", "r3", f"<moderated xmlns='{MODERATE}' by="
                                      f"'{room}/Owner'/>"), "forbidden"),
                          (f"<message to='{room}' type='groupchat' id='r4'><apply-to xmlns="
                           f"'{FASTEN}' id='{other}'><moderated xmlns='urn:xmpp:message-"
                           "moderate:0'/></apply-to></message>", "forbidden"),
                          (f"<message to='{room}' type='groupchat' id='r5'><retract xmlns="
                           f"'{RETRACT}'/><body>x</body></message>", "bad-request")):
            bee.send_raw(bad)
            err = await next_message(bee, where=lambda m: m["type"] == "error")
            assert error_condition(err)[1] == cond, ET.tostring(err.xml)
        assert [ET.tostring(e) for e in (await archive(owner, room)).values()] == before
        # a retraction of a message the room does not know goes through unchanged
        bee.send_raw(retraction(room, "unknown", "r6"))
        m = await next_message(owner, where=lambda m: m["id"] == "r6")
        assert m.xml.find(f"{{{RETRACT}}}retract") is not None
        await close(owner, bee, wasp)

    run(body())


def test_archive_with_filter_and_notices(server: ServerProcess) -> None:
    """'with' filters: the room's notices have no roomnick, so no occupant JID selects them;
    the room's own JID does."""
    room = new_room("modwith")

    async def body() -> None:
        owner = await user(server, "withowner")
        bee = await user(server, "withbee")
        await create(owner, room, "Owner")
        await join(bee, room, "Bee")
        sid = await say(bee, owner, room, "filtered")
        await iq(owner, "set", room, moderate_xml(sid))
        await notice(owner, room)
        form = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
                f"<value>{MAM}</value></field><field var='with'><value>{{}}</value></field></x>")
        by_bee, _ = await query(owner, room, form=form.format(f"{room}/Bee"))
        assert [m.get("archive-id") for m in by_bee] == [sid]
        by_stranger, _ = await query(owner, room, form=form.format("someone@localhost"))
        assert by_stranger == []
        everything, _ = await query(owner, room, form=form.format(room))
        assert len(everything) == 2 and is_notice(everything[-1])
        await close(owner, bee)

    run(body())
