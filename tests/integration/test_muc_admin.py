"""Moderation and administration (XEP-0045 §8-§10) with real clients: every muc#admin list
operation, the configuration notifications, and destroying a room."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.integration.test_muc_support import (
    ADMIN,
    OWNER,
    USER,
    admin_set,
    close,
    codes,
    configure,
    create,
    error_condition,
    iq,
    iq_error,
    item,
    join,
    new_room,
    next_from,
    next_message,
    users,
)
from tests.support.client import Client, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


async def get_list(c: Client, room: str, attr: str) -> list[dict[str, str]]:
    res = await iq(c, "get", room, f"<query xmlns='{ADMIN}'><item {attr}/></query>")
    return [dict(i.attrib) for i in res.iter(f"{{{ADMIN}}}item")]


def test_kick_and_voice(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c, d = await users(server, 4, "kick")
        await create(owner, room, "Owner", {"moderatedroom": "1"})
        await admin_set(owner, room, f"<item affiliation='member' jid='{b.boundjid.bare}'/>")
        assert item(await join(b, room, "Bee"))["role"] == "participant"  # member: voice
        assert item(await join(c, room, "Cee"))["role"] == "visitor"
        await join(d, room, "Dee")
        # §8.5 voice list
        voiced = await get_list(owner, room, "role='participant'")
        assert [(v["nick"], v["affiliation"], v["jid"]) for v in voiced] == [
            ("Bee", "member", str(b.boundjid))]
        # §8.3 grant voice, §8.4 revoke it
        await admin_set(owner, room, "<item nick='Cee' role='participant'><reason>ok</reason>"
                                     "</item>")
        p = await next_from(c, f"{room}/Cee", where=lambda p: p["muc"]["role"] == "participant")
        assert codes(p) == [110] and p.xml.findtext(f".//{{{USER}}}reason") == "ok"
        await admin_set(owner, room, "<item nick='Cee' role='visitor'/>")
        await next_from(d, f"{room}/Cee", where=lambda p: p["muc"]["role"] == "visitor")
        # non-moderators may not; nobody silences the owner (§8.4)
        assert await iq_error(b, "set", room, f"<query xmlns='{ADMIN}'><item nick='Dee' "
                                              "role='none'/></query>") == ("auth", "forbidden")
        await admin_set(owner, room, "<item nick='Bee' role='moderator'/>")
        mods = await get_list(owner, room, "role='moderator'")  # §9.8
        assert sorted(m["nick"] for m in mods) == ["Bee", "Owner"]
        assert await iq_error(b, "get", room, f"<query xmlns='{ADMIN}'><item role='moderator'/>"
                              "</query>") == ("auth", "forbidden")  # admins only
        assert await iq_error(b, "set", room, f"<query xmlns='{ADMIN}'><item nick='Owner' "
                                              "role='visitor'/></query>") == ("cancel",
                                                                               "not-allowed")
        assert await iq_error(owner, "set", room, f"<query xmlns='{ADMIN}'><item nick='Cee' "
                                                  "role='none' affiliation='none'/></query>"
                              ) == ("modify", "bad-request")  # §17.3.4 not both
        assert await iq_error(owner, "set", room, f"<query xmlns='{ADMIN}'><item nick='Zed' "
                                                  "role='none'/></query>"
                              ) == ("cancel", "item-not-found")
        # §8.2 kick: 307 with actor and reason, to the kicked one (110) and the others
        await admin_set(b, room, "<item nick='Dee' role='none'><reason>Avaunt</reason></item>")
        kicked = await next_from(d, f"{room}/Dee", where=lambda p: p["type"] == "unavailable")
        assert codes(kicked) == [110, 307]
        assert kicked.xml.find(f".//{{{USER}}}actor").get("nick") == "Bee"  # type: ignore[union-attr]
        assert kicked.xml.findtext(f".//{{{USER}}}reason") == "Avaunt"
        seen = await next_from(c, f"{room}/Dee", where=lambda p: p["type"] == "unavailable")
        assert codes(seen) == [307] and item(seen)["role"] == "none"
        assert item(await join(d, room, "Dee"))["role"] == "visitor"  # a kick is not a ban
        await close(owner, b, c, d)

    run(body())


def test_ban_member_admin_and_owner_lists(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c, d, e = await users(server, 5, "aff")
        await create(owner, room, "Owner")
        await join(c, room, "Cee")
        await join(d, room, "Dee")
        bj, cj, ej = (x.boundjid.bare for x in (b, c, e))
        # §10.6 owner grants admin; §9.8 the new admin becomes a moderator
        await admin_set(owner, room, f"<item affiliation='admin' jid='{bj}'/>")
        await join(b, room, "Bee")
        assert [i["jid"] for i in await get_list(owner, room, "affiliation='admin'")] == [bj]
        # §9.1 ban by an admin: 301 with reason; the ban persists in the ban list (§9.2)
        await admin_set(b, room, f"<item affiliation='outcast' jid='{cj}/any'><reason>Treason"
                                 "</reason></item>")
        banned = await next_from(c, f"{room}/Cee", where=lambda p: p["type"] == "unavailable")
        assert codes(banned) == [110, 301] and item(banned)["affiliation"] == "outcast"
        seen = await next_from(d, f"{room}/Cee", where=lambda p: p["type"] == "unavailable")
        assert codes(seen) == [301]
        outcasts = await get_list(b, room, "affiliation='outcast'")
        assert [i["jid"] for i in outcasts] == [cj]
        res = await iq(b, "get", room, f"<query xmlns='{ADMIN}'><item affiliation='outcast'/>"
                                       "</query>")
        assert res.findtext(f".//{{{ADMIN}}}reason") == "Treason"
        assert error_condition(await join(c, room, "Cee")) == ("auth", "forbidden")
        # admins cannot touch owners or other admins, nor edit the admin list (§9.1, §10.7)
        assert await iq_error(b, "set", room, f"<query xmlns='{ADMIN}'><item "
                              f"affiliation='outcast' jid='{owner.boundjid.bare}'/></query>"
                              ) == ("cancel", "not-allowed")
        assert await iq_error(b, "set", room, f"<query xmlns='{ADMIN}'><item "
                              f"affiliation='admin' jid='{ej}'/></query>") == ("auth",
                                                                               "forbidden")
        assert await iq_error(b, "set", room, f"<query xmlns='{ADMIN}'><item "
                              f"affiliation='outcast' jid='{bj}'/></query>") == ("cancel",
                                                                                 "conflict")
        # all or nothing (§9.2): one bad item, no change
        assert await iq_error(b, "set", room, f"<query xmlns='{ADMIN}'>"
                              f"<item affiliation='none' jid='{cj}'/>"
                              f"<item affiliation='owner' jid='{ej}'/></query>") == (
            "auth", "forbidden")
        assert [i["jid"] for i in await get_list(b, room, "affiliation='outcast'")] == [cj]
        # §9.3/§9.5 members with reserved nicks; lists carry jid and affiliation, never role
        await admin_set(b, room, f"<item affiliation='none' jid='{cj}'/>"
                                 f"<item affiliation='member' jid='{ej}' nick='Eee'/>")
        members = await get_list(b, room, "affiliation='member'")
        assert members == [{"affiliation": "member", "jid": ej, "nick": "Eee"}]
        assert error_condition(await join(d, room, "Eee")) == ("cancel", "conflict")
        reserved = await iq(e, "get", room, "<query xmlns='http://jabber.org/protocol/disco#info'"
                                            " node='x-roomuser-item'/>")
        ident = reserved.find(".//{http://jabber.org/protocol/disco#info}identity")
        assert ident is not None and ident.get("name") == "Eee"  # §7.12
        # §10.3-10.5 owners: grant, list, and the last owner cannot leave the list
        assert await iq_error(owner, "set", room, f"<query xmlns='{ADMIN}'><item "
                              f"affiliation='admin' jid='{owner.boundjid.bare}'/></query>") == (
            "cancel", "conflict")
        await admin_set(owner, room, f"<item affiliation='owner' jid='{bj}'/>")
        upgraded = await next_from(d, f"{room}/Bee", where=lambda p: p["muc"]["affiliation"]
                                   == "owner")
        assert item(upgraded)["role"] == "moderator"
        assert sorted(i["jid"] for i in await get_list(b, room, "affiliation='owner'")) == (
            sorted([bj, owner.boundjid.bare]))
        assert await iq_error(d, "get", room, f"<query xmlns='{ADMIN}'><item "
                              "affiliation='owner'/></query>") == ("auth", "forbidden")
        await admin_set(b, room, f"<item affiliation='member' jid='{owner.boundjid.bare}'/>")
        demoted = await next_from(d, f"{room}/Owner", where=lambda p: p["muc"]["affiliation"]
                                  == "member")
        assert item(demoted)["role"] == "participant"
        await close(owner, b, c, d, e)

    run(body())


def test_members_only_removals(server: ServerProcess) -> None:
    """§9.4: a member removed from a members-only room leaves with 321; §10.2: turning a
    room members-only removes the non-members with 322."""
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "mo")
        await create(owner, room, "Owner")
        await admin_set(owner, room, f"<item affiliation='member' jid='{b.boundjid.bare}'/>")
        await join(b, room, "Bee")
        await join(c, room, "Cee")
        await configure(owner, room, {"membersonly": "1"})
        gone = await next_from(c, f"{room}/Cee", where=lambda p: p["type"] == "unavailable")
        assert codes(gone) == [110, 322]
        seen = await next_from(b, f"{room}/Cee", where=lambda p: p["type"] == "unavailable")
        assert codes(seen) == [322]
        await admin_set(owner, room, f"<item affiliation='none' jid='{b.boundjid.bare}'/>")
        gone = await next_from(b, f"{room}/Bee", where=lambda p: p["type"] == "unavailable")
        assert codes(gone) == [110, 321]
        assert error_condition(await join(b, room, "Bee")) == ("auth", "registration-required")
        await close(owner, b, c)

    run(body())


def test_configuration_notifications(server: ServerProcess) -> None:
    """§10.2.1: 172/173 anonymity, 170/171 logging, 104 other changes."""
    room = new_room()

    async def body() -> None:
        owner, b = await users(server, 2, "notify")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")

        async def change(cfg: dict[str, str | list[str]]) -> list[int]:
            await configure(owner, room, cfg)
            m = await next_message(b, where=lambda m: m["from"].bare == room and codes(m))
            assert m["type"] == "groupchat" and str(m["from"]) == room
            return codes(m)

        assert await change({"whois": "anyone"}) == [172]
        assert await change({"whois": "moderators"}) == [173]
        assert await change({"enablearchiving": "0"}) == [171]
        assert await change({"enablelogging": "1"}) == [170]
        assert await change({"roomname": "The Heath"}) == [104]
        info = await iq(b, "get", room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        ident = info.find(".//{http://jabber.org/protocol/disco#info}identity")
        assert ident is not None and ident.get("name") == "The Heath"
        # non-owners get no form (§10.2)
        assert await iq_error(b, "get", room, f"<query xmlns='{OWNER}'/>") == ("auth",
                                                                                "forbidden")
        await close(owner, b)

    run(body())


def test_bad_configuration_forms(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, = await users(server, 1, "badform")
        await create(owner, room, "Owner")

        async def submit(fields: str) -> tuple[str, str]:
            return await iq_error(owner, "set", room, f"<query xmlns='{OWNER}'><x xmlns="
                                  f"'jabber:x:data' type='submit'>{fields}</x></query>")

        assert await submit("<field var='muc#roomconfig_colour'><value>red</value></field>"
                            ) == ("modify", "bad-request")
        assert await submit("<field var='muc#roomconfig_moderatedroom'><value>perhaps</value>"
                            "</field>") == ("modify", "bad-request")
        assert await submit("<field var='muc#roomconfig_whois'><value>nobody</value></field>"
                            ) == ("modify", "not-acceptable")
        assert await submit("<field var='muc#roomconfig_maxusers'><value>999999</value>"
                            "</field>") == ("modify", "not-acceptable")
        assert await submit("<field var='muc#roomconfig_passwordprotectedroom'><value>1"
                            "</value></field>") == ("modify", "not-acceptable")
        await close(owner)

    run(body())


def test_destroy_with_alternate_venue(server: ServerProcess) -> None:
    """§10.9: one unavailable presence per occupant with <destroy jid=...><reason/>."""
    room, venue = new_room(), new_room("venue")

    async def body() -> None:
        owner, b, c = await users(server, 3, "destroy")
        await create(owner, room, "Owner", {"persistentroom": "1"})
        await join(b, room, "Bee")
        assert await iq_error(b, "set", room, f"<query xmlns='{OWNER}'><destroy/></query>") == (
            "auth", "forbidden")
        await iq(owner, "set", room, f"<query xmlns='{OWNER}'><destroy jid='{venue}'>"
                                     "<reason>Macbeth doth come.</reason></destroy></query>")
        for cl, nick in ((owner, "Owner"), (b, "Bee")):
            p = await next_from(cl, f"{room}/{nick}", where=lambda p: p["type"] == "unavailable")
            d = p.xml.find(f"{{{USER}}}x/{{{USER}}}destroy")
            assert d is not None, ET.tostring(p.xml)
            assert d.get("jid") == venue
            assert d.findtext(f"{{{USER}}}reason") == "Macbeth doth come."
            assert item(p) == {"affiliation": "none", "role": "none"}
        # the room is gone: entering creates a new one
        pres = await join(c, room, "Cee")
        assert 201 in codes(pres)
        items = await iq(c, "get", "conference.localhost",
                         "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        assert room not in [i.get("jid") for i in items.iter()
                            if isinstance(i, ET.Element) and i.get("jid")]
        await close(owner, b, c)

    run(body())
