"""Invitations: mediated through the room with decline (XEP-0045 §7.8.2) and direct
(XEP-0249), with real clients."""

from __future__ import annotations

import pytest

from tests.integration.test_muc_support import (
    USER,
    admin_set,
    close,
    codes,
    configure,
    create,
    error_condition,
    iq,
    join,
    new_room,
    next_message,
    users,
)
from tests.support.client import run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
ADMIN = "http://jabber.org/protocol/muc#admin"


def test_mediated_invitation_and_decline(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "inv")
        await create(owner, room, "Owner", {"passwordprotectedroom": "1",
                                            "roomsecret": "cauldron"})
        owner.send_raw(f"<message to='{room}' id='inv1'><x xmlns='{USER}'>"
                       f"<invite to='{b.boundjid.bare}'><reason>Hey!</reason>"
                       "<continue thread='t1'/></invite>"
                       f"<invite to='{c.boundjid.bare}'/></x></message>")
        invites = []
        for invitee in (b, c):
            m = await next_message(invitee, where=lambda m: m["from"].bare == room)
            inv = m.xml.find(f"{{{USER}}}x/{{{USER}}}invite")
            assert inv is not None and inv.get("from") == owner.boundjid.bare
            # the room adds the password of a password-protected room (§7.8.2)
            assert m.xml.findtext(f"{{{USER}}}x/{{{USER}}}password") == "cauldron"
            invites.append(inv)
        assert invites[0].findtext(f"{{{USER}}}reason") == "Hey!"
        cont = invites[0].find(f"{{{USER}}}continue")  # §7.9
        assert cont is not None and cont.get("thread") == "t1"
        assert invites[1].find(f"{{{USER}}}reason") is None
        # §7.8.2 decline, forwarded to the inviter
        c.send_raw(f"<message to='{room}'><x xmlns='{USER}'><decline to='"
                   f"{owner.boundjid.bare}'><reason>Too busy</reason></decline></x></message>")
        d = await next_message(owner, where=lambda m: m["from"].bare == room and m.xml.find(
            f"{{{USER}}}x/{{{USER}}}decline") is not None)
        dec = d.xml.find(f"{{{USER}}}x/{{{USER}}}decline")
        assert dec is not None and dec.get("from") == c.boundjid.bare
        assert dec.findtext(f"{{{USER}}}reason") == "Too busy"
        # a second decline has no invitation left to answer
        c.send_raw(f"<message to='{room}'><x xmlns='{USER}'><decline to='"
                   f"{owner.boundjid.bare}'/></x></message>")
        err = await next_message(c, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("cancel", "item-not-found")
        # the invitee accepts with the password from the invitation
        assert codes(await join(b, room, "Bee", "<password>cauldron</password>")) == [110, 170]
        await close(owner, b, c)

    run(body())


def test_members_only_invitations(server: ServerProcess) -> None:
    """§9.5: in a members-only room only admins invite (members too with allowinvites), and
    the invitee becomes a member."""
    room = new_room()

    async def body() -> None:
        owner, b, c, outsider = await users(server, 4, "moinv")
        await create(owner, room, "Owner", {"membersonly": "1"})
        await admin_set(owner, room, f"<item affiliation='member' jid='{b.boundjid.bare}'/>")
        await next_message(b, where=lambda m: m.xml.find(f".//{{{USER}}}invite") is not None)
        await join(b, room, "Bee")  # the new member was invited by the room (§9.5)
        b.send_raw(f"<message to='{room}'><x xmlns='{USER}'><invite to='{c.boundjid.bare}'/>"
                   "</x></message>")
        err = await next_message(b, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("auth", "forbidden")
        await configure(owner, room, {"allowinvites": "1"})
        b.send_raw(f"<message to='{room}'><x xmlns='{USER}'><invite to='{c.boundjid.bare}'/>"
                   "</x></message>")
        await next_message(c, where=lambda m: m.xml.find(f".//{{{USER}}}invite") is not None)
        res = await iq(owner, "get", room, f"<query xmlns='{ADMIN}'><item affiliation='member'"
                                           "/></query>")
        members = sorted(i.get("jid") for i in res.iter(f"{{{ADMIN}}}item"))
        assert members == sorted([b.boundjid.bare, c.boundjid.bare])
        assert codes(await join(c, room, "Cee")) == [110, 170]
        outsider.send_raw(f"<message to='{room}'><x xmlns='{USER}'><invite to='x@localhost'/>"
                          "</x></message>")
        err = await next_message(outsider, where=lambda m: m["type"] == "error")
        assert error_condition(err) == ("modify", "not-acceptable")  # not an occupant
        await close(owner, b, c, outsider)

    run(body())


def test_direct_invitation(server: ServerProcess) -> None:
    """XEP-0249: the invitation goes from user to user; the invitee joins with what it
    carries."""
    room = new_room()

    async def body() -> None:
        owner, b = await users(server, 2, "direct")
        await create(owner, room, "Owner", {"passwordprotectedroom": "1", "roomsecret": "pw"})
        owner.plugin["xep_0249"].send_invitation(b.boundjid.bare, room, password="pw",
                                                 reason="come")
        m = await next_message(b, where=lambda m: m.xml.find("{jabber:x:conference}x")
                               is not None)
        x = m.xml.find("{jabber:x:conference}x")
        assert x is not None and x.get("jid") == room and x.get("reason") == "come"
        assert m["from"] == owner.boundjid
        assert codes(await join(b, room, "Bee", f"<password>{x.get('password')}</password>")) == [
            110, 170]
        await close(owner, b)

    run(body())
