"""Entering, nick changes and exiting a room (XEP-0045 §7.2, §7.6, §7.14) with real clients:
status codes, entry errors, multi-session nicks, real-JID visibility."""

from __future__ import annotations

import pytest

from tests.integration.test_muc_support import (
    MUC,
    OWNER,
    admin_set,
    close,
    codes,
    configure,
    create,
    drain,
    error_condition,
    iq,
    item,
    join,
    new_room,
    next_from,
    user,
    users,
)
from tests.support.client import Client, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


def test_create_join_status_codes_and_leave(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "occ")
        pres = await create(owner, room, "Owner")
        assert codes(pres) == [110, 170, 201]  # §7.2.12 logged (archived), §10.1.1 created
        assert item(pres) == {"affiliation": "owner", "role": "moderator",
                              "jid": str(owner.boundjid)}
        pres = await join(b, room, "Bee")
        assert codes(pres) == [110, 170]
        assert item(pres)["role"] == "participant" and item(pres)["affiliation"] == "none"
        # the owner (a moderator) sees Bee's real JID; in a semi-anonymous room Cee will not
        seen = await next_from(owner, f"{room}/Bee")
        assert item(seen)["jid"] == str(b.boundjid) and codes(seen) == []
        pres = await join(c, room, "Cee")
        assert codes(pres) == [110, 170]
        seen_by_b = await next_from(b, f"{room}/Cee")
        assert "jid" not in item(seen_by_b)
        # §7.14 exit with a custom message: 110 for the leaver, role none for everyone
        drain(owner, b, c)
        c.send_raw(f"<presence to='{room}/Cee' type='unavailable'><status>bye</status>"
                   "</presence>")
        mine = await next_from(c, f"{room}/Cee")
        assert mine["type"] == "unavailable" and codes(mine) == [110]
        assert mine["status"] == "bye"
        theirs = await next_from(b, f"{room}/Cee")
        assert theirs["type"] == "unavailable" and item(theirs)["role"] == "none"
        assert codes(theirs) == [] and theirs["status"] == "bye"
        await close(owner, b, c)

    run(body())


def test_non_anonymous_room_shows_everyone_real_jids(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "nonanon")
        await create(owner, room, "Owner", {"whois": "anyone"})
        pres = await join(b, room, "Bee")
        assert codes(pres) == [100, 110, 170]  # §7.2.4 status 100
        pres = await join(c, room, "Cee")
        assert codes(pres) == [100, 110, 170]
        seen_by_b = await next_from(b, f"{room}/Cee")
        assert item(seen_by_b)["jid"] == str(c.boundjid)
        await close(owner, b, c)

    run(body())


def test_nick_change_and_conflicts(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "nick")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        # §7.2.9 nickname conflict
        err = await join(c, room, "Bee")
        assert err["type"] == "error" and error_condition(err) == ("cancel", "conflict")
        assert err.xml.find(f"{{{MUC}}}x") is not None
        await join(c, room, "Cee")
        await next_from(b, f"{room}/Cee")  # everyone has seen Cee arrive
        await next_from(owner, f"{room}/Cee")
        drain(owner, b, c)
        # §7.6 change to a taken nick: conflict; to a free one: 303 then the new presence
        c.send_raw(f"<presence to='{room}/Bee'/>")
        err = await next_from(c, f"{room}/Bee", where=lambda p: p["type"] == "error")
        assert error_condition(err) == ("cancel", "conflict")
        c.send_raw(f"<presence to='{room}/Sea'/>")
        old = await next_from(c, f"{room}/Cee")
        assert old["type"] == "unavailable" and sorted(codes(old)) == [110, 303]
        assert item(old)["nick"] == "Sea" and item(old)["role"] == "participant"
        new = await next_from(c, f"{room}/Sea")
        assert codes(new) == [110]
        other_old = await next_from(b, f"{room}/Cee")
        assert codes(other_old) == [303] and item(other_old)["nick"] == "Sea"
        assert codes(await next_from(b, f"{room}/Sea")) == []
        # status 210: the service prepared the nick (RFC 7622 OpaqueString, NFC) differently
        drain(owner, b, c)
        c.send_raw(f"<presence to='{room}/Cafe\u0301'/>")
        old = await next_from(c, f"{room}/Sea")
        assert sorted(codes(old)) == [110, 303] and item(old)["nick"] == "Caf\u00e9"
        new = await next_from(c, f"{room}/Caf\u00e9")
        assert codes(new) == [110, 210]
        await close(owner, b, c)

    run(body())


