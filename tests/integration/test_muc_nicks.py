"""Room nicknames under the RFC 8266 Nickname profile with real clients: look-alikes of an
occupant's nick or of a member's reserved nick are conflicts on entry (XEP-0045 §7.2.9) and on
nick change (§7.6), the room shows the enforced form, one user's look-alike joins its own
occupant (§7.2.9 multi-session), and what is no nickname is refused."""

from __future__ import annotations

import pytest

from tests.integration.test_muc_support import (
    ADMIN,
    MUC,
    admin_set,
    close,
    codes,
    create,
    drain,
    error_condition,
    iq,
    iq_error,
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

FULLWIDTH_A = "\uff41"


async def roster(c: Client, room: str) -> list[str]:
    """The room's occupants by nick, asked by a moderator (§8.5, §9.8 role lists); the IQ
    round trip is also a barrier: every presence the room sent before it has arrived."""
    nicks = []
    for role in ("moderator", "participant", "visitor"):
        res = await iq(c, "get", room, f"<query xmlns='{ADMIN}'><item role='{role}'/></query>")
        nicks += [i.get("nick", "") for i in res.iter(f"{{{ADMIN}}}item")]
    return sorted(nicks)


def test_lookalike_nicks_conflict_on_entry_and_nick_change(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, alice, bob = await users(server, 3, "look")
        await create(owner, room, "Owner")
        assert codes(await join(alice, room, "alice")) == [110, 170]
        for nick in ("ALICE", "Alice", f"{FULLWIDTH_A}lice", " alice ", "alice\u00a0"):
            err = await join(bob, room, nick)
            assert err["type"] == "error", nick
            assert error_condition(err) == ("cancel", "conflict"), nick
            assert err.xml.find(f"{{{MUC}}}x") is not None
            assert err.xml.find("{jabber:client}error").get("by") == room  # type: ignore[union-attr]
        assert await roster(owner, room) == ["Owner", "alice"]
        # §7.6: a look-alike of someone else's nick is refused as a new nick too
        await join(bob, room, "Bob")
        await next_from(alice, f"{room}/Bob")
        drain(owner, alice, bob)
        for nick in ("ALICE", f"{FULLWIDTH_A}lice", "  alice"):
            bob.send_raw(f"<presence to='{room}/{nick}'/>")
            err = await bob.next_presence(10, lambda p: p["type"] == "error")
            assert error_condition(err) == ("cancel", "conflict"), nick
        assert await roster(owner, room) == ["Bob", "Owner", "alice"]
        # the same occupant may change the case of its own nick (§7.6 "MAY allow")
        alice.send_raw(f"<presence to='{room}/Alice'/>")
        old = await next_from(alice, f"{room}/alice")
        assert sorted(codes(old)) == [110, 303] and item(old)["nick"] == "Alice"
        assert codes(await next_from(alice, f"{room}/Alice")) == [110]
        assert await roster(owner, room) == ["Alice", "Bob", "Owner"]
        await close(owner, alice, bob)

    run(body())


def test_room_shows_the_enforced_nick(server: ServerProcess) -> None:
    """RFC 8266 §2.3: spaces mapped and trimmed, widths mapped (NFKC), case kept; the room
    tells the occupant it changed the nick with 210 (XEP-0045 §7.2.3, §7.6)."""
    room = new_room()

    async def body() -> None:
        owner, c, d = await users(server, 3, "shown")
        await create(owner, room, "Owner")
        pres = await join(c, room, "  Cee\u3000\u3000Dee ")
        assert str(pres["from"]) == f"{room}/Cee Dee" and codes(pres) == [110, 170, 210]
        seen = await next_from(owner, f"{room}/Cee Dee")
        assert codes(seen) == []
        pres = await join(d, room, "\uff24ee")  # FULLWIDTH D
        assert str(pres["from"]) == f"{room}/Dee" and 210 in codes(pres)
        drain(owner, c, d)
        c.send_raw(f"<presence to='{room}/\uff23ee'/>")  # nick change, fullwidth C
        old = await next_from(c, f"{room}/Cee Dee")
        assert item(old)["nick"] == "Cee" and sorted(codes(old)) == [110, 303]
        assert codes(await next_from(c, f"{room}/Cee")) == [110, 210]
        assert await roster(owner, room) == ["Cee", "Dee", "Owner"]
        await close(owner, c, d)

    run(body())


def test_same_user_lookalike_joins_its_own_occupant(server: ServerProcess) -> None:
    """§7.2.9: the same bare JID gets a second in-room session of the same roomnick; a
    look-alike is the same roomnick, so the session joins under the nick the room shows."""
    room = new_room()

    async def body() -> None:
        owner, = await users(server, 1, "selfl-o")
        jid, _ = server.new_user("selfl")
        one = await user(server, "", "one", jid)
        two = await user(server, "", "two", jid)
        await create(owner, room, "Owner")
        await join(one, room, "Me")
        pres = await join(two, room, "ME")
        assert str(pres["from"]) == f"{room}/Me" and codes(pres) == [110, 170, 210]
        assert await roster(owner, room) == ["Me", "Owner"]
        drain(owner, one, two)
        owner.send_message(mto=room, mbody="both?", mtype="groupchat")
        for c in (one, two):
            m = await next_from(c, f"{room}/Owner", kind="message")
            assert m["body"] == "both?"
        await close(owner, one, two)

    run(body())


def test_reserved_nick_lookalikes(server: ServerProcess) -> None:
    """§7.12/§9.3: a member's reserved nick, and its look-alikes, are the member's."""
    room = new_room()

    async def body() -> None:
        owner, b, c, d = await users(server, 4, "resl")
        bj, dj = b.boundjid.bare, d.boundjid.bare
        await create(owner, room, "Owner")
        # stored in the enforced form
        await admin_set(owner, room, f"<item affiliation='member' jid='{bj}' nick=' Bee '/>")
        res = await iq(owner, "get", room, f"<query xmlns='{ADMIN}'>"
                                           "<item affiliation='member'/></query>")
        assert [i.get("nick") for i in res.iter(f"{{{ADMIN}}}item")] == ["Bee"]
        reserved = await iq(b, "get", room, "<query xmlns='http://jabber.org/protocol/disco#"
                                            "info' node='x-roomuser-item'/>")
        ident = reserved.find(".//{http://jabber.org/protocol/disco#info}identity")
        assert ident is not None and ident.get("name") == "Bee"
        # another member cannot reserve a look-alike (§7.10 "already reserved": conflict)
        assert await iq_error(owner, "set", room, f"<query xmlns='{ADMIN}'><item "
                              f"affiliation='member' jid='{dj}' nick='\uff42EE'/></query>") == (
            "cancel", "conflict")
        # nor can two items of one request reserve look-alikes
        assert await iq_error(owner, "set", room, f"<query xmlns='{ADMIN}'>"
                              f"<item affiliation='member' jid='{dj}' nick='Dee'/>"
                              f"<item affiliation='member' jid='{c.boundjid.bare}' "
                              "nick='DEE'/></query>") == ("cancel", "conflict")
        # a reserved nick must be a nickname
        assert await iq_error(owner, "set", room, f"<query xmlns='{ADMIN}'><item "
                              f"affiliation='member' jid='{dj}' nick='\u3000'/></query>") == (
            "modify", "bad-request")
        for nick in ("BEE", "\uff42ee", "bee "):
            assert error_condition(await join(c, room, nick)) == ("cancel", "conflict"), nick
        await join(c, room, "Cee")
        drain(c)
        c.send_raw(f"<presence to='{room}/bEe'/>")
        err = await c.next_presence(10, lambda p: p["type"] == "error")
        assert error_condition(err) == ("cancel", "conflict")
        # the member itself may use it, in any look-alike
        assert codes(await join(b, room, "BEE")) == [110, 170]
        assert await roster(owner, room) == ["BEE", "Cee", "Owner"]
        await close(owner, b, c, d)

    run(body())


def test_nicks_the_profile_refuses(server: ServerProcess) -> None:
    """Strings that are resourceparts (RFC 7622 OpaqueString) but no nicknames (RFC 8266):
    only spaces (empty after mapping, §2.3), or NFKC output outside the FreeformClass. The
    nick is the occupant JID's resourcepart: jid-malformed (RFC 6120 §8.3.3.8), as for a
    missing nick (XEP-0045 §7.2.1)."""
    room = new_room()

    async def body() -> None:
        owner, c = await users(server, 2, "badnick")
        await create(owner, room, "Owner")
        for bad in ("\u3000", "\u013f", "\u3131"):
            err = await join(c, room, bad)
            assert error_condition(err) == ("modify", "jid-malformed"), repr(bad)
        await join(c, room, "Cee")
        drain(c)
        c.send_raw(f"<presence to='{room}/\u013f'/>")  # as a new nick (§7.6)
        err = await c.next_presence(10, lambda p: p["type"] == "error")
        assert error_condition(err) == ("modify", "jid-malformed")
        assert await roster(owner, room) == ["Cee", "Owner"]
        await close(owner, c)

    run(body())
