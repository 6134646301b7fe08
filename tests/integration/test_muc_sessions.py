"""Revoking moderator and admin (XEP-0045 §9.7, §10.7) with exact status codes, XEP-0421
occupant ids on presence, status 210 on entering, history 'since' a past moment (§7.2.14),
and TCP drops of a multi-session occupant (§7.2.1) followed by a XEP-0410 self-ping and the
temporary room vanishing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.test_muc_support import (
    admin_set,
    close,
    codes,
    create,
    iq,
    iq_error,
    item,
    join,
    new_room,
    next_from,
    next_message,
    user,
    users,
)
from tests.support.client import Client, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
INFO = "<query xmlns='http://jabber.org/protocol/disco#info'/>"
OID = "{urn:xmpp:occupant-id:0}occupant-id"


def test_revoke_moderator_and_admin(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "rvrevoke")
        await create(owner, room, "Owner")
        await join(b, room, "Bee")
        await join(c, room, "Cee")

        async def seen(nick: str, target: Client, other: Client, key: str, value: str) -> None:
            mine = await next_from(target, f"{room}/{nick}", where=lambda p: item(p)[key] == value)
            theirs = await next_from(other, f"{room}/{nick}", where=lambda p: item(p)[key] == value)
            assert codes(mine) == [110] and codes(theirs) == []

        await admin_set(owner, room, "<item nick='Bee' role='moderator'/>")  # §9.6
        await seen("Bee", b, c, "role", "moderator")
        await admin_set(owner, room, "<item nick='Bee' role='participant'/>")  # §9.7
        await seen("Bee", b, c, "role", "participant")
        cj = c.boundjid.bare
        await admin_set(owner, room, f"<item affiliation='admin' jid='{cj}'/>")  # §10.6
        await seen("Cee", c, b, "role", "moderator")
        await admin_set(owner, room, f"<item affiliation='none' jid='{cj}'/>")  # §10.7
        await seen("Cee", c, b, "role", "participant")
        res = await iq(owner, "get", room, "<query xmlns='http://jabber.org/protocol/muc#admin'>"
                                           "<item affiliation='admin'/></query>")
        assert list(res.iter("{http://jabber.org/protocol/muc#admin}item")) == []
        await close(owner, b, c)

    run(body())


def test_occupant_id_on_presence_and_210_on_entering(server: ServerProcess) -> None:
    room = new_room()

    async def body() -> None:
        owner, b, c = await users(server, 3, "rvoid")
        await create(owner, room, "Owner")
        mine = await join(b, room, "Bee")
        pres = await next_from(owner, f"{room}/Bee")
        oid = pres.xml.find(OID)
        assert oid is not None and mine.xml.find(OID).get("id") == oid.get("id")  # type: ignore[union-attr]
        b.send_raw(f"<message to='{room}' type='groupchat'><body>hi</body></message>")
        m = await next_message(owner, where=lambda m: m["body"] == "hi")
        assert m.xml.find(OID).get("id") == oid.get("id")  # type: ignore[union-attr]
        assert codes(await join(c, room, "Cafe\u0301")) == [110, 170, 210]
        await close(owner, b, c)

    run(body())


def test_tcp_drops_of_a_multi_session_occupant(server: ServerProcess) -> None:
    """One session of two drops: the occupant stays; the last drops: unavailable for the
    others, and a self-ping from a new session is not-acceptable (XEP-0410); when the owner
    drops too, the temporary room is gone."""
    room = new_room()

    async def body() -> None:
        owner, watcher = await users(server, 2, "rvdrop")
        jid, _ = server.new_user("rvdrop-multi")
        one = await user(server, "", "one", jid)
        two = await user(server, "", "two", jid)
        await create(owner, room, "Owner")
        await join(one, room, "Me")
        await join(two, room, "Me")
        await next_from(owner, f"{room}/Me")
        one.abort()
        # The server tells the user's other resources last, after the directed-presence
        # targets (the room among them): once two hears of it, the room has handled the drop.
        await two.next_presence(where=lambda p: str(p["from"]) == f"{jid}/one"
                                and p["type"] == "unavailable")
        owner.send_message(mto=room, mbody="still?", mtype="groupchat")
        await next_from(two, f"{room}/Owner", kind="message", where=lambda m: m["body"] == "still?")
        assert not [p for p in _queued(owner.presences) if p["type"] == "unavailable"]
        two.abort()
        left = await next_from(owner, f"{room}/Me", timeout=15,
                               where=lambda p: p["type"] == "unavailable")
        assert codes(left) == [] and item(left)["role"] == "none"
        three = await user(server, "", "three", jid)
        assert await iq_error(three, "get", f"{room}/Me", "<ping xmlns='urn:xmpp:ping'/>") == (
            "cancel", "not-acceptable")
        owner.abort()
        for _ in range(50):
            try:
                await iq(watcher, "get", room, INFO)
            except Exception:
                break
            await asyncio.sleep(0.2)
        assert await iq_error(watcher, "get", room, INFO) == ("cancel", "item-not-found")
        await close(three, watcher)

    run(body())


def _queued(q: asyncio.Queue[Any]) -> list[Any]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out