def test_entry_errors(server: ServerProcess) -> None:
    """§7.2.6-7.2.10: password, members-only, banned, full; §18.1.1 bad nicks."""
    rooms = [new_room() for _ in range(4)]

    async def body() -> None:
        owner, b, c = await users(server, 3, "deny")
        await create(owner, rooms[0], "O", {"passwordprotectedroom": "1",
                                            "roomsecret": "cauldron"})
        err = await join(b, rooms[0], "Bee")
        assert error_condition(err) == ("auth", "not-authorized")
        err = await join(b, rooms[0], "Bee", "<password>wrong</password>")
        assert error_condition(err) == ("auth", "not-authorized")
        ok = await join(b, rooms[0], "Bee", "<password>cauldron</password>")
        assert codes(ok) == [110, 170]
        await create(owner, rooms[1], "O", {"membersonly": "1"})
        err = await join(b, rooms[1], "Bee")
        assert error_condition(err) == ("auth", "registration-required")
        await create(owner, rooms[2], "O")
        await owner_ban(owner, rooms[2], b.boundjid.bare)
        err = await join(b, rooms[2], "Bee")
        assert error_condition(err) == ("auth", "forbidden")
        await create(owner, rooms[3], "O", {"maxusers": "2"})
        await join(b, rooms[3], "Bee")
        err = await join(c, rooms[3], "Cee")
        assert error_condition(err) == ("wait", "service-unavailable")
        for bad in ("   ", "x" * 65):
            err = await join(c, rooms[2], bad)
            assert error_condition(err) == ("modify", "jid-malformed"), bad
        # a room that does not exist yet but is locked: item-not-found (§7.2.11)
        locked = new_room()
        assert 201 in codes(await join(owner, locked, "O"))
        err = await join(c, locked, "Cee")
        assert error_condition(err) == ("cancel", "item-not-found")
        await close(owner, b, c)

    run(body())


async def owner_ban(owner: Client, room: str, bare: str) -> None:
    await admin_set(owner, room, f"<item affiliation='outcast' jid='{bare}'/>")


def test_multi_session_same_nick(server: ServerProcess) -> None:
    """§7.2.9: one user, two resources, one nick: both get the room's traffic."""
    room = new_room()

    async def body() -> None:
        owner, = await users(server, 1, "multi-o")
        jid, _ = server.new_user("multi")
        one = await user(server, "", "one", jid)
        two = await user(server, "", "two", jid)
        await create(owner, room, "Owner")
        assert codes(await join(one, room, "Me")) == [110, 170]
        assert codes(await join(two, room, "Me")) == [110, 170]
        drain(owner, one, two)
        owner.send_message(mto=room, mbody="to all", mtype="groupchat")
        for c in (one, two):
            m = await next_from(c, f"{room}/Owner", kind="message")
            assert m["body"] == "to all"
        # either resource speaks for the occupant
        two.send_message(mto=room, mbody="from two", mtype="groupchat")
        m = await next_from(one, f"{room}/Me", kind="message")
        assert m["body"] == "from two"
        # one resource leaves: the occupant stays
        one.send_raw(f"<presence to='{room}/Me' type='unavailable'/>")
        gone = await next_from(one, f"{room}/Me")
        assert gone["type"] == "unavailable" and codes(gone) == [110]
        owner.send_message(mto=room, mbody="still there?", mtype="groupchat")
        m = await next_from(two, f"{room}/Owner", kind="message",
                            where=lambda m: m["body"] == "still there?")
        assert m["type"] == "groupchat"
        await close(owner, one, two)

    run(body())


def test_session_end_removes_occupant(server: ServerProcess) -> None:
    """A client that disconnects leaves the room (RFC 6121 §4.6.3 unavailable presence)."""
    room = new_room()

    async def body() -> None:
        owner, b = await users(server, 2, "gone")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        await next_from(owner, f"{room}/Bee")
        b.abort()  # the TCP connection just dies
        left = await next_from(owner, f"{room}/Bee", timeout=15)
        assert left["type"] == "unavailable" and item(left)["role"] == "none"
        await close(owner)

    run(body())


def test_configure_reserved_room_then_others_enter(server: ServerProcess) -> None:
    """§10.1.3: a reserved room is configured through the form before it is unlocked."""
    room = new_room()

    async def body() -> None:
        owner, b = await users(server, 2, "reserved")
        assert 201 in codes(await join(owner, room, "Owner"))
        form = await iq(owner, "get", room, f"<query xmlns='{OWNER}'/>")
        fields = {f.get("var") for f in form.iter("{jabber:x:data}field")}
        assert {"muc#roomconfig_roomname", "muc#roomconfig_persistentroom",
                "muc#roomconfig_membersonly", "muc#roomconfig_moderatedroom",
                "muc#roomconfig_whois", "muc#roomconfig_roomsecret",
                "muc#roomconfig_maxusers", "muc#roomconfig_enablearchiving"} <= fields
        assert error_condition(await join(b, room, "Bee")) == ("cancel", "item-not-found")
        await configure(owner, room, {"roomname": "The Cave", "moderatedroom": "1"})
        pres = await join(b, room, "Bee")
        assert item(pres)["role"] == "visitor"  # §5.1.2 moderated room
        await close(owner, b)

    run(body())
