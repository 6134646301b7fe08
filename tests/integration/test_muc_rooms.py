"""The service and its rooms in service discovery (XEP-0045 §6), temporary rooms, XEP-0410
self-ping, IQs between occupants (§17.3), and XEP-0048 bookmarks of rooms kept in private
XML storage (XEP-0049)."""

from __future__ import annotations

import pytest
from slixmpp.plugins.xep_0048.stanza import Bookmarks

from tests.integration.test_muc_support import (
    SERVICE,
    close,
    codes,
    configure,
    create,
    iq,
    iq_error,
    join,
    new_room,
    next_from,
    user,
    users,
)
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
PING = "<ping xmlns='urn:xmpp:ping'/>"


def test_service_discovery(server: ServerProcess) -> None:
    public, hidden, locked = new_room("pub"), new_room("hid"), new_room("lock")

    async def body() -> None:
        owner, other = await users(server, 2, "disco")
        domain_items = await iq(owner, "get", "localhost", f"<query xmlns='{ITEMS}'/>")
        assert SERVICE in {i.get("jid") for i in domain_items.iter(f"{{{ITEMS}}}item")}
        info = await iq(owner, "get", SERVICE, f"<query xmlns='{INFO}'/>")
        ident = info.find(f".//{{{INFO}}}identity")
        assert ident is not None and (ident.get("category"), ident.get("type")) == (
            "conference", "text")
        feats = {f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
        assert {"http://jabber.org/protocol/muc", "urn:xmpp:occupant-id:0"} <= feats
        await create(owner, public, "O", {"roomname": "Public Place", "roomdesc": "Hello"})
        await create(owner, hidden, "O", {"publicroom": "0"})
        assert 201 in codes(await join(owner, locked, "O"))
        items = await iq(other, "get", SERVICE, f"<query xmlns='{ITEMS}'/>")
        listed = {i.get("jid"): i.get("name") for i in items.iter(f"{{{ITEMS}}}item")}
        assert listed.get(public) == "Public Place"
        assert hidden not in listed and locked not in listed
        # §6.4 room info with the muc#roominfo form
        info = await iq(other, "get", public, f"<query xmlns='{INFO}'/>")
        feats = {f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
        assert {"muc_public", "muc_temporary", "muc_unsecured", "muc_open", "muc_unmoderated",
                "muc_semianonymous", "http://jabber.org/protocol/muc#stable_id",
                "http://jabber.org/protocol/muc#self-ping-optimization"} <= feats
        form = {f.get("var"): f.findtext("{jabber:x:data}value")
                for f in info.iter("{jabber:x:data}field")}
        assert form["FORM_TYPE"] == "http://jabber.org/protocol/muc#roominfo"
        assert form["muc#roominfo_description"] == "Hello"
        assert form["muc#roominfo_occupants"] == "1"
        hidden_info = await iq(other, "get", hidden, f"<query xmlns='{INFO}'/>")
        assert "muc_hidden" in {f.get("var") for f in hidden_info.iter(f"{{{INFO}}}feature")}
        assert await iq_error(other, "get", locked, f"<query xmlns='{INFO}'/>") == (
            "cancel", "item-not-found")  # §7.2.11: a locked room does not exist yet
        assert await iq_error(other, "get", new_room(), f"<query xmlns='{INFO}'/>") == (
            "cancel", "item-not-found")
        occupants = await iq(other, "get", public, f"<query xmlns='{ITEMS}'/>")
        assert list(occupants.iter(f"{{{ITEMS}}}item")) == []  # §6.5: private by default
        await close(owner, other)

    run(body())


def test_room_list_paging(server: ServerProcess) -> None:
    """§6.3: a long room list comes in XEP-0059 pages."""
    rooms = sorted(new_room("page") for _ in range(3))

    async def body() -> None:
        owner, = await users(server, 1, "paging")
        for r in rooms:
            await create(owner, r, "O")
        seen: list[str] = []
        after = ""
        while True:
            rsm = "<max>2</max>" + (f"<after>{after}</after>" if after else "")
            res = await iq(owner, "get", SERVICE, f"<query xmlns='{ITEMS}'><set xmlns="
                                                  f"'http://jabber.org/protocol/rsm'>{rsm}</set>"
                                                  "</query>")
            page = [i.get("jid") or "" for i in res.iter(f"{{{ITEMS}}}item")]
            assert len(page) <= 2
            seen += page
            if len(page) < 2:
                break
            after = page[-1]
        assert [r for r in seen if r in rooms] == rooms
        assert seen == sorted(seen)
        await close(owner)

    run(body())


def test_temporary_room_vanishes_when_empty(server: ServerProcess) -> None:
    room = new_room("tmp")

    async def body() -> None:
        owner, other = await users(server, 2, "tmp")
        await create(owner, room, "O")
        owner.send_raw(f"<presence to='{room}/O' type='unavailable'/>")
        await next_from(owner, f"{room}/O", where=lambda p: p["type"] == "unavailable")
        assert await iq_error(other, "get", room, f"<query xmlns='{INFO}'/>") == (
            "cancel", "item-not-found")
        assert 201 in codes(await join(other, room, "New"))  # a new room, a new owner
        await close(owner, other)

    run(body())


def test_cancelling_the_initial_configuration_destroys_the_room(server: ServerProcess) -> None:
    """XEP-0045 §10.1.3: a locked room whose owner cancels the first form is destroyed (the
    owner gets unavailable); a later cancel of a reconfiguration changes nothing (§10.2)."""
    room, kept = new_room("cancel"), new_room("keep")
    cancel = "<query xmlns='http://jabber.org/protocol/muc#owner'>" \
             "<x xmlns='jabber:x:data' type='cancel'/></query>"

    async def body() -> None:
        owner, other = await users(server, 2, "cancel")
        assert 201 in codes(await join(owner, room, "O"))  # locked until configured
        await iq(owner, "set", room, cancel)
        await next_from(owner, f"{room}/O", where=lambda p: p["type"] == "unavailable")
        assert await iq_error(other, "get", room, f"<query xmlns='{INFO}'/>") == (
            "cancel", "item-not-found")
        await create(owner, kept, "O", {"roomname": "Kept"})
        await iq(owner, "set", kept, cancel)
        info = await iq(other, "get", kept, f"<query xmlns='{INFO}'/>")
        assert info.find(f"{{{INFO}}}query/{{{INFO}}}identity").get("name") == "Kept"  # type: ignore[union-attr]
        await close(owner, other)

    run(body())


def test_self_ping_and_occupant_iqs(server: ServerProcess) -> None:
    """XEP-0410 §3.3: answered by the room for the occupant itself, not-acceptable for
    anyone else; other IQs to an occupant JID reach that occupant (§17.3.3)."""
    room = new_room("ping")

    async def body() -> None:
        owner, b, outsider = await users(server, 3, "ping")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        res = await iq(b, "get", f"{room}/Bee", PING)
        assert res.get("type") == "result" and res.get("from") == f"{room}/Bee"
        assert await iq_error(outsider, "get", f"{room}/Bee", PING) == ("cancel",
                                                                        "not-acceptable")
        assert await iq_error(outsider, "get", f"{room}/Bee", f"<query xmlns='{INFO}'/>") == (
            "modify", "bad-request")  # §6.6
        # an IQ to another occupant goes through the room to its client (slixmpp answers
        # pings), without either real JID showing
        res = await iq(owner, "get", f"{room}/Bee", PING)
        assert res.get("type") == "result" and res.get("from") == f"{room}/Bee"
        assert await iq_error(b, "get", f"{room}/Nobody", PING) == ("cancel", "item-not-found")
        b.send_raw(f"<presence to='{room}/Bee' type='unavailable'/>")
        await next_from(b, f"{room}/Bee", where=lambda p: p["type"] == "unavailable")
        assert await iq_error(b, "get", f"{room}/Bee", PING) == ("cancel", "not-acceptable")
        await close(owner, b, outsider)

    run(body())


def test_bookmarks_in_private_storage(server: ServerProcess) -> None:
    """XEP-0048 bookmarks through XEP-0049 private XML storage, then joining from them."""
    room = new_room("bm")

    async def body() -> None:
        jid, _ = server.new_user("bookmarks")
        owner = await user(server, "bm-owner")
        await create(owner, room, "Owner")
        await configure(owner, room, {"passwordprotectedroom": "1", "roomsecret": "s"})
        c = await connect(server, jid + "/one", plugins=("xep_0048", "xep_0049"))
        marks = Bookmarks()
        marks.add_conference(room, "Reader", name="The Room", autojoin=True, password="s")
        await c.plugin["xep_0048"].set_bookmarks(marks)
        await c.close()
        c2 = await user(server, "", "two", jid)  # another client of the same account
        c2.register_plugin("xep_0048")
        got = await c2.plugin["xep_0048"].get_bookmarks()
        confs = got["private"]["bookmarks"]["conferences"]
        assert [(x["jid"], x["nick"], x["name"], x["autojoin"], x["password"])
                for x in confs] == [(room, "Reader", "The Room", True, "s")]
        conf = confs[0]
        pres = await join(c2, str(conf["jid"]), conf["nick"],
                          f"<password>{conf['password']}</password>")
        assert codes(pres) == [110, 170]
        await close(owner, c2)

    run(body())
